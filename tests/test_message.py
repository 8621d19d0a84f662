"""Message bytes: the sender rewrite, building and reading header fields, IDNA domains."""

from email import message_from_bytes, policy
from email.headerregistry import Address, AddressHeader

import pytest
from django.core.mail import send_mail
from hypothesis import given
from hypothesis import strategies as st

from tests.delivery_helpers import make_site, own_server, real_backend
from wagtail_own_smtp import using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.message import (
    ascii_domain,
    envelope_address,
    message_headers,
    rewrite_sender,
)
from wagtail_own_smtp.models import OutboundMessage

__all__ = ["real_backend"]


def test_a_from_the_email_parser_chokes_on_still_goes_out_with_the_original_as_reply_to():
    # Python 3.11's header parser raises AttributeError for the display name "." (hypothesis
    # found it); the message must still leave with the verified sender.
    raw = b"From: . <0@a.example>\r\nTo: r@example.org\r\nSubject: x\r\n\r\nbody\r\n"

    rewritten = rewrite_sender(raw, "mailer@customer.example")

    message = message_from_bytes(rewritten, policy=policy.default)
    assert message["From"].addresses[0].addr_spec == "mailer@customer.example"
    assert b"Reply-To: . <0@a.example>\r\n" in rewritten
    assert rewritten.endswith(b"\r\n\r\nbody\r\n")


def test_rewrite_keeps_the_body_bytes_and_fixes_a_local_message_id():
    long_line = ("word " * 60).strip()
    raw = (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"From: =?utf-8?q?J=C3=BCrgen?= <juergen@platform.example>\r\n"
        b"To: a@example.org\r\n"
        b"Message-ID: <170000.1.42@buildhost>\r\n"
        b"\r\n" + long_line.encode() + b"\r\n\r\nUml\xc3\xa4ut\r\n"
    )
    out = rewrite_sender(raw, "mailer@customer.example")
    head, _sep, body = out.partition(b"\r\n\r\n")
    assert body == raw.partition(b"\r\n\r\n")[2]
    assert b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" in head
    assert b"Reply-To: =?utf-8?q?J=C3=BCrgen?= <juergen@platform.example>" in head
    assert b"Message-ID: <170000.1.42@customer.example>" in head
    parsed = message_from_bytes(out, policy=policy.default)
    assert parsed["From"].addresses[0].display_name == "Jürgen"
    assert parsed["From"].addresses[0].addr_spec == "mailer@customer.example"
    assert len(parsed.get_all("From")) == 1
    # a public Message-ID domain is kept
    public = raw.replace(b"@buildhost>", b"@web1.platform.example>")
    assert b"<170000.1.42@web1.platform.example>" in rewrite_sender(public, "m@c.example")


@pytest.mark.parametrize(
    ("domain", "written"),
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008, as DENIC registers it (not "strasse")
        ("Example.COM", "Example.COM"),  # an ASCII name is left exactly as given
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_a_domain_is_written_as_registries_map_it(domain, written):
    assert ascii_domain(domain) == written


@pytest.mark.parametrize(
    "address",
    [
        "a@b..example",  # an empty label
        "a@" + "x" * 64 + ".example",  # a label over 63 characters
        "a@exa\N{ZERO WIDTH JOINER}mple.de",  # a joiner IDNA 2008 allows only in some scripts
        "a@.bücher.de",
    ],
)
def test_an_address_dns_cannot_carry_is_refused(address):
    with pytest.raises(ValueError):
        envelope_address(address)


def _parsed(address):
    """The addr-spec the email package's header parser reads (what any address goes through)."""
    mailbox = AddressHeader.value_parser(address).all_mailboxes[0]
    try:
        return Address(username=mailbox.local_part, domain=ascii_domain(mailbox.domain)).addr_spec
    except ValueError:
        return ValueError


def _envelope(address):
    try:
        return envelope_address(address)
    except ValueError:
        return ValueError


@given(
    st.from_regex(
        r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,8}(\.[A-Za-z0-9_~-]{1,4}){0,2}", fullmatch=True
    ),
    st.from_regex(r"[A-Za-z0-9-]{1,70}(\.[A-Za-z0-9-]{1,8}){0,3}", fullmatch=True),
)
def test_a_plain_address_reads_as_the_header_parser_reads_it(local, domain):
    """Plain ASCII addresses skip the parser (most recipients): the same addr-spec, or the
    same refusal."""
    assert _envelope(f"{local}@{domain}") == _parsed(f"{local}@{domain}")


def test_the_envelope_address_has_the_idna_domain_and_keeps_the_local_part():
    assert envelope_address("Jürgen <Leser@Bücher.example>") == "Leser@xn--bcher-kva.example"
    assert envelope_address('"john doe"@example.com') == '"john doe"@example.com'


@pytest.mark.django_db
@pytest.mark.usefixtures("real_backend")
def test_mail_to_an_internationalised_domain_goes_to_that_domain(starttls_server):
    site = make_site()
    own_server(site, starttls_server)
    with using_site(site):
        send_mail("Hi", "Body", "surveys@platform.example", ["leser@straße.example"])
    assert OutboundMessage.objects.get().recipients == ["leser@xn--strae-oqa.example"]

    dispatch(budget_seconds=5)

    (received,) = starttls_server.wait_for(1)
    assert received.rcpt_tos == ["leser@xn--strae-oqa.example"]


def test_the_headers_of_a_stored_message_are_read_decoded_and_never_its_body():
    raw = (
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"To: a@example.org,\r\n b@example.org\r\n"
        b"\r\nSubject: not a header\r\n"
    )
    assert message_headers(raw) == [
        ("Subject", "Grüße"),
        ("To", "a@example.org, b@example.org"),
    ]
