import signal
import threading

from demo.mailservers import SERVER_LABELS, smtp_host, start_servers
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run the demo's mail servers until stopped: the site's own server (STARTTLS, AUTH by "
        "password or OAuth) and the platform's mail service, both storing into Maildirs the demo "
        "inbox reads, the stand-in for Microsoft's and Google's sign-in, and the DNS server the "
        "sender-domain check asks."
    )
    requires_system_checks = []

    def handle(self, **options):
        stopped = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_args: stopped.set())
        servers = start_servers()
        try:
            own = servers["own"]
            username, password = own.credentials
            self.stdout.write(
                f"{SERVER_LABELS['own']}: {smtp_host()}:{own.port}, STARTTLS, "
                f"user {username}, password {password}\n"
                f"{SERVER_LABELS['platform']}: 127.0.0.1:{servers['platform'].port}, "
                "no TLS, no login\n"
                f"Sign-in stand-in (Microsoft 365, Google): {servers['identity'].url}\n"
                f"DNS for the sender-domain check: {servers['dns'].address} (UDP)\n"
                "Demo mail servers ready."
            )
            self.stdout.flush()
            while not stopped.wait(0.5):
                pass
        finally:
            for server in servers.values():
                server.stop()
