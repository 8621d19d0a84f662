"""Two lanes per site: normal mail goes before bulk mail at every slot, and bulk mail leaves a
reserve of each cap for it (pure functions, the backend's mark, and what a real server sees)."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.mail import EmailMessage, get_connection
from django.db import connection

from tests.delivery_helpers import (
    dispatch_in_short_runs,
    make_site,
    own_server,
    real_backend,
    statuses,
)
from wagtail_own_smtp import limits, using_site
from wagtail_own_smtp.backends import EmailBackend
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import OutboundMessage

__all__ = ["real_backend"]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def queue(count, prefix, site, bulk=False, recipients=1):
    """Queue ``count`` messages as ``site``'s mail, in the bulk lane with ``bulk``."""
    with using_site(site, bulk=bulk):
        get_connection().send_messages(
            [
                EmailMessage(
                    f"{prefix}{i}",
                    "Body",
                    "surveys@platform.example",
                    [f"{prefix}{i}-{r}@example.org" for r in range(recipients)],
                )
                for i in range(count)
            ]
        )


def subjects(received):
    return [item.message["Subject"] for item in received]


# -- the limits: the bulk share of each cap ---------------------------------------------------


def test_bulk_mail_leaves_the_reserve_of_each_cap_to_normal_mail():
    caps = limits.Limits(max_per_hour=20, bulk_reserve=10)
    assert caps.bulk_cap(20) == 18
    records = [(T0 - 10 * S, 18)]  # 18 recipients went in the last hour
    schedule = limits.Schedule(caps, None, records, T0)
    # bulk waits until those 18 leave the hour; normal mail still has 2
    assert schedule.slot_for(1, bulk=True) == (T0 - 10 * S + limits.HOUR, "cap")
    assert schedule.slot_for(2) == (T0, None)
    assert schedule.slot_for(3) == (T0 - 10 * S + limits.HOUR, "cap")
    # normal mail that used the reserve holds bulk mail back as well: the reserve stays free
    assert limits.Schedule(caps, None, [(T0 - S, 17)], T0).slot_for(2, bulk=True)[1] == "cap"
    # no reserve, no caps: no difference
    assert limits.Schedule(limits.Limits(max_per_hour=20), None, records, T0).slot_for(
        2, bulk=True
    ) == (T0, None)
    assert limits.Schedule(limits.Limits(), None, records, T0).slot_for(50, bulk=True) == (T0, None)


def test_a_bulk_message_larger_than_the_bulk_share_waits_for_an_empty_window():
    caps = limits.Limits(max_per_hour=10, bulk_reserve=10)  # bulk share 9
    schedule = limits.Schedule(caps, None, [(T0 - 30 * 60 * S, 1)], T0)
    assert schedule.slot_for(10, bulk=True) == (T0 + 30 * 60 * S, "cap")
    assert schedule.slot_for(11, bulk=True) == (None, "cap")  # over the cap itself: never


def test_drain_time_of_both_lanes():
    caps = limits.Limits(max_per_hour=20, bulk_reserve=10)
    # 18 bulk recipients go at once, the other 2 an hour later; normal mail goes first
    assert limits.drain_eta([], T0, None, [], caps, bulk=[1] * 20) == T0 + limits.HOUR
    assert limits.drain_eta([1, 1], T0, None, [], caps) == T0
    # 2 normal recipients first leave 16 of the bulk share for the first hour
    assert limits.drain_eta([1, 1], T0, None, [], caps, bulk=[1] * 18) == T0 + limits.HOUR
    spaced = limits.Limits(min_interval=S, bulk_reserve=10)
    assert limits.drain_eta([1] * 3, T0, None, [], spaced, bulk=[1] * 7) == T0 + 9 * S


# -- the mark -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("real_backend")
def test_host_code_marks_bulk_mail_and_everything_else_is_normal():
    site = make_site()
    own_server(site, None)
    queue(1, "plain", site)
    queue(1, "wave", site, bulk=True)
    with using_site(site, bulk=True), using_site(site):
        EmailMessage("inner", "Body", to=["a@example.org"]).send()  # the innermost block wins
    EmailBackend(site=site, bulk=True).send_messages(
        [EmailMessage("backend", "Body", to=["b@example.org"])]
    )
    with using_site(site, bulk=True):
        EmailBackend(site=site).send_messages([EmailMessage("own", "Body", to=["c@x.org"])])
    lanes = dict(OutboundMessage.objects.values_list("subject", "lane"))
    assert lanes == {
        "plain0": "normal",
        "wave0": "bulk",
        "inner": "normal",
        "backend": "bulk",
        "own": "normal",  # a backend with its own site says the lane itself
    }


# -- a real server --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("real_backend")
def test_normal_mail_goes_at_the_next_slot_before_a_queued_wave(starttls_server):
    site = make_site()
    own_server(site, starttls_server, min_interval="1")
    queue(30, "bulk", site, bulk=True)
    errors = []

    def worker():
        try:
            dispatch(budget_seconds=7)
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        starttls_server.wait_for(2, timeout=30)  # the wave is under way, a batch claimed
        queued_at = time.monotonic()
        queue(1, "normal", site)
        received = starttls_server.wait_for(5, timeout=30)
    finally:
        thread.join(30)
    assert not errors
    received = starttls_server.received
    names = subjects(received)
    normal = names.index("normal0")
    delay = received[normal].arrived_at - queued_at
    print(f"normal message arrived {delay:.2f} s after it was queued; order: {names}")
    assert delay <= 1.5, delay  # the next slot (1 s interval), + 0.5 s
    assert normal <= 3, names  # before the rest of the wave
    assert names[normal + 1 :] and all(name.startswith("bulk") for name in names[normal + 1 :])
    # the interval counts every message, whichever lane
    arrivals = [item.arrived_at for item in received]
    assert min(b - a for a, b in zip(arrivals, arrivals[1:], strict=False)) >= 1.0
    assert statuses(lane="normal") == {"sent": 1}


@pytest.mark.django_db
@pytest.mark.usefixtures("real_backend")
def test_a_wave_stops_at_the_bulk_share_and_normal_mail_still_goes(starttls_server, settings):
    settings.WAGTAIL_OWN_SMTP_BULK_RESERVE = 10
    site = make_site()
    own_server(site, starttls_server, max_per_hour=20)
    queue(25, "bulk", site, bulk=True)
    report = dispatch(until_empty=True)
    assert report.sent == 18 and report.waiting_for == "cap"
    assert len(starttls_server.received) == 18
    assert statuses(lane="bulk") == {"sent": 18, "queued": 7}

    queue(2, "normal", site)
    report = dispatch(until_empty=True)
    assert report.sent == 2  # the reserve: normal mail goes within the hour (now)
    assert subjects(starttls_server.wait_for(20))[18:] == ["normal0", "normal1"]
    assert statuses(lane="normal") == {"sent": 2}
    # and the cap itself holds for everyone
    queue(1, "late", site)
    assert dispatch(until_empty=True).sent == 0
    assert statuses(lane="bulk") == {"sent": 18, "queued": 7}


# -- several dispatchers at once --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("real_backend")
def test_two_dispatchers_keep_normal_mail_first_and_the_reserve(starttls_server, settings):
    settings.WAGTAIL_OWN_SMTP_BULK_RESERVE = 10
    site = make_site()
    own_server(site, starttls_server, min_interval="0.2", max_per_hour=20)
    queue(30, "bulk", site, bulk=True)
    sent_by, errors = {}, []
    done = threading.Event()

    runs = [(n, done, sent_by, errors) for n in range(2)]
    threads = [threading.Thread(target=dispatch_in_short_runs, args=args) for args in runs]
    for thread in threads:
        thread.start()
    try:
        starttls_server.wait_for(3, timeout=60)
        queued_at = time.monotonic()
        queue(2, "normal", site)
        # what the hour allows the wave (18 recipients, the 2 normal ones counted: the reserve
        # stays free), then a while longer: nothing more goes
        starttls_server.wait_for(18, timeout=60)
        time.sleep(1)
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
    assert not errors
    received = starttls_server.received
    names = subjects(received)
    print("sent per worker:", sent_by, "order:", names)
    assert sorted(names) == sorted([f"bulk{n}" for n in range(16)] + ["normal0", "normal1"])
    # the normal mail went before the rest of the wave: at most the bulk message already on
    # its way when it was queued arrived in between
    last_normal = max(names.index("normal0"), names.index("normal1"))
    overtaking = [item for item in received[:last_normal] if item.arrived_at > queued_at]
    assert sum(1 for item in overtaking if item.message["Subject"].startswith("bulk")) <= 1
    assert statuses(lane="bulk") == {"sent": 16, "queued": 14}
    assert statuses(lane="normal") == {"sent": 2}
    assert sum(sent_by.values()) == 18
