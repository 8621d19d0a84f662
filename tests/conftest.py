"""Fixtures: real SMTP servers on loopback (aiosmtpd), sites, editors."""

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
