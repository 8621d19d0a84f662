"""Routing: which site a message belongs to, queue or platform, and what leaves the own server."""

from datetime import timedelta

import django
import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, send_mail, send_mass_mail
from django.db import transaction
from django.utils import timezone

from tests.conftest import SMTP_USER
from tests.delivery_helpers import make_site, own_server, real_backend, statuses
from tests.testapp.models import FormField, FormPage
from wagtail_own_smtp import signals, using_site
from wagtail_own_smtp.backends import EmailBackend
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.exceptions import MessageTooLarge
from wagtail_own_smtp.models import OutboundMessage

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("real_backend")]
__all__ = ["real_backend"]

ORIGINAL_FROM = "Survey Team <surveys@platform.example>"


@pytest.fixture
def site():
    return make_site()


@pytest.fixture
def second_site():
    return make_site("second.example", default=False, name="Second site")


def test_own_mode_queues_then_sends_through_the_verified_server(site, starttls_server):
    own_server(site, starttls_server)
    sent_signals = []

    def on_sent(sender, message, **kwargs):
        sent_signals.append(message)

    signals.message_sent.connect(on_sent)
    try:
        with using_site(site):
            count = send_mail(
                "Your invitation",
                "Please answer.",
                ORIGINAL_FROM,
                ["a@example.org", "b@example.org"],
            )
        assert count == 1
        stored = OutboundMessage.objects.get()
        assert stored.status == "queued"
        assert stored.recipients == ["a@example.org", "b@example.org"]
        assert stored.recipient_count == 2
        assert stored.subject == "Your invitation"
        assert stored.envelope_from == "surveys@platform.example"
        assert stored.size == len(bytes(stored.raw_message)) > 0
        assert b"Please answer." in bytes(stored.raw_message)
        assert starttls_server.received == [] and mail.outbox == []

        report = dispatch(budget_seconds=5)
    finally:
        signals.message_sent.disconnect(on_sent)

    assert report.sent == 1
    (received,) = starttls_server.wait_for(1)
    assert received.mail_from == SMTP_USER
    assert sorted(received.rcpt_tos) == ["a@example.org", "b@example.org"]
    assert received.message["From"].addresses[0].addr_spec == SMTP_USER
    assert received.message["From"].addresses[0].display_name == "Survey Team"
    assert str(received.message["Reply-To"]) == ORIGINAL_FROM
    assert received.message.get_content().strip() == "Please answer."
    stored.refresh_from_db()
    assert stored.status == "sent" and stored.sent_at is not None and stored.attempts == 1
    assert [m.pk for m in sent_signals] == [stored.pk]
    assert mail.outbox == []


def test_sender_name_and_existing_reply_to(site, starttls_server):
    own_server(site, starttls_server, from_name="Kundenumfragen Ü")
    with using_site(site):
        EmailMessage(
            "Hi", "Body", ORIGINAL_FROM, ["a@example.org"], reply_to=["desk@platform.example"]
        ).send()
    dispatch(budget_seconds=5)
    (received,) = starttls_server.wait_for(1)
    sender = received.message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Kundenumfragen Ü", SMTP_USER)
    assert str(received.message["Reply-To"]) == "desk@platform.example"


def test_same_sender_gets_no_reply_to(site, starttls_server):
    own_server(site, starttls_server)
    with using_site(site):
        send_mail("Hi", "Body", SMTP_USER, ["a@example.org"])
    dispatch(budget_seconds=5)
    (received,) = starttls_server.wait_for(1)
    assert received.message["Reply-To"] is None


def test_platform_mode_sends_through_the_fallback_at_once(site, starttls_server):
    own_server(site, starttls_server, mode="platform")
    with using_site(site):
        assert send_mail("Hi", "Body", ORIGINAL_FROM, ["a@example.org"]) == 1
    assert len(mail.outbox) == 1 and mail.outbox[0].from_email == ORIGINAL_FROM
    assert not OutboundMessage.objects.exists()
    assert starttls_server.received == []


def test_no_settings_row_means_platform(site):
    with using_site(site):
        send_mail("Hi", "Body", ORIGINAL_FROM, ["a@example.org"])
    assert len(mail.outbox) == 1
    assert not OutboundMessage.objects.exists()


def test_own_mode_without_verified_server_waits_in_the_queue(site, starttls_server):
    own_server(site, starttls_server, verified=False)
    with using_site(site):
        send_mail("Hi", "Body", ORIGINAL_FROM, ["a@example.org"])
    report = dispatch(budget_seconds=2)
    assert report.sent == 0
    assert statuses() == {"queued": 1}
    assert mail.outbox == [] and starttls_server.received == []


def test_form_submission_goes_to_the_sites_own_server(
    client, site, second_site, starttls_server, ssl_server
):
    own_server(site, starttls_server)
    own_server(second_site, ssl_server)
    page = FormPage(
        title="Survey",
        slug="survey",
        to_address="owner@second.example",
        from_address="forms@platform.example",
        subject="New answer",
    )
    second_site.root_page.add_child(instance=page)
    FormField.objects.create(page=page, label="Your answer", field_type="singleline")

    response = client.post("/survey/", {"your_answer": "forty-two"}, HTTP_HOST="second.example")
    assert response.status_code == 200
    stored = OutboundMessage.objects.get()
    assert stored.site_id == second_site.pk

    dispatch(budget_seconds=5)
    (received,) = ssl_server.wait_for(1)
    assert received.rcpt_tos == ["owner@second.example"]
    assert received.message["Subject"] == "New answer"
    assert "forty-two" in received.message.get_content()
    assert received.message["Auto-Submitted"] == "auto-generated"  # Wagtail's header kept
    assert starttls_server.received == [] and mail.outbox == []


def test_two_sites_two_servers_never_mix(site, second_site, starttls_server, ssl_server):
    own_server(site, starttls_server)
    own_server(second_site, ssl_server)
    with using_site(second_site):
        send_mail("for second", "Body", ORIGINAL_FROM, ["x@example.org"])
        with using_site(site):
            send_mail("for first", "Body", ORIGINAL_FROM, ["y@example.org"])
    EmailBackend(site=second_site).send_messages(
        [EmailMessage("explicit second", "Body", ORIGINAL_FROM, ["z@example.org"])]
    )
    # No site context: the platform's mail, not the default site's (it used to be).
    send_mail("no context", "Body", ORIGINAL_FROM, ["w@example.org"])

    report = dispatch(budget_seconds=5)
    assert report.sent == 3
    first = {r.message["Subject"] for r in starttls_server.wait_for(1)}
    second = {r.message["Subject"] for r in ssl_server.wait_for(2)}
    assert first == {"for first"}
    assert second == {"for second", "explicit second"}
    assert [m.subject for m in mail.outbox] == ["no context"]


def test_many_messages_are_stored_in_one_go(site, starttls_server, django_assert_max_num_queries):
    own_server(site, starttls_server)
    datatuple = [(f"n{i}", "Body", ORIGINAL_FROM, [f"r{i}@example.org"]) for i in range(5)]
    with django_assert_max_num_queries(8), using_site(site):
        assert send_mass_mail(datatuple) == 5
    assert statuses() == {"queued": 5}


def test_queued_mail_starts_a_dispatch_task_on_commit(
    site, starttls_server, django_capture_on_commit_callbacks
):
    from django_q.models import OrmQ

    own_server(site, starttls_server)
    with django_capture_on_commit_callbacks(execute=True) as callbacks, using_site(site):
        send_mail("Hi", "Body", ORIGINAL_FROM, ["a@example.org"])
        assert not OrmQ.objects.exists()  # not before the commit
    assert len(callbacks) == 1
    (queued,) = OrmQ.objects.all()
    assert queued.task["func"] == "wagtail_own_smtp.tasks.dispatch_task"
    assert queued.task["args"] == () and queued.task["kwargs"] == {}


def test_mail_queued_while_a_dispatch_run_waits_to_start_queues_no_second_run(
    site, starttls_server, django_capture_on_commit_callbacks
):
    """A wave over many sites (one send per site) or a busy form: each commit wants a run, but
    one queued and not yet started finds all of it; a run that started takes the next request."""
    from django_q.models import OrmQ

    from wagtail_own_smtp import tasks

    own_server(site, starttls_server)
    with using_site(site), django_capture_on_commit_callbacks(execute=True):
        for index in range(5):
            send_mail("Hi", "Body", ORIGINAL_FROM, [f"a{index}@example.org"])
    assert OrmQ.objects.count() == 1
    tasks.dispatch_task()  # the queued run starts (and sends the five)
    with using_site(site), django_capture_on_commit_callbacks(execute=True):
        send_mail("Hi", "Body", ORIGINAL_FROM, ["later@example.org"])
    assert OrmQ.objects.count() == 2
    assert statuses() == {"sent": 5, "queued": 1}


def test_a_run_request_whose_run_never_started_does_not_hold_back_mail_for_long(
    site, starttls_server, django_capture_on_commit_callbacks
):
    """The broker lost the queued run (a Redis restart): 10 s on, mail queues a new one."""
    from django_q.models import OrmQ

    from wagtail_own_smtp.models import DispatchRequest

    own_server(site, starttls_server)
    with using_site(site), django_capture_on_commit_callbacks(execute=True):
        send_mail("Hi", "Body", ORIGINAL_FROM, ["a@example.org"])
    OrmQ.objects.all().delete()
    with using_site(site), django_capture_on_commit_callbacks(execute=True):
        send_mail("Hi", "Body", ORIGINAL_FROM, ["b@example.org"])
    assert not OrmQ.objects.exists()  # the request stands: its run may still come
    DispatchRequest.objects.update(requested_at=timezone.now() - timedelta(seconds=11))
    with using_site(site), django_capture_on_commit_callbacks(execute=True):
        send_mail("Hi", "Body", ORIGINAL_FROM, ["c@example.org"])
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_queueing_mail_keeps_the_callers_database_connection(site, starttls_server):
    """django-q2's ORM broker closes the caller's database connection when it is handed a task
    outside a transaction (``CONN_MAX_AGE`` 0, Django's default): a page that sends mail would
    pay a new connection to the database for every ``send_mail`` and every chunk of a batch."""
    from django.db import connection

    own_server(site, starttls_server)
    connection.ensure_connection()
    before = connection.connection
    with using_site(site):
        send_mail("Hi", "Body", ORIGINAL_FROM, ["a@example.org"])
    assert connection.connection is before
    assert statuses() == {"queued": 1}


def test_oversized_message_is_refused_with_a_clear_error(site, starttls_server, settings):
    own_server(site, starttls_server)
    settings.WAGTAIL_OWN_SMTP_MAX_MESSAGE_SIZE = 2000
    with (
        pytest.raises(MessageTooLarge, match="larger than the 2000 bytes") as info,
        using_site(site),
    ):
        send_mail("Big", "x" * 5000, ORIGINAL_FROM, ["a@example.org"])
    assert isinstance(info.value, ValueError)
    assert not OutboundMessage.objects.exists()


def _wave_with_one_oversized(count, bad):
    return [
        EmailMessage(f"m{i}", "x" * (5000 if i == bad else 10), ORIGINAL_FROM, [f"p{i}@x.org"])
        for i in range(count)
    ]


@pytest.mark.django_db(transaction=True)
def test_a_refused_message_in_a_large_batch_keeps_what_was_queued_before_it(
    site, starttls_server, settings
):
    """As with Django's SMTP backend: the messages before the refused one go out, none after."""
    own_server(site, starttls_server)
    settings.WAGTAIL_OWN_SMTP_MAX_MESSAGE_SIZE = 2000
    with pytest.raises(MessageTooLarge), using_site(site):
        mail.get_connection().send_messages(_wave_with_one_oversized(1200, bad=700))
    queued = sorted(int(s[1:]) for s in OutboundMessage.objects.values_list("subject", flat=True))
    assert queued and queued == list(range(len(queued))) and len(queued) < 700

    dispatch(until_empty=True)

    assert len(starttls_server.wait_for(len(queued))) == len(queued)
    assert statuses() == {"sent": len(queued)}


@pytest.mark.django_db(transaction=True)
def test_a_large_batch_is_committed_in_chunks_that_keep_ahead_of_the_drain(
    site, starttls_server, monkeypatch
):
    """A run starts on the first chunk's commit and sends while the rest is stored. Storing is
    faster than sending, but not tenfold: a next chunk at most twice the one before commits
    before the run has sent that one, so it never finds the queue empty half way (it would end,
    and the rest would wait for the next run's start)."""
    from wagtail_own_smtp import mailqueue

    own_server(site, starttls_server)
    queued_at_commits = []
    monkeypatch.setattr(
        mailqueue,
        "dispatch_soon",
        lambda: queued_at_commits.append(OutboundMessage.objects.count()),
    )
    with using_site(site):
        wave = [EmailMessage(f"m{i}", "x", ORIGINAL_FROM, [f"p{i}@x.org"]) for i in range(1000)]
        sent = mail.get_connection().send_messages(wave)

    assert sent == 1000 and queued_at_commits[-1] == 1000
    chunks = [b - a for a, b in zip([0, *queued_at_commits], queued_at_commits, strict=False)]
    assert chunks[0] <= 50  # the first messages go out at once
    assert all(later <= 2 * earlier for earlier, later in zip(chunks, chunks[1:], strict=False))
    assert len(chunks) <= 8  # and few commits


@pytest.mark.django_db(transaction=True)
def test_a_large_batch_in_the_callers_transaction_is_all_or_nothing(
    site, starttls_server, settings
):
    own_server(site, starttls_server)
    settings.WAGTAIL_OWN_SMTP_MAX_MESSAGE_SIZE = 2000
    with pytest.raises(MessageTooLarge), using_site(site), transaction.atomic():
        mail.get_connection().send_messages(_wave_with_one_oversized(1200, bad=700))
    assert not OutboundMessage.objects.exists()


def test_header_injection_is_refused_not_stored(site, starttls_server):
    own_server(site, starttls_server)
    with pytest.raises(ValueError), using_site(site):
        send_mail("Hi\nBcc: victim@example.org", "Body", ORIGINAL_FROM, ["a@example.org"])
    with pytest.raises(ValueError), using_site(site):
        send_mail("Hi", "Body", ORIGINAL_FROM, ["a@example.org\nBcc: victim@example.org"])
    assert not OutboundMessage.objects.exists()


@pytest.mark.parametrize(
    "recipient",
    [
        '"attacker@evil.example>"@legit.example',  # one mailbox at legit.example
        '"john doe"@example.com',
        '"a\\"b"@example.com',
    ],
)
def test_the_envelope_recipient_is_the_address_given_quotes_kept(site, starttls_server, recipient):
    own_server(site, starttls_server)
    with using_site(site):
        send_mail("Hi", "Body", ORIGINAL_FROM, [recipient])
    assert OutboundMessage.objects.get().recipients == [recipient]

    dispatch(budget_seconds=5)

    (received,) = starttls_server.wait_for(1)
    assert received.rcpt_tos == [recipient]
    assert received.message["To"].addresses[0].addr_spec == recipient


def test_fallback_to_itself_is_refused(settings):
    if django.VERSION >= (6, 1):
        settings.MAILERS = {
            "default": {
                "BACKEND": "wagtail_own_smtp.backends.EmailBackend",
                "OPTIONS": {"fallback": "loop"},
            },
            "loop": {"BACKEND": "wagtail_own_smtp.backends.EmailBackend"},
        }
        with pytest.raises(ImproperlyConfigured):
            mail.mailers["default"]
    else:
        settings.WAGTAIL_OWN_SMTP_FALLBACK_BACKEND = "wagtail_own_smtp.backends.EmailBackend"
        with pytest.raises(ImproperlyConfigured):
            mail.get_connection()


def test_connection_options_of_get_connection_are_accepted(site):
    # What Wagtail's mail helper does; username/password None mean "absent".
    backend = mail.get_connection(username=None, password=None, fail_silently=None)
    assert isinstance(backend, EmailBackend)
    assert backend.send_messages([EmailMessage("Hi", "Body", ORIGINAL_FROM, ["a@b.example"])])
    assert len(mail.outbox) == 1
