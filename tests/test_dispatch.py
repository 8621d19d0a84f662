"""Faults: the server down, 421 mid-batch, a refused recipient, refused login, silence, a killed
worker. Every figure is counted at the server by Message-ID: sent, lost, duplicated."""

import io
import signal
import time
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from django.core.management import call_command
from django.utils import timezone

from example_project.local_smtp import LocalSmtpServer
from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.delivery_helpers import (
    make_site,
    own_server,
    queue_mail,
    real_backend,
    start_manage,
    statuses,
    stop_process,
    subprocess_env,
    wait_until,
)
from wagtail_own_smtp import signals
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import OutboundMessage, SmtpSettings

pytestmark = pytest.mark.usefixtures("real_backend")
__all__ = ["real_backend"]


def _stored_ids():
    """The Message-ID each stored message will carry (its domain may be rewritten)."""

    ids = []
    for raw in OutboundMessage.objects.order_by("pk").values_list("raw_message", flat=True):
        unique = message_from_bytes(bytes(raw), policy=policy.default)["Message-ID"]
        ids.append(unique.strip("<>").rpartition("@")[0])
    return ids


def _figures(received):
    """(distinct delivered, lost, duplicated) of all stored messages."""
    unique_parts = [r.message["Message-ID"].strip("<>").rpartition("@")[0] for r in received]
    expected = _stored_ids()
    lost = [mid for mid in expected if mid not in unique_parts]
    return len(set(unique_parts)), len(lost), len(unique_parts) - len(set(unique_parts))


class _Signals:
    """Collects message_sent / message_failed while the test runs."""

    def __init__(self):
        self.sent, self.failed = [], []

    def on_sent(self, sender, message, **kwargs):
        self.sent.append(message)

    def on_failed(self, sender, message, reason, **kwargs):
        self.failed.append((message, reason))


@pytest.fixture
def collected():
    collector = _Signals()
    signals.message_sent.connect(collector.on_sent)
    signals.message_failed.connect(collector.on_failed)
    yield collector
    signals.message_sent.disconnect(collector.on_sent)
    signals.message_failed.disconnect(collector.on_failed)


@pytest.mark.django_db
def test_server_down_defers_then_delivers_exactly_once(certificates, collected):
    site = make_site()
    server = LocalSmtpServer(
        security="starttls", credentials=(SMTP_USER, SMTP_PASSWORD), certificates=certificates
    ).start()
    port = server.port
    own_server(site, server)
    server.stop()  # the server is down
    queue_mail(3)

    report = dispatch(budget_seconds=5)
    assert report.deferred == 3 and report.sent == 0
    now = timezone.now()
    for message in OutboundMessage.objects.all():
        assert message.status == "deferred" and message.attempts == 1
        assert message.last_error  # the connection error, for the admin
        assert now + timedelta(seconds=40) < message.next_attempt_at < now + timedelta(seconds=80)
    assert dispatch(budget_seconds=1).deferred == 0  # not due again before the retry time

    server = LocalSmtpServer(
        security="starttls",
        credentials=(SMTP_USER, SMTP_PASSWORD),
        certificates=certificates,
        port=port,
    ).start()
    try:
        out = io.StringIO()
        call_command("own_smtp_send", "--retry-deferred", stdout=out)
        assert "Sent 3" in out.getvalue()
        received = server.wait_for(3)
        time.sleep(0.2)
        assert _figures(server.received) == (3, 0, 0)
        assert statuses() == {"sent": 3}
        assert {m.attempts for m in OutboundMessage.objects.all()} == {2}
        assert len(collected.sent) == 3 and not collected.failed
        assert received[0].authenticated_as == SMTP_USER
    finally:
        server.stop()


@pytest.mark.django_db
def test_421_mid_batch_defers_the_rest_which_later_go_exactly_once(starttls_server):
    site = make_site()
    own_server(site, starttls_server)
    queue_mail(6)

    def after_two(sender, message, **kwargs):
        if len(starttls_server.received) == 2:
            starttls_server.behaviour.data_reply = "421 4.3.2 Service shutting down"

    signals.message_sent.connect(after_two)
    try:
        report = dispatch(budget_seconds=10)
    finally:
        signals.message_sent.disconnect(after_two)
    assert (report.sent, report.deferred, report.failed) == (2, 4, 0)
    assert statuses() == {"sent": 2, "deferred": 4}
    assert "421 4.3.2" in OutboundMessage.objects.filter(status="deferred").first().last_error

    starttls_server.behaviour.data_reply = None
    call_command("own_smtp_send", "--retry-deferred", stdout=io.StringIO())
    starttls_server.wait_for(6)
    time.sleep(0.2)
    assert _figures(starttls_server.received) == (6, 0, 0)
    assert statuses() == {"sent": 6}


@pytest.mark.django_db
def test_550_for_a_recipient_fails_only_that_message(starttls_server, collected):
    site = make_site()
    own_server(site, starttls_server)
    starttls_server.behaviour.refuse_recipients = {"bad@ex.org": "550 5.1.1 No such user"}
    queue_mail(1, prefix="good")
    queue_mail(1, prefix="bad", to=["bad@ex.org"])
    queue_mail(1, prefix="mixed", to=["ok@ex.org", "bad@ex.org"])
    queue_mail(1, prefix="after")

    report = dispatch(budget_seconds=5)
    assert (report.sent, report.failed, report.deferred) == (3, 1, 0)
    bad = OutboundMessage.objects.get(subject="bad0")
    assert bad.status == "failed" and "550 5.1.1 No such user" in bad.last_error
    ((failed_message, reason),) = collected.failed
    assert failed_message.pk == bad.pk and "550 5.1.1" in reason
    mixed = OutboundMessage.objects.get(subject="mixed0")
    assert mixed.status == "sent" and "bad@ex.org" in mixed.last_error
    received = {r.message["Subject"]: r.rcpt_tos for r in starttls_server.wait_for(3)}
    assert received == {
        "good0": ["good0@ex.org"],
        "mixed0": ["ok@ex.org"],
        "after0": ["after0@ex.org"],
    }
    assert not SmtpSettings.objects.get(site=site).sending_paused


@pytest.mark.django_db
def test_535_pauses_the_site_and_fails_nothing(starttls_server, collected):
    site = make_site()
    own_server(site, starttls_server)
    starttls_server.credentials = (SMTP_USER, "changed on the server")
    queue_mail(3)

    report = dispatch(budget_seconds=5)
    assert report.paused_sites == [site.pk] and report.sent == report.failed == 0
    assert statuses() == {"queued": 3}
    assert not collected.failed
    smtp_settings = SmtpSettings.objects.get(site=site)
    assert smtp_settings.sending_paused
    assert smtp_settings.verification_status == "failed"
    assert "535 5.7.8 Authentication credentials invalid" in smtp_settings.last_error
    assert smtp_settings.last_error_hint
    assert SMTP_PASSWORD not in smtp_settings.last_error + smtp_settings.last_error_hint

    # a paused site is left alone: no further login attempts, mail keeps waiting
    attempts = starttls_server.auth_attempts
    assert dispatch(budget_seconds=1).sent == 0
    assert starttls_server.auth_attempts == attempts
    assert statuses() == {"queued": 3}


@pytest.mark.django_db
def test_refused_sender_pauses_the_site(starttls_server):
    site = make_site()
    own_server(site, starttls_server)
    starttls_server.behaviour.mail_reply = "553 5.7.1 Sender not allowed"
    queue_mail(2)
    report = dispatch(budget_seconds=5)
    assert report.paused_sites == [site.pk]
    assert statuses() == {"queued": 2}
    assert "553 5.7.1" in SmtpSettings.objects.get(site=site).last_error


@pytest.mark.django_db
def test_silent_server_times_out_within_the_timeout(silent_server, settings):
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 1
    site = make_site()
    own_server(site, silent_server)
    queue_mail(2)
    started = time.monotonic()
    report = dispatch(budget_seconds=10)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed
    assert report.deferred == 2
    assert statuses() == {"deferred": 2}
    assert "did not answer in time" in OutboundMessage.objects.first().last_error


@pytest.mark.django_db
def test_deferred_past_the_maximum_age_fails(collected, settings):
    site = make_site()
    server = LocalSmtpServer().start()
    own_server(site, server)
    server.stop()
    queue_mail(1)
    OutboundMessage.objects.update(created_at=timezone.now() - timedelta(days=4))
    report = dispatch(budget_seconds=5)
    assert report.failed == 1 and statuses() == {"failed": 1}
    assert len(collected.failed) == 1


@pytest.mark.django_db(transaction=True)
def test_killed_worker_loses_nothing(starttls_server, settings, tmp_path):
    """SIGKILL a sending `own_smtp_send --until-empty`; after its lease runs out, all mail goes."""
    site = make_site()
    own_server(site, starttls_server)
    starttls_server.behaviour.delay = 0.25
    total = 10
    queue_mail(total)
    expected = _stored_ids()

    env = subprocess_env(settings, LEASE_SECONDS=2)
    worker = start_manage(["own_smtp_send", "--until-empty"], env, tmp_path / "worker.log")
    try:
        assert wait_until(lambda: len(starttls_server.received) >= 3, timeout=30)
    finally:
        log = stop_process(worker, sig=signal.SIGKILL)
    killed_after = len(starttls_server.received)
    assert killed_after < total, log
    assert OutboundMessage.objects.filter(status="sending").exists()  # claims left behind

    settings.WAGTAIL_OWN_SMTP_LEASE_SECONDS = 2
    starttls_server.behaviour.delay = 0

    def drained():
        dispatch(until_empty=True)
        return statuses() == {"sent": total}

    assert wait_until(drained, timeout=15, interval=0.3)
    time.sleep(0.2)
    distinct, lost, duplicated = _figures(starttls_server.received)
    assert len(expected) == total
    print(
        f"killed after {killed_after} received; delivered {distinct}, lost {lost}, "
        f"duplicated {duplicated}"
    )
    assert (distinct, lost) == (total, 0)
    assert duplicated <= 1  # at most the one message in flight (at-least-once)


@pytest.mark.django_db
def test_status_command_shows_mode_counts_and_slots(starttls_server):
    site = make_site()
    own_server(site, starttls_server, min_interval="30")
    queue_mail(3)
    dispatch(budget_seconds=1)
    out = io.StringIO()
    call_command("own_smtp_status", stdout=out)
    text = out.getvalue()
    assert "mode: Send exclusively via own mail server" in text
    assert "verification: Verified" in text
    assert "queued 2" in text and "sent 1" in text
    line = {part.split(":")[0].strip(): part for part in text.splitlines()}
    assert "(+0m" in line["next slot"]  # within the 30 s interval
    assert "(+0m5" in line["drained by"] or "(+1m00s)" in line["drained by"]  # two more, 30 s apart


@pytest.mark.django_db
def test_send_command_shows_progress_and_what_the_rest_waits_for(starttls_server):
    site = make_site()
    own_server(site, starttls_server, max_per_hour=2)
    queue_mail(3)
    out = io.StringIO()
    call_command("own_smtp_send", "--until-empty", stdout=out)
    text = out.getvalue()
    assert text.count("sent (1 recipient(s))") == 2
    assert "Sent 2, deferred 0, failed 0." in text
    assert "Mail left waits for the hourly or daily limit" in text
    assert len(starttls_server.received) == 2


@pytest.mark.django_db
def test_status_command_counts_every_site_in_one_query(
    starttls_server, django_assert_max_num_queries
):
    sites = [make_site()] + [make_site(f"s{n}.example", default=False) for n in range(1, 6)]
    for site in sites:
        own_server(site, starttls_server, min_interval="30")
    queue_mail(2, site=sites[0])
    queue_mail(1, site=sites[1])
    dispatch(budget_seconds=1)  # one message of each of the two sites goes
    out = io.StringIO()
    # counts, settings, send states, waiting mail, sites, domain checks: no query per site (no
    # caps set)
    with django_assert_max_num_queries(6) as queries:
        call_command("own_smtp_status", stdout=out)
    # without caps a site's forecast needs no waiting row: their number and due times do
    assert not any("recipient_count" in q["sql"] for q in queries.captured_queries)
    blocks = out.getvalue().split("(#")[1:]
    assert len(blocks) == 6
    assert "queued 1" in blocks[0] and "sent 1" in blocks[0]
    assert "sent 1" in blocks[1] and "queued" not in blocks[1]
    assert all("messages: none" in block for block in blocks[2:])
