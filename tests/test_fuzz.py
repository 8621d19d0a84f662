"""Property-based tests (hypothesis): whatever an editor types into the settings form and whatever
mail host code hands to the backend, the answer is a form error or a clear ValueError, never a
500, and what is stored is valid, down to what the dispatcher makes of it at a real server."""

import hashlib
import socket
import string
from decimal import Decimal
from email import message_from_bytes, policy

import pytest
from django.core.mail import EmailMessage
from django.test import override_settings
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import SMTP_USER
from tests.delivery_helpers import own_server, real_backend
from tests.helpers_admin import edit_url, make_site
from wagtail_own_smtp import crypto, using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.forms import normalize_host
from wagtail_own_smtp.message import rewrite_sender
from wagtail_own_smtp.models import (
    MAX_INTERVAL_SECONDS,
    MAX_PER_DAY,
    MAX_PER_HOUR,
    OutboundMessage,
    SmtpSettings,
)

pytestmark = pytest.mark.django_db
__all__ = ["real_backend"]

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text as a browser can post it (no lone surrogates), control characters included.
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@st.composite
def with_some_junk(draw, fields):
    """Plausible values for every field (``{name: (plausible, junk)}``), then anything at all in
    up to two of them: most examples get past the first check and find what lies behind it."""
    values = {name: draw(plausible) for name, (plausible, _junk) in fields.items()}
    for name in draw(st.sets(st.sampled_from(sorted(fields)), max_size=2)):
        values[name] = draw(fields[name][1])
    return values


numbers = st.one_of(
    st.integers(-(10**12), 10**21).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats().map(str),
    st.sampled_from([" ", "1e3", "0x10", "١٢", "5,5", "sNaN", "-0"]),
    any_text,
)
caps = st.one_of(st.integers(0, 10**7).map(str), st.just(""))
hosts = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}(\.[a-z0-9-]{1,20}){0,4}", fullmatch=True),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.sampled_from(["localhost", "ＬＯＣＡＬＨＯＳＴ", "bücher.example", "a..b", "-x."]),
)
printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=200)
addresses = st.one_of(st.emails(), any_text)


@pytest.fixture
def dns_and_network(monkeypatch):
    """Names resolve by a hash of the name (public, private, reserved or unknown); no lookup and
    no connection ever leaves this machine: connecting is refused before a packet is sent."""
    real_getaddrinfo = socket.getaddrinfo
    answers = ["93.184.216.34", "10.1.2.3", "2001:db8::25", None]

    def getaddrinfo(host, port, *args, **kwargs):
        try:
            return real_getaddrinfo(host, port, *args, flags=socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError, ValueError, TypeError):
            pass
        answer = answers[hashlib.sha256(str(host).encode("utf-8", "replace")).digest()[0] % 4]
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(answer, port, *args, flags=socket.AI_NUMERICHOST)

    def create_connection(address, *args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)


def _assert_valid(smtp_settings, posted):
    smtp_settings.full_clean(exclude=["site"])  # every validator of the model holds
    assert smtp_settings.delivery_mode in ("platform", "own")
    assert smtp_settings.security in ("none", "starttls", "ssl")
    assert 1 <= smtp_settings.port <= 65535
    if smtp_settings.host:
        assert normalize_host(smtp_settings.host) == smtp_settings.host
    if smtp_settings.delivery_mode == "own":
        assert smtp_settings.host and smtp_settings.from_email
    for name in ("host", "from_email", "from_name", "username"):
        value = getattr(smtp_settings, name)
        assert not any(ord(char) < 32 or ord(char) == 127 for char in value), name
    assert smtp_settings.from_email == "" or smtp_settings.from_email.isascii()
    assert Decimal(0) <= smtp_settings.min_interval <= MAX_INTERVAL_SECONDS
    hour, day = smtp_settings.max_per_hour, smtp_settings.max_per_day
    assert hour is None or 0 <= hour <= MAX_PER_HOUR
    assert day is None or 0 <= day <= MAX_PER_DAY
    assert hour is None or day is None or hour <= day
    if posted["password"]:
        assert crypto.decrypt(smtp_settings.password_ciphertext) == posted["password"]


@given(
    data=with_some_junk(
        {
            "delivery_mode": (st.sampled_from(["own", "platform"]), any_text),
            "host": (hosts, any_text),
            "port": (st.integers(1, 65535).map(str), numbers),
            "security": (st.sampled_from(["none", "starttls", "ssl"]), any_text),
            "from_email": (st.emails(), any_text),
            "from_name": (printable, any_text),
            "username": (printable, any_text),
            "password": (printable, st.text(min_size=1000, max_size=1100)),
            "min_interval": (st.decimals(0, 100, places=3).map(str), numbers),
            "max_per_hour": (caps, numbers),
            "max_per_day": (caps, numbers),
        }
    ),
    allow_private=st.booleans(),
)
# Found by this test: a signalling NaN broke Django's DecimalField.has_changed() (a 500).
@example(
    data={
        **dict.fromkeys(["from_name", "username", "password", "max_per_hour", "max_per_day"], ""),
        **{"delivery_mode": "own", "host": "a", "port": "1", "security": "none"},
        **{"from_email": "4", "min_interval": "SNAN"},
    },
    allow_private=False,
)
@FUZZ
def test_the_settings_form_never_fails_and_stores_only_valid_rows(
    admin_client, dns_and_network, data, allow_private
):
    site = make_site()
    with override_settings(WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS=allow_private):
        # The test client raises what the view raises: a 500 would fail here.
        response = admin_client.post(edit_url(site), data)

    assert response.status_code in (200, 302)
    event(f"status {response.status_code}")
    if response.status_code == 200:
        assert response.context["form"].errors  # refused with a form error, shown
    else:
        _assert_valid(SmtpSettings.objects.get(site=site), data)


# -- the backend ------------------------------------------------------------------------------

header_names = st.one_of(
    st.sampled_from(["X-Survey", "List-Unsubscribe", "Reply-To", "Message-ID", "Date", "To"]),
    st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=30),
)


def attachments(filenames):
    return st.lists(
        st.tuples(
            filenames,
            st.one_of(st.binary(max_size=3000), any_text),
            st.sampled_from(["application/pdf", "text/plain", "text/csv", "image/png", None]),
        ),
        max_size=3,
    )


def _build(subject, body, sender, to, cc, bcc, reply_to, headers, files):
    message = EmailMessage(subject, body, sender, to, bcc, cc=cc, reply_to=reply_to)
    message.extra_headers.update(headers)
    for filename, content, mimetype in files:
        message.attach(filename, content, mimetype)
    return message


def _assert_stored_row_is_valid(row):
    raw = bytes(row.raw_message)
    assert row.size == len(raw) and row.status == "queued"
    assert row.recipient_count == len(row.recipients) > 0
    for address in [row.envelope_from, *row.recipients]:
        local, at, domain = address.rpartition("@")
        assert at and local and domain.isascii(), address
        assert not any(char in address for char in "\r\n\0"), address
    assert len(row.subject) <= 255
    assert b"\r\n\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    head = raw.partition(b"\r\n\r\n")[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    # What the dispatcher sends: exactly one From, the verified sender.
    out = message_from_bytes(rewrite_sender(raw, SMTP_USER, "Surveys"), policy=policy.default)
    (sender,) = out["From"].addresses
    assert sender.addr_spec == SMTP_USER


@given(
    mail=with_some_junk(
        {
            "subject": (printable, any_text),
            "body": (st.text(st.characters(blacklist_categories=("Cs",)), max_size=2000),) * 2,
            "sender": (
                st.one_of(
                    st.emails(), st.tuples(printable, st.emails()).map("{0[0]} <{0[1]}>".format)
                ),
                any_text,
            ),
            "to": (st.lists(st.emails(), min_size=1, max_size=3), st.lists(addresses, max_size=3)),
            "cc": (st.lists(st.emails(), max_size=2), st.lists(addresses, max_size=2)),
            "bcc": (st.lists(st.emails(), max_size=2), st.lists(addresses, max_size=2)),
            "reply_to": (st.lists(st.emails(), max_size=2), st.lists(addresses, max_size=2)),
            "headers": (
                st.dictionaries(header_names, st.text(string.printable[:-5]), max_size=3),
                st.dictionaries(any_text.filter(bool), any_text, max_size=3),
            ),
            "files": (attachments(printable), attachments(any_text)),
        }
    )
)
# Found by hypothesis: a NUL in the subject, which PostgreSQL's text columns refuse.
@example(
    mail={
        "subject": "\x00",
        "body": "",
        **dict.fromkeys(["cc", "bcc", "reply_to", "files"], []),
        **{"sender": "2@A.Sy", "to": ["DcTZ/bQ6@A.CY"], "headers": {}},
    }
)
# Found by hypothesis: Python 3.11's header parser raises AttributeError for the display name ".".
@example(
    mail={
        **dict.fromkeys(["subject", "body"], ""),
        **dict.fromkeys(["cc", "bcc", "reply_to", "files"], []),
        **{"sender": ". <0@A.AC>", "to": ["0@A.bB"], "headers": {}},
    }
)
@FUZZ
@pytest.mark.usefixtures("real_backend")
def test_the_backend_refuses_clearly_or_stores_mail_that_goes_out(starttls_server, settings, mail):
    settings.WAGTAIL_OWN_SMTP_MAX_MESSAGE_SIZE = 6000
    site = make_site()
    if not SmtpSettings.objects.filter(site=site, verified_at__isnull=False).exists():
        own_server(site, starttls_server)
    stored_before = OutboundMessage.objects.count()
    received_before = len(starttls_server.received)

    try:
        message = _build(**mail)
        with using_site(site):
            sent = message.send()
    except ValueError as error:
        event(f"refused: {type(error).__name__}")
        # A clear refusal (bad header, bad address, too large): nothing half stored.
        assert OutboundMessage.objects.count() == stored_before
        return
    if not message.recipients():
        assert sent == 0 and OutboundMessage.objects.count() == stored_before
        return

    row = OutboundMessage.objects.latest("pk")
    assert OutboundMessage.objects.count() == stored_before + 1
    _assert_stored_row_is_valid(row)

    # The dispatcher takes it to a real server: sent, or failed with the server's reason.
    dispatch(until_empty=True)
    row.refresh_from_db()
    assert row.status in ("sent", "failed"), (row.status, row.last_error)
    event(f"stored, then {row.status}")
    if row.status == "sent":
        arrived = starttls_server.wait_for(received_before + 1)[-1]
        assert sorted(arrived.rcpt_tos) == sorted(
            address
            for address in row.recipients
            if address.lower() not in row.last_error.lower()  # refused recipients are noted
        )
        assert arrived.mail_from == SMTP_USER
    else:
        assert row.last_error
