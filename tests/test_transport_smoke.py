import pytest

from tests.conftest import SMTP_PASSWORD, SMTP_USER
from wagtail_own_smtp import transport


def params(server, security, **kw):
    base = dict(
        host="localhost",
        port=server.port,
        security=security,
        from_email=SMTP_USER,
        username=SMTP_USER,
        password=SMTP_PASSWORD,
    )
    base.update(kw)
    return transport.ServerParams(**base)


def test_starttls_send(starttls_server):
    p = params(starttls_server, "starttls")
    conn = transport.open_connection(p)
    try:
        transport.send(conn, p, SMTP_USER, ["a@example.org"], b"Subject: hi\r\n\r\nbody\r\n")
    finally:
        transport.close_quietly(conn)
    got = starttls_server.wait_for(1)
    assert got[0].rcpt_tos == ["a@example.org"]
    assert got[0].authenticated_as == SMTP_USER


def test_ssl_wrong_password(ssl_server):
    with pytest.raises(transport.SmtpFailure) as info:
        transport.open_connection(params(ssl_server, "ssl", password="nope"))
    assert info.value.kind == transport.SERVER
    assert "535 5.7.8 Authentication credentials invalid" in info.value.text
