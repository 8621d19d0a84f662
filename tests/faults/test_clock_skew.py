"""Two workers whose clocks disagree by 90 minutes (simulated per thread) share one site: the
minimum interval, the hourly cap and the site lease still hold, nothing goes twice.

On its own machine's clock, the worker running ahead would take the other's lease as long
expired, its interval as long over, and count none of its sends in the hourly window; the one on
time would wait 90 minutes for the interval after the other's sends. The dispatcher reads the
database server's clock instead.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.delivery_helpers import make_site, own_server, real_backend, statuses
from tests.faults.helpers import queue, stored_ids, tally
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import SendRecord

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_backend")]
__all__ = ["real_backend"]

SKEW = {"on time": timedelta(0), "ahead": timedelta(minutes=90)}
INTERVAL = 0.25
CAP = 12
# Arrival times are taken at the server after DATA; allow for the scheduling jitter of a busy
# machine, far below the skew (a skewed clock would show as a gap of 0 or minutes).
TOLERANCE = 0.02


@pytest.fixture
def skewed_clocks(monkeypatch):
    """timezone.now() runs ahead or behind in the worker threads named in SKEW."""
    real_now = timezone.now

    def now():
        return real_now() + SKEW.get(threading.current_thread().name, timedelta(0))

    monkeypatch.setattr(timezone, "now", now)


@pytest.mark.django_db(transaction=True)
def test_limits_hold_between_workers_with_skewed_clocks(starttls_server, skewed_clocks, figures):
    site = make_site()
    own_server(site, starttls_server, min_interval=str(INTERVAL), max_per_hour=CAP)
    queue(20)
    expected = stored_ids()
    sent_by, errors = {}, []
    stop = time.monotonic() + 8

    def worker():
        name = threading.current_thread().name
        try:
            while time.monotonic() < stop:
                # Short runs, and a pause after one that sent: the other worker, which keeps
                # trying meanwhile (and is refused by the lease), takes the site over. The lease
                # changes hands between the two clocks many times.
                sent = dispatch(budget_seconds=0.4).sent
                sent_by[name] = sent_by.get(name, 0) + sent
                time.sleep(0.3 if sent else 0.01)
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    # The worker on time starts and holds the lease when the other comes.
    threads = [threading.Thread(target=worker, name=name) for name in SKEW]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join(60)

    assert not errors, errors
    received = starttls_server.received
    arrivals = sorted(item.arrived_at for item in received)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    found = tally(received, expected)
    found["waiting_for_the_cap"] = 20 - len(received)
    found["lost"] -= found["waiting_for_the_cap"]
    figures.update(
        found,
        skew_minutes=90,
        sent_per_worker=dict(sent_by),
        hourly_cap=CAP,
        min_interval=INTERVAL,
        smallest_gap=round(min(gaps), 3),
    )
    print(figures)
    assert len(received) == CAP, "the hourly cap held across both clocks"
    assert found["duplicated"] == 0 and found["lost"] == 0
    assert min(gaps) >= INTERVAL - TOLERANCE, gaps
    assert all(count > 0 for count in sent_by.values()), "both workers sent"
    assert statuses() == {"sent": CAP, "queued": 20 - CAP}
    assert SendRecord.objects.filter(site=site).count() == CAP
