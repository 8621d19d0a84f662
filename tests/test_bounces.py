"""bounces.py: reports matched to the site's own messages, recorded, and what they suppress.

Messages go through a real loopback SMTP server; the reports are built from what that server
received, in Postfix's layout (tests/bounce_samples), as the sender's mailbox would hold them.
"""

from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.utils import timezone

from tests.delivery_helpers import make_site, own_server, real_backend, statuses
from wagtail_own_smtp import bounces, signals
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import Bounce, OutboundMessage, Suppression

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("real_backend")]
__all__ = ["real_backend"]


def send(site, to, subject="Your survey invitation"):
    from wagtail_own_smtp import using_site

    with using_site(site):
        EmailMessage(subject, "Please take part.", "surveys@platform.example", to).send()
    return OutboundMessage.objects.latest("pk")


def postfix_report(returned_headers, recipient, status="5.1.1", action="failed"):
    """A Postfix DSN returning ``returned_headers`` (bytes), as it lands in the sender's box."""
    words = {"5": "550 5.1.1 User unknown", "4": "452 4.2.2 Mailbox full"}[status[0]]
    return (
        b"From: MAILER-DAEMON@mx.customer.example (Mail Delivery System)\r\n"
        b"To: mailer@customer.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system.\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        + f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {words}\r\n".encode()
        + b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        + returned_headers
        + b"\r\n--b--\r\n"
    )


def headers_of(received):
    return received.data.partition(b"\r\n\r\n")[0] + b"\r\n"


@pytest.fixture
def site_a(starttls_server):
    site = make_site("a.example")
    own_server(site, starttls_server)
    return site


def test_a_sent_message_carries_a_reference_that_only_its_own_site_accepts(site_a, starttls_server):
    message = send(site_a, ["reader@example.org"])
    dispatch(budget_seconds=5)
    [received] = starttls_server.wait_for(1)

    value = received.message[bounces.REFERENCE_HEADER]

    assert bounces.referenced_message(site_a.pk, value) == message.pk
    assert bounces.referenced_message(site_a.pk + 1, value) is None
    assert bounces.referenced_message(site_a.pk, f"{message.pk}.{'0' * 24}") is None


def test_host_code_cannot_plant_a_reference_of_its_own(site_a, starttls_server):
    from wagtail_own_smtp import using_site

    forged = bounces.reference(site_a.pk, 999999)
    with using_site(site_a):
        EmailMessage(
            "x", "y", "s@platform.example", ["r@example.org"], headers={"X-Own-SMTP-Ref": forged}
        ).send()
    dispatch(budget_seconds=5)
    [received] = starttls_server.wait_for(1)

    assert received.message.get_all(bounces.REFERENCE_HEADER) != [forged]
    assert len(received.message.get_all(bounces.REFERENCE_HEADER)) == 1


def test_a_hard_bounce_is_recorded_suppresses_the_address_and_later_mail_skips_it(
    site_a, starttls_server
):
    heard = []
    signals.message_bounced.connect(lambda **kw: heard.append(kw["bounce"]), weak=False)
    first = send(site_a, ["gone@example.org"])
    dispatch(budget_seconds=5)
    [received] = starttls_server.wait_for(1)

    [bounce] = bounces.record_report(
        site_a.pk, postfix_report(headers_of(received), "gone@example.org")
    )

    assert (bounce.message_id, bounce.recipient, bounce.kind) == (
        first.pk,
        "gone@example.org",
        "hard",
    )
    assert (bounce.status_code, bounce.diagnostic) == ("5.1.1", "550 5.1.1 User unknown")
    assert "Final-Recipient: rfc822; gone@example.org" in bounce.report
    assert heard == [bounce]
    assert Suppression.objects.filter(site=site_a, address="gone@example.org").exists()

    alone = send(site_a, ["Gone@Example.org"], subject="Reminder")
    shared = send(site_a, ["gone@example.org", "still@example.org"], subject="Reminder 2")
    dispatch(budget_seconds=5)
    received = starttls_server.wait_for(2)

    assert received[1].rcpt_tos == ["still@example.org"]
    alone.refresh_from_db()
    assert alone.status == "failed" and "suppressed" in alone.last_error
    shared.refresh_from_db()
    assert shared.status == "sent"


def test_a_forged_report_changes_nothing(site_a, starttls_server):
    site_b = make_site("b.example", default=False)
    own_server(site_b, starttls_server)
    theirs = send(site_b, ["victim@example.org"])
    mine = send(site_a, ["reader@example.org"])
    dispatch(budget_seconds=5)
    received = {r.rcpt_tos[0]: r for r in starttls_server.wait_for(2)}

    # B's genuine report, dropped into A's mailbox (A's editor forwards or forges it) ...
    other_site = postfix_report(headers_of(received["victim@example.org"]), "victim@example.org")
    # ... a made-up reference, and a report about A's message naming someone not on it.
    made_up = postfix_report(
        f"{bounces.REFERENCE_HEADER}: {theirs.pk}.{'f' * 24}\r\n".encode(), "victim@example.org"
    )
    not_a_recipient = postfix_report(headers_of(received["reader@example.org"]), "ceo@example.org")

    for report in (other_site, made_up, not_a_recipient):
        assert not bounces.record_report(site_a.pk, report)

    assert not Bounce.objects.exists() and not Suppression.objects.exists()
    assert mine.pk != theirs.pk


def test_the_same_report_read_twice_counts_once(site_a, starttls_server):
    send(site_a, ["gone@example.org"])
    dispatch(budget_seconds=5)
    report = postfix_report(headers_of(starttls_server.wait_for(1)[0]), "gone@example.org")

    assert len(bounces.record_report(site_a.pk, report)) == 1
    assert bounces.record_report(site_a.pk, report) == []
    assert Bounce.objects.count() == 1


def test_soft_bounces_suppress_only_on_enough_different_days(site_a, starttls_server, settings):
    settings.WAGTAIL_OWN_SMTP_SOFT_BOUNCE_LIMIT = 3
    for index in range(3):
        send(site_a, ["full@example.org"], subject=f"wave {index}")
    dispatch(budget_seconds=5)
    received = starttls_server.wait_for(3)
    reports = [postfix_report(headers_of(r), "full@example.org", status="4.2.2") for r in received]

    # Three soft bounces on one day: not yet.
    for report in reports:
        bounces.record_report(site_a.pk, report)
    assert Bounce.objects.filter(kind="soft").count() == 3
    assert not Suppression.objects.exists()

    # The same three spread over three days of the last two weeks: suppressed at the third.
    Bounce.objects.all().delete()
    now = timezone.now()
    for days_ago, report in zip((10, 5), reports[:2], strict=True):
        [bounce] = bounces.record_report(site_a.pk, report)
        Bounce.objects.filter(pk=bounce.pk).update(received_at=now - timedelta(days=days_ago))
    assert not Suppression.objects.exists()
    bounces.record_report(site_a.pk, reports[2])

    assert Suppression.objects.get(site=site_a).reason == "soft"


def test_a_complaint_suppresses_at_once_even_when_the_provider_redacted_the_complainer(
    site_a, starttls_server
):
    send(site_a, ["complainer@example.net"])
    dispatch(budget_seconds=5)
    headers = headers_of(starttls_server.wait_for(1)[0]).replace(
        b"complainer@example.net", b"redacted"
    )
    report = (
        b"From: <staff@feedback.example.net>\r\nTo: <mailer@customer.example>\r\n"
        b"Subject: complaint\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="p"\r\n\r\n'
        b"--p\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n"
        b"--p\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        b"Version: 1\r\n\r\n--p\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        + headers
        + b"\r\n--p--\r\n"
    )

    [bounce] = bounces.record_report(site_a.pk, report)

    assert (bounce.kind, bounce.recipient) == ("complaint", "complainer@example.net")
    assert Suppression.objects.get(site=site_a).reason == "complaint"


def test_a_reference_stays_valid_when_the_secret_key_is_rotated(site_a, settings):
    value = bounces.reference(site_a.pk, 42)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-for-the-platform"

    assert bounces.referenced_message(site_a.pk, value) == 42
    assert statuses() == {}


def test_own_smtp_status_shows_the_bounce_rate_of_the_last_seven_days(site_a, starttls_server):
    import io

    from django.core.management import call_command

    site_a_settings = own_server(site_a, starttls_server, bounce_processing=True)
    send(site_a, ["gone@example.org"])
    send(site_a, ["fine@example.org"])
    dispatch(budget_seconds=5)
    [gone] = [r for r in starttls_server.wait_for(2) if r.rcpt_tos == ["gone@example.org"]]
    bounces.record_report(site_a.pk, postfix_report(headers_of(gone), "gone@example.org"))
    out = io.StringIO()

    call_command("own_smtp_status", stdout=out)

    assert "bounces in the last 7 days: 1 of 2 recipients" in out.getvalue()
    assert site_a_settings.bounce_processing
