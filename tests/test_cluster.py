"""End to end with a real django-q2 cluster (`manage.py qcluster` as a subprocess): mail arrives
within seconds of send_mail. SQLite with the ORM broker; PostgreSQL with Redis."""

import os
import time
from pathlib import Path

import pytest
from django.core.mail import EmailMessage, get_connection, send_mail
from django.db import connection

from tests.delivery_helpers import (
    make_site,
    own_server,
    real_backend,
    start_manage,
    statuses,
    stop_process,
    subprocess_env,
    wait_until,
)
from wagtail_own_smtp import mailqueue, tasks, using_site

__all__ = ["real_backend"]

REDIS_DB = 9  # the queue key also carries this process's suffix, so parallel runs do not meet


def _cluster(settings, tmp_path, **env_overrides):
    env = subprocess_env(settings)
    env.update(env_overrides)
    log_path = tmp_path / "qcluster.log"
    cluster = start_manage(["qcluster"], env, log_path)
    running = wait_until(
        lambda: "running." in Path(log_path).read_text(errors="replace"), timeout=40, interval=0.2
    )
    if not running:
        raise AssertionError(stop_process(cluster))
    return cluster


def _send_and_time(server, site):
    started = time.monotonic()
    with using_site(site):
        send_mail("Invitation", "Please answer.", "surveys@platform.example", ["a@example.org"])
    (received,) = server.wait_for(1, timeout=30)
    return time.monotonic() - started, received


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("real_backend")
def test_qcluster_with_orm_broker_delivers_within_seconds(starttls_server, settings, tmp_path):
    from django_q.models import Task

    site = make_site()
    own_server(site, starttls_server)
    cluster = _cluster(settings, tmp_path)
    try:
        latency, received = _send_and_time(starttls_server, site)
        assert wait_until(lambda: statuses() == {"sent": 1}, timeout=10)
    finally:
        log = stop_process(cluster)
    print(f"{connection.vendor}/ORM broker: delivered {latency:.2f} s after send_mail")
    assert latency < 5, log
    assert received.rcpt_tos == ["a@example.org"]
    assert Task.objects.filter(func=mailqueue.DISPATCH_TASK, success=True).exists(), log


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("real_backend")
def test_a_large_batch_starts_going_out_while_the_rest_is_being_stored(
    plain_server, settings, tmp_path
):
    """One ``send_messages`` of a whole survey wave: the first invitations reach the server
    before the call has stored the last ones, and every one arrives once."""
    count = 2500
    site = make_site()
    own_server(site, plain_server)
    cluster = _cluster(settings, tmp_path)
    try:
        invitations = [
            EmailMessage(f"Invitation {i}", "Please answer.", "s@platform.example", [f"p{i}@x.org"])
            for i in range(count)
        ]
        with using_site(site), get_connection() as backend:
            assert backend.send_messages(invitations) == count
        stored = time.monotonic()
        received = plain_server.wait_for(count, timeout=120)
    finally:
        log = stop_process(cluster)
    first = min(r.arrived_at for r in received)
    print(f"first invitation arrived {stored - first:.2f} s before send_messages returned")
    assert first < stored, log
    recipients = sorted(r.rcpt_tos[0] for r in received)
    assert recipients == sorted(f"p{i}@x.org" for i in range(count))


@pytest.mark.skipif(
    os.environ.get("OWN_SMTP_TEST_DB") != "postgres",
    reason="the Redis variant runs on PostgreSQL (OWN_SMTP_TEST_DB=postgres)",
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("real_backend")
def test_qcluster_with_redis_broker_delivers_within_seconds(
    starttls_server, settings, tmp_path, monkeypatch
):
    redis = pytest.importorskip("redis")
    from django_q.conf import Conf

    name = f"tests-{os.environ['OWN_SMTP_TEST_DB_SUFFIX']}"
    redis_settings = {"host": "127.0.0.1", "port": 6379, "db": REDIS_DB}
    try:
        redis.Redis(**redis_settings).ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    # This process enqueues like the cluster's settings say (django-q2 reads them at import).
    for attribute, value in {
        "ORM": None,
        "REDIS": redis_settings,
        "PREFIX": name,
        "CLUSTER_NAME": name,
    }.items():
        monkeypatch.setattr(Conf, attribute, value)

    site = make_site()
    own_server(site, starttls_server)
    cluster = _cluster(settings, tmp_path, OWN_SMTP_Q_REDIS_DB=str(REDIS_DB))
    try:
        latency, received = _send_and_time(starttls_server, site)
        assert wait_until(lambda: statuses() == {"sent": 1}, timeout=10)
    finally:
        log = stop_process(cluster)
        redis.Redis(**redis_settings).delete(f"django_q:{name}:q")
    print(f"{connection.vendor}/Redis broker: delivered {latency:.2f} s after send_mail")
    assert latency < 5, log
    assert received.rcpt_tos == ["a@example.org"]


@pytest.mark.django_db
def test_schedule_exists_after_migrate_and_ensuring_it_is_idempotent():
    from django_q.models import Schedule

    (schedule,) = Schedule.objects.filter(func=mailqueue.DISPATCH_TASK)
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1
    schedule.minutes = 5
    schedule.save()
    tasks.ensure_schedule()
    tasks.ensure_schedule()
    (schedule,) = Schedule.objects.filter(func=mailqueue.DISPATCH_TASK)
    assert schedule.minutes == 1 and schedule.repeats == -1
