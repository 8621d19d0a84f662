"""The demo's two mail servers (the site's own server and the platform's mail service), the
stand-in for Microsoft's and Google's sign-in, and the DNS server the sender-domain check asks.

Both servers are the aiosmtpd server the test suite uses (``local_smtp.py``) and store what they
receive in a Maildir each, which the demo inbox reads. The own server takes a password or an
OAuth access token from the stand-in (``local_identity.py``).
"""

import socket

from django.conf import settings
from local_dns import LocalDnsServer
from local_identity import LocalIdentityProvider
from local_smtp import LocalSmtpServer, make_certificates

# Inbox label of each server, keyed as in ``maildirs()``.
SERVER_LABELS = {"own": "Own server", "platform": "Platform mail"}


def maildirs():
    """The Maildir of each server; their parent folder exists (Maildir makes only the last)."""
    paths = {
        "own": settings.DEMO_OWN_SMTP["maildir"],
        "platform": settings.DEMO_PLATFORM_SMTP["maildir"],
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    return paths


def certificates():
    """The demo CA and the own server's certificate, made once and then kept."""
    directory = settings.DEMO_CERTIFICATES_DIR
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    if all(path.exists() for path in paths.values()):
        return paths
    return make_certificates(directory, hostnames=("localhost", "127.0.0.1"))


def smtp_host():
    """What an editor types as SMTP host: "localhost", unless it does not lead to 127.0.0.1.

    The servers listen on 127.0.0.1 only, and the app connects to the first address a name
    resolves to.
    """
    try:
        first = socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        return "127.0.0.1"
    return "localhost" if first == "127.0.0.1" else "127.0.0.1"


def identity_provider():
    """The sign-in stand-in, with the platform's apps and the editor's app registration."""
    identity = settings.DEMO_IDENTITY
    provider = LocalIdentityProvider(
        default_account=settings.DEMO_OWN_SMTP["username"], port=identity["port"]
    )
    for app in settings.WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS.values():
        provider.add_client(app["CLIENT_ID"], app["CLIENT_SECRET"])
    provider.add_client(
        identity["app_client_id"], identity["app_client_secret"], tenant=identity["app_tenant"]
    )
    return provider


def demo_zones():
    """survey.example as many domains are: SPF lists the own server but ends with ~all, DMARC
    only monitors, and no DKIM selector is named; the blocklists list nothing."""
    return {
        "localhost": [("A", "127.0.0.1")],
        "survey.example": [("TXT", "v=spf1 ip4:127.0.0.1 ~all")],
        "_dmarc.survey.example": [
            ("TXT", "v=DMARC1; p=none; rua=mailto:dmarc-reports@survey.example")
        ],
    }


def start_servers():
    """Start both servers and the sign-in stand-in; return them by key. The caller stops them."""
    own = settings.DEMO_OWN_SMTP
    platform = settings.DEMO_PLATFORM_SMTP
    maildir = maildirs()
    identity = identity_provider()
    servers = {
        "identity": identity,
        "own": LocalSmtpServer(
            security="starttls",
            credentials=(own["username"], own["password"]),
            certificates=certificates(),
            port=own["port"],
            maildir=maildir["own"],
            ident="survey demo: own server",
            xoauth2=identity,
        ),
        "platform": LocalSmtpServer(
            security="none",
            port=platform["port"],
            maildir=maildir["platform"],
            ident="survey demo: platform mail",
        ),
        "dns": LocalDnsServer(demo_zones(), port=settings.DEMO_DNS["port"]),
    }
    started = []
    try:
        for server in servers.values():
            started.append(server.start())
    except BaseException:
        for server in started:
            server.stop()
        raise
    return servers
