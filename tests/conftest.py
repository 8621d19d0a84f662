"""Fixtures: real SMTP servers on loopback (aiosmtpd; Postfix and Dovecot), sites, editors."""

import ipaddress
import socket

import pytest

from example_project.local_identity import LocalIdentityProvider
from example_project.local_mta import (
    LocalDovecot,
    LocalPostfix,
    MailServerUnavailable,
    require_mail_servers,
)
from example_project.local_smtp import LocalSmtpServer, SilentServer, make_certificates

SMTP_USER = "mailer@customer.example"
SMTP_PASSWORD = "s3cret-Pa55word-Ümlaut"

# OAuth: the editor's Microsoft 365 app registration (client credentials) ...
OAUTH_TENANT = "3f2c8a91-5b7d-4e0a-9c1f-6d2e8b4a7c05"
OAUTH_APP_CLIENT_ID = "b6e1d0c4-2a8f-4f39-8e57-1c9d3a6b2f10"
OAUTH_APP_CLIENT_SECRET = "Qx8~app.Secret_7Kp2vLr9ZtW4yHn3"
# ... and the platform's apps for the sign-in flows (WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS).
PLATFORM_MICROSOFT_CLIENT_ID = "0d7c3e5a-9f41-4b2d-a8e6-5c1b7f0e3d92"
PLATFORM_MICROSOFT_CLIENT_SECRET = "Mv3~platform.Secret_Ws8Jq5bNx2Rk"
PLATFORM_GOOGLE_CLIENT_ID = "812345678901-platform.apps.googleusercontent.com"
PLATFORM_GOOGLE_CLIENT_SECRET = "GOCSPX-platformSecret9Lm4Tq7Vw"


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    """A CA and a server certificate for "localhost"; the CA is trusted via CA_FILE."""
    return make_certificates(tmp_path_factory.mktemp("certs"), hostnames=("localhost",))


@pytest.fixture(scope="session")
def foreign_certificates(tmp_path_factory):
    """A trusted CA, but a certificate issued for another host name."""
    return make_certificates(tmp_path_factory.mktemp("foreign"), hostnames=("other.example",))


@pytest.fixture(scope="session")
def untrusted_certificates(tmp_path_factory):
    """A certificate for "localhost" from a CA nobody trusts."""
    return make_certificates(tmp_path_factory.mktemp("untrusted"), hostnames=("localhost",))


def _resolves_locally(host):
    """True for names answered without a DNS query: localhost and address literals."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        try:
            socket.inet_aton(host)  # the short numeric forms the resolver also takes ("127.1")
        except OSError:
            return False
    return True


@pytest.fixture(autouse=True)
def _no_dns_queries(monkeypatch):
    """Nothing but loopback may be reached from here, not even a name server.

    Any other name fails as an unknown name would; tests that need a name to resolve give it an
    answer with their own stand-in for DNS on top of this one.
    """
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if not _resolves_locally(host):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="session")
def _local_dns_server():
    from example_project.local_dns import LocalDnsServer

    server = LocalDnsServer().start()
    yield server
    server.stop()


@pytest.fixture
def dns_server(settings, _local_dns_server):
    """An authoritative DNS server on loopback answering from the test's zones
    (``dns_server.replace({...})``, empty at first); the sender-domain check asks it and nothing
    else, and looks up the blocklist zone "bl.test" there."""
    _local_dns_server.replace({})
    _local_dns_server.asked.clear()
    settings.WAGTAIL_OWN_SMTP_DNS_RESOLVERS = [_local_dns_server.address]
    settings.WAGTAIL_OWN_SMTP_DNSBL_ZONES = ["bl.test"]
    return _local_dns_server


@pytest.fixture(autouse=True)
def _trust_test_ca(settings, certificates):
    settings.WAGTAIL_OWN_SMTP_CA_FILE = str(certificates["ca"])


@pytest.fixture(autouse=True)
def _forget_wrong_links():
    """Wrong confirmation links are counted per client in the cache: each test starts afresh."""
    from django.core.cache import cache

    cache.clear()


def _server(**kwargs):
    server = LocalSmtpServer(**kwargs).start()
    return server


@pytest.fixture
def starttls_server(certificates):
    """STARTTLS required, AUTH required (the typical port-587 submission server)."""
    server = _server(
        security="starttls", credentials=(SMTP_USER, SMTP_PASSWORD), certificates=certificates
    )
    yield server
    server.stop()


@pytest.fixture
def ssl_server(certificates):
    """Implicit TLS with AUTH (the typical port-465 server)."""
    server = _server(
        security="ssl", credentials=(SMTP_USER, SMTP_PASSWORD), certificates=certificates
    )
    yield server
    server.stop()


@pytest.fixture
def plain_server():
    """No TLS, no AUTH, and no STARTTLS offered."""
    server = _server(security="none")
    yield server
    server.stop()


@pytest.fixture
def foreign_cert_server(foreign_certificates, settings):
    """A certificate from a trusted CA, issued for "other.example" instead of "localhost"."""
    settings.WAGTAIL_OWN_SMTP_CA_FILE = str(foreign_certificates["ca"])
    server = _server(
        security="starttls",
        credentials=(SMTP_USER, SMTP_PASSWORD),
        certificates=foreign_certificates,
    )
    yield server
    server.stop()


@pytest.fixture
def untrusted_cert_server(untrusted_certificates):
    server = _server(
        security="ssl", credentials=(SMTP_USER, SMTP_PASSWORD), certificates=untrusted_certificates
    )
    yield server
    server.stop()


@pytest.fixture
def silent_server():
    """Accepts TCP and never answers."""
    server = SilentServer().start()
    yield server
    server.stop()


@pytest.fixture
def dropping_server():
    """Accepts TCP and hangs up at once."""
    server = SilentServer(drop=True).start()
    yield server
    server.stop()


@pytest.fixture
def identity_provider(settings):
    """The stand-in for Microsoft's identity platform and Google's OAuth endpoints, on loopback.

    It knows the editor's app registration (OAUTH_*) and the platform's sign-in apps, and the
    settings point WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS at it.
    """
    provider = LocalIdentityProvider().start()
    provider.add_client(OAUTH_APP_CLIENT_ID, OAUTH_APP_CLIENT_SECRET, tenant=OAUTH_TENANT)
    provider.add_client(PLATFORM_MICROSOFT_CLIENT_ID, PLATFORM_MICROSOFT_CLIENT_SECRET)
    provider.add_client(PLATFORM_GOOGLE_CLIENT_ID, PLATFORM_GOOGLE_CLIENT_SECRET)
    settings.WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS = {
        "microsoft": {
            "CLIENT_ID": PLATFORM_MICROSOFT_CLIENT_ID,
            "CLIENT_SECRET": PLATFORM_MICROSOFT_CLIENT_SECRET,
            **provider.microsoft_urls(),
        },
        "google": {
            "CLIENT_ID": PLATFORM_GOOGLE_CLIENT_ID,
            "CLIENT_SECRET": PLATFORM_GOOGLE_CLIENT_SECRET,
            **provider.google_urls(),
        },
    }
    yield provider
    provider.stop()


@pytest.fixture
def xoauth2_server(certificates, identity_provider):
    """STARTTLS required, AUTH XOAUTH2 required: tokens from ``identity_provider`` are checked."""
    server = _server(security="starttls", certificates=certificates, xoauth2=identity_provider)
    yield server
    server.stop()


# Debian's Postfix and Dovecot on loopback (example_project/local_mta.py), with the certificate
# the app trusts. The editor logs in as MTA_EDITOR and may also send as the alias MTA_SURVEYS.
MTA_DOMAIN = "example.test"
MTA_REMOTE_DOMAIN = "remote.test"  # accepted at RCPT TO, unknown users bounced later by a DSN
MTA_EDITOR = "editor@example.test"
MTA_SURVEYS = "surveys@example.test"
MTA_USERS = {
    MTA_EDITOR: "editor-Pa55-Ümlaut",
    MTA_SURVEYS: "surveys-Pa55word",
    "colleague@example.test": "colleague-Pa55word",
    "reader@example.test": "reader-Pa55word",
    "reader@remote.test": "remote-reader-Pa55word",
}
MTA_SENDER_LOGINS = {MTA_SURVEYS: [MTA_EDITOR]}


def _mail_servers_or_fail():
    try:
        require_mail_servers()
    except MailServerUnavailable as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def dovecot(certificates):
    """Dovecot with MTA_USERS: their Maildirs, IMAP (STARTTLS, implicit TLS) and Postfix's SASL.

    Shared by the session: look for your own messages (``wait_for_messages(..., matching=)``),
    and put back a password you change with ``set_password``.
    """
    _mail_servers_or_fail()
    server = LocalDovecot(MTA_USERS, certificates=certificates).start()
    yield server
    server.stop()


def _postfix(dovecot, **options):
    options.setdefault("sender_logins", MTA_SENDER_LOGINS)
    return LocalPostfix(
        dovecot, domain=MTA_DOMAIN, remote_domain=MTA_REMOTE_DOMAIN, **options
    ).start()


@pytest.fixture(scope="session")
def postfix(dovecot):
    """Postfix with the default configuration, shared by the session: read the log from a
    log_mark() taken first, and change nothing (make_postfix gives a Postfix of your own)."""
    server = _postfix(dovecot)
    yield server
    server.stop()


@pytest.fixture
def make_postfix(dovecot):
    """Start a Postfix of the test's own: make_postfix(main_cf={...}, submission_cf={...},
    sender_logins={...}); stopped after the test. For changed settings, reconfigure() and state
    that counts (rate limits); it shares the session's Dovecot."""
    servers = []

    def make(**options):
        servers.append(_postfix(dovecot, **options))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()
