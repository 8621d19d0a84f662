"""`manage.py qcluster` killed with SIGKILL five times while it drains the queue, restarted each
time: nothing is lost; at most the one message in flight per kill goes twice."""

import signal
import time

import pytest

from tests.delivery_helpers import (
    make_site,
    own_server,
    real_backend,
    statuses,
    stop_process,
    subprocess_env,
    wait_until,
)
from tests.faults.conftest import needs_postgres
from tests.faults.helpers import lease_free, queue, start_cluster, stored_ids, tally
from wagtail_own_smtp import mailqueue

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_backend")]
__all__ = ["real_backend"]

TOTAL = 300
KILLS = 5
SENT_BETWEEN_KILLS = 40


@pytest.mark.django_db(transaction=True)
def test_sigkilled_cluster_loses_nothing(starttls_server, settings, tmp_path, figures):
    needs_postgres()
    site = make_site()
    own_server(site, starttls_server)
    starttls_server.behaviour.delay = 0.02  # a message in flight most of the time
    # A killed dispatcher's site and messages are free again after 2 s (default 300 s).
    env = subprocess_env(settings, LEASE_SECONDS=2, DISPATCH_BUDGET=40)

    cluster = start_cluster(env, tmp_path / "qcluster-0.log")
    received_at_kill, in_flight = [], []
    try:
        queue(TOTAL)  # on commit: one dispatch task
        expected = stored_ids()
        for kill in range(1, KILLS + 1):
            target = len(starttls_server.received) + SENT_BETWEEN_KILLS
            assert wait_until(lambda t=target: len(starttls_server.received) >= t, 90)
            stop_process(cluster, sig=signal.SIGKILL)  # the whole process group, no goodbye
            received_at_kill.append(len(starttls_server.received))
            in_flight.append(statuses().get("sending", 0))
            cluster = start_cluster(env, tmp_path / f"qcluster-{kill}.log")
            # The every-minute schedule, time compressed: once the dead run's lease has run
            # out, a dispatch task (what the schedule enqueues) picks the mail up.
            assert wait_until(lambda: lease_free(site), 10)
            mailqueue.dispatch_soon()
        assert wait_until(lambda: statuses() == {"sent": TOTAL}, 120), statuses()
    finally:
        log = stop_process(cluster)

    found = tally(starttls_server.received, expected)
    figures.update(
        found,
        kills=KILLS,
        received_at_each_kill=received_at_kill,
        claimed_when_killed=in_flight,
    )
    print(figures)
    assert (found["sent"], found["lost"], found["unexpected"]) == (TOTAL, 0, 0), log
    assert found["duplicated"] <= KILLS, "at most the one message in flight per kill"
    assert statuses() == {"sent": TOTAL}


SITES = 8
PER_SITE = 50
SITE_KILLS = 3
LEASE_SECONDS = 2


@pytest.mark.django_db(transaction=True)
def test_sigkilled_cluster_over_many_sites_loses_nothing(
    starttls_server, settings, tmp_path, figures
):
    """The dispatcher keeps many sites' conversations going: a kill may resend at most the one
    message in flight on each of them."""
    needs_postgres()
    sites = [make_site()] + [make_site(f"k{n}.example", default=False) for n in range(1, SITES)]
    for site in sites:
        own_server(site, starttls_server)
    starttls_server.behaviour.delay = 0.2  # every conversation has a message in flight
    env = subprocess_env(settings, LEASE_SECONDS=LEASE_SECONDS, DISPATCH_BUDGET=40)

    cluster = start_cluster(env, tmp_path / "qcluster-0.log")
    in_flight = []
    try:
        for n, site in enumerate(sites):
            queue(PER_SITE, prefix=f"s{n}-", site=site)
        expected = stored_ids()
        for kill in range(1, SITE_KILLS + 1):
            target = len(starttls_server.received) + 40
            assert wait_until(lambda t=target: len(starttls_server.received) >= t, 90)
            stop_process(cluster, sig=signal.SIGKILL)
            in_flight.append(statuses().get("sending", 0))
            cluster = start_cluster(env, tmp_path / f"qcluster-{kill}.log")
            # Once the dead run's leases ran out (the new cluster may take them at once from
            # the tasks still queued), a dispatch task picks the rest up.
            time.sleep(LEASE_SECONDS + 0.5)
            mailqueue.dispatch_soon()
        total = SITES * PER_SITE
        assert wait_until(lambda: statuses() == {"sent": total}, 120), statuses()
    finally:
        log = stop_process(cluster)

    found = tally(starttls_server.received, expected)
    figures.update(
        found,
        sites=SITES,
        kills=SITE_KILLS,
        claimed_when_killed=in_flight,
        conversations_at_once=starttls_server.peak_in_data,
    )
    print(figures)
    assert (found["sent"], found["lost"], found["unexpected"]) == (total, 0, 0), log
    assert starttls_server.peak_in_data > 1, "the sites went side by side"
    # At most the one message in flight on each site's connection per kill.
    assert found["duplicated"] <= SITE_KILLS * SITES
    assert statuses() == {"sent": total}
