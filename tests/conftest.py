"""Fixtures: real SMTP servers on loopback (aiosmtpd), sites, editors."""

import ipaddress
import socket

import pytest

from example_project.local_smtp import LocalSmtpServer, SilentServer, make_certificates

SMTP_USER = "mailer@customer.example"
SMTP_PASSWORD = "s3cret-Pa55word-Ümlaut"


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
