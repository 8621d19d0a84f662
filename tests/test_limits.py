"""Limits: the pure functions, and what a real server sees (interval, caps, parallel senders)."""

import io
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from tests.delivery_helpers import (
    delivery_figures,
    dispatch_in_short_runs,
    make_site,
    own_server,
    real_backend,
    statuses,
)
from wagtail_own_smtp import limits, using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import OutboundMessage, SendRecord, SiteSendState
from wagtail_own_smtp.sendstate import record_delivery, take_lease

__all__ = ["real_backend"]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


# -- pure functions --------------------------------------------------------------------------


def test_next_slot():
    assert limits.next_slot(None, 5 * S) is None
    assert limits.next_slot(T0, timedelta(0)) == T0
    assert limits.next_slot(T0, 2.5 * S) == T0 + 2.5 * S


def test_window_budgets_count_recipients_in_rolling_windows():
    records = [(T0 - 23 * limits.HOUR, 5), (T0 - 30 * 60 * S, 3), (T0 - 10 * S, 1)]
    caps = limits.Limits(max_per_hour=6, max_per_day=10)
    assert limits.used(records, T0, limits.HOUR) == 4
    assert limits.used(records, T0, limits.DAY) == 9
    assert limits.budget(records, T0, caps) == 1  # the day has 1 left, the hour 2
    assert limits.budget(records, T0, limits.Limits()) is None
    # a record counts until exactly one window later
    assert limits.used([(T0 - limits.HOUR, 2)], T0, limits.HOUR) == 0


def test_when_the_next_recipients_fit():
    caps = limits.Limits(min_interval=10 * S, max_per_hour=3)
    records = [(T0 - 50 * 60 * S, 1), (T0 - 40 * 60 * S, 1), (T0 - 5 * S, 1)]
    schedule = limits.Schedule(caps, last_sent_at=T0 - 5 * S, records=records, now=T0)
    # one more recipient: the hour is full until the oldest record leaves it
    assert schedule.slot_for(1) == (T0 + 10 * 60 * S, "cap")
    # two more: both old records must leave
    assert schedule.slot_for(2) == (T0 + 20 * 60 * S, "cap")
    # more than the cap can ever hold
    assert schedule.slot_for(4) == (None, "cap")
    free = limits.Schedule(caps, last_sent_at=T0 - 5 * S, records=[], now=T0)
    assert free.slot_for(1) == (T0 + 5 * S, "interval")
    assert limits.Schedule(limits.Limits(), None, [], T0).slot_for(50) == (T0, None)


def test_drain_eta():
    # 10 messages 30 s apart: the last goes 4.5 minutes after the first
    spaced = limits.Limits(min_interval=30 * S)
    assert limits.drain_eta([1] * 10, T0, None, [], spaced) == T0 + 270 * S
    # 5 recipients per hour, 12 single-recipient messages: two full hours of waiting
    capped = limits.Limits(max_per_hour=5)
    assert limits.drain_eta([1] * 12, T0, None, [], capped) == T0 + 2 * limits.HOUR
    # a message larger than a cap never drains
    assert limits.drain_eta([1, 9], T0, None, [], capped) is None
    assert limits.drain_eta([], T0, None, [], capped) == T0


def test_drain_eta_of_many_is_quick():
    caps = limits.Limits(min_interval=S, max_per_hour=1000, max_per_day=5000)
    records = [(T0 - i * 10 * S, 1) for i in range(8000, 0, -1)]
    eta = limits.drain_eta([1] * 20000, T0, T0, records, caps)
    assert eta > T0 + 3 * limits.DAY


def _walked_eta(counts, now, last_sent_at, records, caps):
    """drain_eta the slow way: every message through the dispatcher's own Schedule."""
    schedule = limits.Schedule(caps, last_sent_at, records, now)
    moment = now
    for count in counts:
        moment, _reason = schedule.slot_for(count)
        if moment is None:
            return None
        schedule.record(moment, count)
    return moment


def test_drain_eta_gives_the_moments_of_the_walk():
    import random

    rng = random.Random(5)
    for _case in range(300):
        caps = limits.Limits(
            min_interval=rng.choice([0, 0, 0.5, 1, 30, 90]) * S,
            max_per_hour=rng.choice([None, 1, 5, 12, 100]),
            max_per_day=rng.choice([None, 20, 250]),
        )
        counts = [rng.choice([1, 1, 1, 2, 3]) for _ in range(rng.randint(0, 120))]
        records = sorted(
            (T0 - rng.randint(1, 30 * 3600) * S, rng.randint(1, 4))
            for _ in range(rng.randint(0, 40))
        )
        last = rng.choice([None, T0 - 20 * S, T0 - S, T0 + 2 * S])
        assert limits.drain_eta(counts, T0, last, records, caps) == _walked_eta(
            counts, T0, last, records, caps
        ), (caps, counts, records, last)


def test_drain_eta_of_a_large_queue_without_caps_or_with_large_caps_is_instant():
    # own_smtp_status over 1,000 sites of 100,000 waiting messages must answer in under a second.
    # CPU time of this process: other processes on a busy machine (CI's parallel streams) do not
    # count; a message-by-message walk (about 0.5 s of CPU here, 0.006 s without) still fails.
    started = time.process_time()
    spaced = limits.Limits(min_interval=2 * S)
    assert limits.drain_eta([1] * 100_000, T0, T0, [], spaced) == T0 + 200_000 * S
    capped = limits.Limits(max_per_hour=50_000, max_per_day=1_000_000)
    assert limits.drain_eta([1] * 100_000, T0, None, [], capped) == T0 + limits.HOUR
    assert time.process_time() - started < 0.2


# -- against a real server --------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db


def _queue(count, prefix="m", recipients=1, site=None):
    """Queue ``count`` messages as ``site``'s mail (by default the default site's)."""
    with using_site(site or make_site()):
        for i in range(count):
            EmailMessage(
                f"{prefix}{i}",
                "Body",
                "surveys@platform.example",
                [f"{prefix}{i}-{r}@example.org" for r in range(recipients)],
            ).send()


@pytestmark_db
@pytest.mark.usefixtures("real_backend")
def test_minimum_interval_holds_at_the_server(starttls_server):
    site = make_site()
    own_server(site, starttls_server, min_interval="0.4")
    _queue(4)
    report = dispatch(until_empty=True)
    assert report.sent == 4
    arrivals = [r.arrived_at for r in starttls_server.wait_for(4)]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 0.4, gaps
    assert max(gaps) < 1.5, gaps  # and no needless waiting


@pytestmark_db
@pytest.mark.usefixtures("real_backend")
def test_hourly_cap_is_never_exceeded_and_the_rest_waits(starttls_server):
    site = make_site()
    own_server(site, starttls_server, max_per_hour=5)
    _queue(2, prefix="pair", recipients=2)  # 4 recipients
    _queue(3, prefix="single")  # 3 more
    report = dispatch(until_empty=True)
    received = starttls_server.received
    assert sum(len(r.rcpt_tos) for r in received) == 5
    assert report.sent == 3 and report.waiting_for == "cap"
    assert statuses() == {"sent": 3, "queued": 2}
    assert report.next_slot > timezone.now() + timedelta(minutes=59)

    # a second run sends nothing more, and the status shows when the queue drains
    assert dispatch(budget_seconds=1).sent == 0
    out = io.StringIO()
    call_command("own_smtp_status", stdout=out)
    text = out.getvalue()
    assert "queued 2" in text and "sent 3" in text
    drained = next(line for line in text.splitlines() if "drained by:" in line)
    assert "(+1h00m)" in drained or "(+59m" in drained, text


@pytestmark_db
@pytest.mark.usefixtures("real_backend")
def test_daily_cap_counts_earlier_sends(starttls_server):
    site = make_site()
    own_server(site, starttls_server, max_per_day=3, max_per_hour=100)
    # earlier today (outside the hour, inside the day): 2 recipients, e.g. a confirmation message
    record_delivery(site.pk, 2, timezone.now() - timedelta(hours=5))
    _queue(3)
    report = dispatch(until_empty=True)
    assert report.sent == 1 and report.waiting_for == "cap"
    assert len(starttls_server.received) == 1
    assert statuses() == {"sent": 1, "queued": 2}
    assert report.next_slot > timezone.now() + timedelta(hours=18)


@pytestmark_db
@pytest.mark.usefixtures("real_backend")
def test_message_over_a_cap_fails_instead_of_blocking_the_queue(starttls_server):
    site = make_site()
    own_server(site, starttls_server, max_per_hour=2)
    _queue(1, prefix="big", recipients=3)
    _queue(1, prefix="small")
    report = dispatch(until_empty=True)
    assert report.sent == 1 and report.failed == 1
    big = OutboundMessage.objects.get(subject="big0")
    assert big.status == "failed" and "3 recipients" in big.last_error


@pytestmark_db
@pytest.mark.usefixtures("real_backend")
def test_a_cap_of_zero_holds_all_mail(starttls_server):
    site = make_site()
    own_server(site, starttls_server, max_per_day=0)
    _queue(2)
    report = dispatch(until_empty=True)
    assert report.sent == report.failed == 0
    assert statuses() == {"queued": 2} and starttls_server.received == []


@pytestmark_db
def test_site_lease_is_taken_by_one_only():
    site = make_site()
    now = timezone.now()
    assert take_lease(site.pk, "a", now, 30)
    assert not take_lease(site.pk, "b", now, 30)
    # an expired lease of a dead holder can be taken, and the interval counts from its expiry
    assert take_lease(site.pk, "b", now + timedelta(seconds=31), 30)
    state = SiteSendState.objects.get(site=site)
    assert state.lease_owner == "b"
    assert state.last_sent_at == now + timedelta(seconds=30)


# -- several dispatchers at once --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("real_backend")
def test_three_dispatchers_in_parallel_keep_every_limit(starttls_server, ssl_server):
    first = make_site()
    second = make_site("second.example", default=False)
    own_server(first, starttls_server, min_interval="0.15", max_per_hour=8)
    own_server(second, ssl_server, min_interval="0.1")
    _queue(12, prefix="first", site=first)
    _queue(6, prefix="second", site=second)

    sent_by, errors = {}, []
    done = threading.Event()

    threads = [
        threading.Thread(target=dispatch_in_short_runs, args=(n, done, sent_by, errors))
        for n in range(3)
    ]
    for thread in threads:
        thread.start()
    # Run until everything allowed has arrived (however loaded the machine), then a while longer
    # to show that the workers send nothing past the cap.
    try:
        starttls_server.wait_for(8, timeout=60)
        ssl_server.wait_for(6, timeout=60)
        time.sleep(1)
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
    assert not errors

    first_received, second_received = starttls_server.received, ssl_server.received
    # the hourly cap: 8 recipients, never more, whichever worker sent them
    assert len(first_received) == 8 and len(second_received) == 6
    assert sum(sent_by.values()) == 14
    # never twice, and each site's interval held between workers
    for received, interval in ((first_received, 0.15), (second_received, 0.1)):
        distinct, _lost, duplicated = delivery_figures(received, [])
        assert duplicated == 0 and distinct == len(received)
        arrivals = sorted(r.arrived_at for r in received)
        assert min(b - a for a, b in zip(arrivals, arrivals[1:], strict=False)) >= interval
    assert statuses(site=first) == {"sent": 8, "queued": 4}
    assert statuses(site=second) == {"sent": 6}
    assert SendRecord.objects.filter(site=first).count() == 8
    print("sent per worker:", sent_by)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("real_backend")
def test_dispatchers_share_the_sites_between_them(starttls_server, settings):
    # A slow server: one worker alone would take a while, so the sites are worth sharing; with
    # two connections a worker holds two sites at a time and leaves the others to the rest.
    settings.WAGTAIL_OWN_SMTP_CONNECTIONS = 2
    starttls_server.behaviour.delay = 0.05
    sites = [make_site()] + [make_site(f"s{n}.example", default=False) for n in range(1, 4)]
    for n, site in enumerate(sites):
        own_server(site, starttls_server)
        _queue(4, prefix=f"site{n}-", site=site)

    sent_by, errors = {}, []

    def worker(name):
        try:
            sent_by[name] = dispatch(until_empty=True).sent
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    # The first worker is under way before the others start: it must not hold every site.
    threads[0].start()
    starttls_server.wait_for(1, timeout=30)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    print("sent per worker:", sent_by)
    received = starttls_server.wait_for(16)
    distinct, lost, duplicated = delivery_figures(received, [])
    assert (distinct, duplicated) == (16, 0)
    assert sum(sent_by.values()) == 16 and statuses() == {"sent": 16}
    # the sites went in parallel: more than one worker sent
    assert sum(1 for count in sent_by.values() if count) >= 2, sent_by
