"""The deployment of docs/deployment.md: PostgreSQL, django-q2's Redis broker, three qcluster
processes (standing for three hosts) sharing four sites. The limits hold across the clusters,
the sites' sending spreads over them, and a cluster killed mid-drain leaves no mail behind."""

import os
import signal
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from example_project.local_smtp import LocalSmtpServer
from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.delivery_helpers import (
    make_site,
    own_server,
    real_backend,
    statuses,
    stop_process,
    subprocess_env,
    wait_until,
)
from tests.faults.conftest import needs_postgres, needs_redis
from tests.faults.helpers import queue, start_cluster, stored_ids, tally
from wagtail_own_smtp import mailqueue
from wagtail_own_smtp.models import SendRecord, SiteSendState

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_backend")]
__all__ = ["real_backend"]

REDIS_DB = 10
CLUSTERS = 3
PER_SITE = 50
# site name -> (minimum interval, hourly cap)
SITES = {
    "a.example": (0.2, 30),
    "b.example": (0.15, None),
    "c.example": (0.1, None),
    "d.example": (0.0, 40),
}
TOLERANCE = 0.02  # scheduling jitter of the server's arrival stamps on a busy machine


@pytest.fixture
def redis_broker(monkeypatch):
    """This process enqueues into the Redis queue the clusters read (OWN_SMTP_Q_REDIS_DB)."""
    from django_q.conf import Conf

    client = needs_redis(REDIS_DB)
    name = f"tests-{os.environ['OWN_SMTP_TEST_DB_SUFFIX']}"
    settings = {"host": "127.0.0.1", "port": 6379, "db": REDIS_DB}
    for attribute, value in {
        "ORM": None,
        "REDIS": settings,
        "PREFIX": name,
        "CLUSTER_NAME": name,
    }.items():
        monkeypatch.setattr(Conf, attribute, value)
    yield client
    client.delete(f"django_q:{name}:q")


class LeaseWatch(threading.Thread):
    """Samples who holds each site's lease: concurrent owners are concurrent dispatch runs, and
    with one worker per cluster, concurrent runs are different clusters (one run may hold
    several sites' leases, one connection each)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.owners_per_site = {}
        self.most_at_once = 0

    def run(self):
        try:
            while not self.stop.is_set():
                held = SiteSendState.objects.filter(lease_expires_at__gt=timezone.now()).exclude(
                    lease_owner=""
                )
                owners = dict(held.values_list("site_id", "lease_owner"))
                self.most_at_once = max(self.most_at_once, len(set(owners.values())))
                for site_id, owner in owners.items():
                    self.owners_per_site.setdefault(site_id, set()).add(owner)
                time.sleep(0.05)
        finally:
            connection.close()


class Schedule(threading.Thread):
    """django-q2's every-minute schedule, time compressed: a dispatch task every 0.5 s while
    the queue is empty."""

    def __init__(self, redis_client):
        super().__init__(daemon=True)
        self.redis = redis_client
        self.stop = threading.Event()
        self.enqueued = 0

    def run(self):
        from django_q.conf import Conf

        try:
            while not self.stop.wait(0.5):
                if not self.redis.llen(f"django_q:{Conf.CLUSTER_NAME}:q"):
                    mailqueue.dispatch_soon()
                    self.enqueued += 1
        finally:
            connection.close()


@pytest.mark.django_db(transaction=True)
def test_three_clusters_share_four_sites(certificates, settings, tmp_path, redis_broker, figures):
    needs_postgres()
    servers, sites = {}, {}
    for index, (hostname, (interval, cap)) in enumerate(SITES.items()):
        server = LocalSmtpServer(
            security="starttls", credentials=(SMTP_USER, SMTP_PASSWORD), certificates=certificates
        ).start()
        server.behaviour.delay = 0.03  # each message takes a while: parallel clusters pay off
        site = make_site(hostname, default=index == 0, name=hostname)
        own_server(site, server, min_interval=str(interval), max_per_hour=cap)
        servers[hostname], sites[hostname] = server, site

    env = subprocess_env(settings, LEASE_SECONDS=2, DISPATCH_BUDGET=3)
    env["OWN_SMTP_Q_REDIS_DB"] = str(REDIS_DB)
    clusters = [start_cluster(env, tmp_path / f"host-{n}.log") for n in range(CLUSTERS)]
    watch, schedule = LeaseWatch(), Schedule(redis_broker)
    killed_at = None
    try:
        for hostname, site in sites.items():
            queue(PER_SITE, prefix=hostname.split(".")[0], site=site)
        expected = {hostname: stored_ids(site=site) for hostname, site in sites.items()}
        watch.start()
        schedule.start()
        expected_sent = sum(min(PER_SITE, cap or PER_SITE) for _i, cap in SITES.values())

        def delivered():
            return sum(len(server.received) for server in servers.values())

        # One "host" dies mid-drain; the others take its sites over once its leases run out.
        assert wait_until(lambda: delivered() >= expected_sent * 0.4, 120)
        stop_process(clusters[1], sig=signal.SIGKILL)
        killed_at = delivered()
        assert wait_until(lambda: delivered() >= expected_sent and "sending" not in statuses(), 180)
        time.sleep(1)  # nothing more arrives
    finally:
        schedule.stop.set()
        watch.stop.set()
        schedule.join(5)
        watch.join(5)
        logs = [stop_process(cluster) for cluster in clusters]
        for server in servers.values():
            server.stop()

    per_site = {}
    for hostname, (interval, cap) in SITES.items():
        site, received = sites[hostname], servers[hostname].received
        found = tally(received, expected[hostname])
        arrivals = sorted(item.arrived_at for item in received)
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
        per_site[hostname] = {
            **found,
            "lost": found["lost"] - (PER_SITE - cap if cap else 0),
            "waiting_for_the_cap": PER_SITE - cap if cap else 0,
            "interval": interval,
            "smallest_gap": round(min(gaps), 3),
            "hourly_cap": cap,
            "dispatch_runs_that_held_its_lease": len(watch.owners_per_site.get(site.pk, ())),
        }
    figures.update(
        clusters=CLUSTERS,
        killed_cluster_after=killed_at,
        most_runs_at_once=watch.most_at_once,
        dispatch_tasks_enqueued=schedule.enqueued,
        sites=per_site,
        duplicated=sum(s["duplicated"] for s in per_site.values()),
    )
    print(figures)
    for hostname, (interval, cap) in SITES.items():
        found, site = per_site[hostname], sites[hostname]
        assert found["lost"] == 0 and found["unexpected"] == 0, (hostname, found)
        assert found["sent"] == (cap or PER_SITE), (hostname, found)
        assert found["smallest_gap"] >= interval - TOLERANCE, (hostname, found)
        assert SendRecord.objects.filter(site=site).count() == found["sent"]
        waiting = {"queued": PER_SITE - cap} if cap else {}
        assert statuses(site=site) == {"sent": cap or PER_SITE, **waiting}, hostname
    # The killed cluster had at most one message in flight per connection (one per site it held):
    # sent, but not marked sent. One cluster was killed, so a site gets at most one duplicate.
    assert all(found["duplicated"] <= 1 for found in per_site.values()), logs
    assert watch.most_at_once >= 2, "the clusters sent in parallel"
