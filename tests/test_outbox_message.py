"""One message of the outbox: its page (header fields, never the body; attempts, the server's
reply and its hint) and its buttons, retry and cancel, with real servers."""

from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.urls import reverse
from django.utils import timezone

from tests.conftest import SMTP_PASSWORD
from tests.delivery_helpers import own_server, real_backend
from tests.helpers_outbox import site_a, stored
from wagtail_own_smtp import hints, using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import OutboundMessage

pytestmark = pytest.mark.django_db
__all__ = ["real_backend", "site_a"]


@pytest.mark.usefixtures("real_backend")
def test_message_page_shows_headers_attempts_and_reply_never_the_password(
    admin_client, site_a, starttls_server
):
    own_server(site_a, starttls_server)
    # (A quota reply would back the whole site off and spend no attempt: the hint of a stored
    # reply is shown by test_message_page_of_a_refused_recipient.)
    starttls_server.behaviour.data_reply = "451 4.3.0 Temporary lookup failure"
    with using_site(site_a):
        EmailMessage(
            "Quarterly survey",
            "Only-in-the-body-7351",
            "Survey Team <surveys@platform.example>",
            ["p@example.org"],
        ).send()
    dispatch(budget_seconds=3)
    message = OutboundMessage.objects.get()
    assert message.status == "deferred" and message.attempts == 1

    html = admin_client.get(
        reverse("wagtail_own_smtp_admin:outbox_message", args=[message.pk])
    ).content.decode()

    assert "<code data-own-smtp-last-error>451 4.3.0 Temporary lookup failure</code>" in html
    assert '<td data-own-smtp-field="attempts">1</td>' in html
    assert 'data-own-smtp-field="last-attempt"' in html
    assert 'data-own-smtp-field="expected-at"' in html
    assert '<th scope="row">Subject</th>' in html and "Quarterly survey" in html
    assert "Survey Team &lt;surveys@platform.example&gt;" in html  # the From header
    assert "Only-in-the-body-7351" not in html  # headers only
    assert 'id="own-smtp-retry"' in html and 'id="own-smtp-cancel"' in html
    assert SMTP_PASSWORD not in html


def test_message_page_of_a_refused_recipient(admin_client, site_a):
    reply = "p@example.org: 550 5.4.5 Daily user sending quota exceeded."
    failed = stored(site_a, status="failed", attempts=1, last_error=reply)
    html = admin_client.get(
        reverse("wagtail_own_smtp_admin:outbox_message", args=[failed.pk])
    ).content.decode()
    assert f"<code data-own-smtp-last-error>{reply}</code>" in html
    assert "data-own-smtp-hint" in html
    assert 'id="own-smtp-cancel"' not in html and 'id="own-smtp-retry"' in html


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        ("535 5.7.8 Authentication credentials invalid", "username or password"),
        ("530 5.7.57 Client not authenticated to send mail", "Microsoft 365"),
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled",
            "Microsoft 365",
        ),
        ("a@b.example: 550 5.4.5 Daily user sending quota exceeded.", "quota"),
        ("450 Mail send limit exceeded.", "quota"),
        ("534 5.7.9 Application-specific password required.", "app password"),
        ("530 5.7.0 Must issue a STARTTLS command first", "STARTTLS"),
        ("550 5.1.1 No such user", None),
    ],
)
def test_stored_replies_get_the_hint_transport_gives(reply, words):
    hint = hints.hint_for_reply(reply)
    if words is None:
        assert hint == ""
    else:
        assert words in hint


# -- retry and cancel -------------------------------------------------------------------------


@pytest.mark.usefixtures("real_backend")
def test_retry_now_makes_a_deferred_message_due_and_dispatch_sends_it(
    admin_client, site_a, starttls_server
):
    own_server(site_a, starttls_server)
    with using_site(site_a):
        EmailMessage("Deferred one", "Body", "surveys@platform.example", ["p@example.org"]).send()
    message = OutboundMessage.objects.get()
    later = timezone.now() + timedelta(hours=1)
    OutboundMessage.objects.filter(pk=message.pk).update(
        status="deferred", attempts=1, next_attempt_at=later, last_error="451 4.3.0 Try later"
    )
    dispatch(budget_seconds=2)
    assert starttls_server.received == []  # not due yet

    response = admin_client.post(reverse("wagtail_own_smtp_admin:outbox_retry", args=[message.pk]))
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.next_attempt_at <= timezone.now()

    report = dispatch(budget_seconds=5)
    assert report.sent == 1
    assert [r.message["Subject"] for r in starttls_server.received] == ["Deferred one"]
    message.refresh_from_db()
    assert message.status == "sent"


@pytest.mark.usefixtures("real_backend")
def test_cancel_sets_cancelled_and_dispatch_never_sends_it(admin_client, site_a, starttls_server):
    own_server(site_a, starttls_server)
    with using_site(site_a):
        for subject in ("Keep", "Drop"):
            EmailMessage(subject, "Body", "surveys@platform.example", ["p@example.org"]).send()
    drop = OutboundMessage.objects.get(subject="Drop")

    response = admin_client.post(
        reverse("wagtail_own_smtp_admin:outbox_cancel", args=[drop.pk]), follow=True
    )
    assert "The message was cancelled" in response.content.decode()
    drop.refresh_from_db()
    assert drop.status == "cancelled"

    dispatch(budget_seconds=5)
    assert [r.message["Subject"] for r in starttls_server.received] == ["Keep"]
    drop.refresh_from_db()
    assert drop.status == "cancelled"
    # A retry does not bring a cancelled message back either.
    admin_client.post(reverse("wagtail_own_smtp_admin:outbox_retry", args=[drop.pk]))
    drop.refresh_from_db()
    assert drop.status == "cancelled"


def test_a_sent_message_cannot_be_cancelled(admin_client, site_a):
    sent = stored(site_a, status="sent", sent_at=timezone.now())
    response = admin_client.post(
        reverse("wagtail_own_smtp_admin:outbox_cancel", args=[sent.pk]), follow=True
    )
    assert "Only queued or deferred messages can be cancelled" in response.content.decode()
    sent.refresh_from_db()
    assert sent.status == "sent"
