"""bounce_reports.py: real providers' report layouts, auto-replies and hostile input."""

import pathlib
import time

import pytest

from wagtail_own_smtp.bounce_reports import COMPLAINT, HARD, SOFT, read_report

SAMPLES = pathlib.Path(__file__).parent / "bounce_samples"


def sample(name, crlf=True):
    raw = (SAMPLES / name).read_bytes()
    # What IMAP hands over: CRLF line ends.
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") if crlf else raw


@pytest.mark.parametrize("crlf", [True, False])
@pytest.mark.parametrize(
    "name, recipient, kind, status, words, message_id",
    [
        (
            "postfix_unknown_user.eml",
            "nobody@example.org",
            HARD,
            "5.1.1",
            "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in "
            "virtual mailbox table",
            "176466690112.4242.1234567890@customer.example",
        ),
        (
            "exim_unknown_user.eml",
            "gone@example.net",
            HARD,
            "5.1.1",
            "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown",
            "176466720931.4242.987654321@customer.example",
        ),
        (
            "microsoft365_recipient_not_found.eml",
            "nouser@contoso.com",
            HARD,
            "5.1.10",
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient nouser@contoso.com not found "
            "by SMTP address lookup",
            "176466780045.4242.5555555555@customer.example",
        ),
        (
            "gmail_address_not_found.eml",
            "missing@example.com",
            HARD,
            "5.1.1",
            "550-5.1.1 The email account that you tried to reach does not exist.",
            "176466810077.4242.2222222222@customer.example",
        ),
        (
            "postfix_mailbox_full.eml",
            "full@example.org",
            SOFT,
            "4.2.2",
            "452 4.2.2 <full@example.org>: Mailbox full",
            "176466690199.4242.3333333333@customer.example",
        ),
        (
            "arf_complaint.eml",
            "complainer@example.net",
            COMPLAINT,
            "",
            "abuse",
            "176476000012.4242.4444444444@customer.example",
        ),
    ],
)
def test_provider_reports_name_the_recipient_the_code_the_words_and_the_message(
    name, recipient, kind, status, words, message_id, crlf
):
    report = read_report(sample(name, crlf))

    assert report is not None
    [failure] = report.failures
    assert (failure.recipient, failure.kind, failure.status) == (recipient, kind, status)
    assert words in failure.diagnostic
    assert report.original_message_id == message_id
    assert ("Subject" in dict(report.original_headers)) is True


@pytest.mark.parametrize(
    "name",
    [
        "vacation_notice.eml",  # RFC 3834 auto-reply of a person, words like a bounce's
        "exchange_automatic_reply.eml",  # Outlook's out-of-office
        "ordinary_reply.eml",  # a person quoting a bounce for a colleague
        "postfix_delayed.eml",  # a warning: the message may still arrive
    ],
)
def test_auto_replies_ordinary_mail_and_delay_warnings_are_not_reports(name):
    assert read_report(sample(name)) is None


def test_a_report_naming_several_recipients_lists_each_with_its_own_code():
    raw = sample("postfix_unknown_user.eml").replace(
        b"Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>",
        b"Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>"
        b"\r\n    rejected\r\n\r\nFinal-Recipient: rfc822; later@example.org\r\nAction: failed"
        b"\r\nStatus: 4.4.7\r\nDiagnostic-Code: X-Postfix; delivery temporarily suspended",
    )

    report = read_report(raw)

    assert [(f.recipient, f.kind, f.status) for f in report.failures] == [
        ("nobody@example.org", HARD, "5.1.1"),
        ("later@example.org", SOFT, "4.4.7"),
    ]


def test_a_complaint_whose_provider_redacted_the_complainer_names_nobody():
    raw = (
        sample("arf_complaint.eml")
        .replace(b"Original-Rcpt-To: <Complainer@Example.NET>\r\n", b"")
        .replace(b"To: <Complainer@Example.NET>", b"To: <redacted>")
    )

    [failure] = read_report(raw).failures

    assert (failure.recipient, failure.kind) == ("", COMPLAINT)


def test_the_remote_servers_words_are_cleaned_like_any_server_reply():
    raw = sample("postfix_unknown_user.eml").replace(
        b"Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address",
        b"Diagnostic-Code: smtp; 550 5.1.1 \x00\x1b[31mforged\x1b[0m " + b"x" * 5000,
    )

    [failure] = read_report(raw).failures

    assert "\x00" not in failure.diagnostic and "\x1b" not in failure.diagnostic
    assert len(failure.diagnostic) <= 1000
    assert failure.status == "5.1.1"


@pytest.mark.parametrize(
    "raw",
    [
        # nesting far deeper than any report
        b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
        + b"".join(
            b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
            for i in range(3000)
        ),
        # a header of a megabyte
        b"From: MAILER-DAEMON@x.example\r\nSubject: " + b"A" * 1_000_000 + b"\r\n\r\nbody",
        # bad encodings: an unknown charset, broken base64, bytes that are not UTF-8
        b"From: MAILER-DAEMON@x.example\r\nContent-Type: multipart/report; "
        b"report-type=delivery-status; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain; "
        b"charset=x-unknown\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%not base64\xff\xfe"
        b"\r\n--z\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: \xff\r\n--z--",
        b"",
        b"\x00" * 1000,
    ],
    ids=["deep-nesting", "huge-header", "bad-encodings", "empty", "nul-bytes"],
)
def test_hostile_messages_are_not_reports_and_never_raise(raw):
    started = time.monotonic()

    assert read_report(raw) is None
    assert time.monotonic() - started < 5
