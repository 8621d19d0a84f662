import os
import signal
import socket
import subprocess
import sys
import time

from demo.summary import demo_summary
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from wagtail.models import Site

STARTUP_TIMEOUT = 60
STOP_TIMEOUT = 10


def answers(port):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Child:
    """One process of the demo, in its own process group so that stopping it stops its children
    (runserver's autoreloader, the qcluster workers)."""

    def __init__(self, name, arguments, port=None):
        self.name = name
        self.arguments = arguments
        self.port = port
        self.process = None

    def start(self):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(self.arguments, env=env, start_new_session=True)

    def exited(self):
        return self.process is not None and self.process.poll() is not None

    def stop(self):
        if self.process is None:
            return
        # Only the leader is asked (it stops its own workers; qcluster hangs when they are
        # killed under it), with SIGTERM: a process started in the background ignores SIGINT.
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left of the group (runserver's server process, a stuck worker) goes.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


class Command(BaseCommand):
    help = (
        "Run the whole demo in the foreground: the mail servers, the django-q2 cluster and "
        "runserver. Ctrl-C stops them all."
    )
    requires_system_checks = []

    def handle(self, **options):
        try:
            site = Site.objects.get(is_default_site=True)
        except (DatabaseError, Site.DoesNotExist):
            raise CommandError("The demo is not set up: run manage.py demo_setup first.") from None
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        http_port = settings.DEMO_HTTP_PORT
        children = [
            Child("mail servers", [*manage, "demo_mailserver"], settings.DEMO_OWN_SMTP["port"]),
            Child("django-q2 cluster", [*manage, "qcluster"]),
            Child("web server", [*manage, "runserver", f"127.0.0.1:{http_port}"], http_port),
        ]
        ports = [settings.DEMO_PLATFORM_SMTP["port"], settings.DEMO_IDENTITY["port"]]
        ports += [c.port for c in children if c.port]
        if busy := [port for port in ports if answers(port)]:
            raise CommandError(f"Port(s) {busy} already in use: is another demo running?")

        def stop(*_args):
            raise KeyboardInterrupt

        # Ctrl-C, and SIGINT or SIGTERM from whoever started the demo in the background.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)
        try:
            for child in children:
                child.start()
                self.wait_until_ready(child)
            self.stdout.write(demo_summary(site) + "\nCtrl-C stops the demo.\n")
            self.stdout.flush()
            while not (ended := [c for c in children if c.exited()]):
                time.sleep(0.5)
            raise CommandError(
                f"The {ended[0].name} stopped (exit code {ended[0].process.returncode})."
            )
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the demo ...")
            self.stdout.flush()
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: let the stop finish
            for child in reversed(children):
                child.stop()

    def wait_until_ready(self, child):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while child.port and not answers(child.port):
            if child.exited():
                raise CommandError(f"The {child.name} did not start.")
            if time.monotonic() > deadline:
                raise CommandError(f"The {child.name} did not answer on port {child.port}.")
            time.sleep(0.2)
