"""The database connection dropped in the middle of a batch (PostgreSQL terminates the
dispatcher's backend): that run ends with the database error, the next tick recovers, and
nothing is lost. Once in this process, where the moment is exact, and once in a real
`manage.py qcluster` worker."""

import time

import psycopg
import pytest
from django.db import Error, close_old_connections, connection

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
from wagtail_own_smtp import mailqueue, signals
from wagtail_own_smtp.dispatch import dispatch

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_backend")]
__all__ = ["real_backend"]

TOTAL = 60
DROP_AFTER = 10  # messages sent in the run, of a batch of 20


def _terminate(pid):
    """What a database restart or a failover does to a connection: pg_terminate_backend."""
    params = connection.get_connection_params()
    with psycopg.connect(
        dbname=params["dbname"],
        user=params.get("user"),
        host=params.get("host"),
        port=params.get("port"),
        autocommit=True,
    ) as other:
        (terminated,) = other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()
    return terminated


@pytest.mark.django_db(transaction=True)
def test_dropped_connection_mid_batch_recovers_next_tick(starttls_server, settings, figures):
    needs_postgres()
    settings.WAGTAIL_OWN_SMTP_LEASE_SECONDS = 2
    site = make_site()
    own_server(site, starttls_server)
    queue(TOTAL)
    expected = stored_ids()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (dispatcher_pid,) = cursor.fetchone()

    sent_in_run, terminated = [], []

    def drop_connection(sender, message, **kwargs):
        sent_in_run.append(message.pk)
        if len(sent_in_run) == DROP_AFTER:
            terminated.append(_terminate(dispatcher_pid))

    signals.message_sent.connect(drop_connection)
    try:
        with pytest.raises(Error) as crash:
            dispatch(until_empty=True)
    finally:
        signals.message_sent.disconnect(drop_connection)
    assert terminated == [True]
    received_before = len(starttls_server.received)

    # The next tick, as a django-q2 worker runs it: stale connections are closed before a task
    # (django_q.worker calls close_old_connections), then dispatch runs. Mail the dead run had
    # claimed waits for its lease to run out.
    close_old_connections()
    assert statuses().get("sending", 0) > 0  # the dead run's claims
    ticks, deadline = 0, time.monotonic() + 60
    while statuses() != {"sent": TOTAL} and time.monotonic() < deadline:
        wait_until(lambda: lease_free(site), 5)
        ticks += 1
        if not dispatch(until_empty=True).sent:
            time.sleep(0.2)  # the message lease of the dead run's claims still runs

    found = tally(starttls_server.received, expected)
    figures.update(
        found,
        error=type(crash.value).__name__,
        received_when_dropped=received_before,
        dispatch_runs_after_the_drop=ticks,
    )
    print(figures, crash.value)
    assert statuses() == {"sent": TOTAL}
    assert (found["sent"], found["lost"], found["unexpected"]) == (TOTAL, 0, 0)
    # At most the message in flight when the connection dropped: sent, but not yet marked.
    assert found["duplicated"] <= 1


def _worker_backend():
    """The PostgreSQL backend of the cluster's worker: the one whose last query was the outbox's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query ILIKE %s",
            # A table of this app, quoted as Django writes it ("_" is a wildcard in LIKE).
            ['%"wagtail\\_own\\_smtp\\_%'],
        )
        rows = cursor.fetchall()
    return rows[0][0] if len(rows) == 1 else None


@pytest.mark.django_db(transaction=True)
def test_dropped_connection_of_a_qcluster_worker(starttls_server, settings, tmp_path, figures):
    from django_q.models import Task

    needs_postgres()
    site = make_site()
    own_server(site, starttls_server)
    starttls_server.behaviour.delay = 0.02
    env = subprocess_env(settings, LEASE_SECONDS=2, DISPATCH_BUDGET=40)
    cluster = start_cluster(env, tmp_path / "qcluster.log")
    try:
        queue(200)  # on commit: a dispatch task
        expected = stored_ids()
        assert wait_until(lambda: len(starttls_server.received) >= 40, 60)
        # Its last statement may be a COMMIT at one moment and an UPDATE the next: keep the
        # first pid seen (the connection stays the same).
        seen = []
        assert wait_until(lambda: seen.append(_worker_backend()) or any(seen), 10)
        assert _terminate(next(pid for pid in seen if pid))
        received_when_dropped = len(starttls_server.received)
        assert wait_until(
            lambda: Task.objects.filter(func=mailqueue.DISPATCH_TASK, success=False).exists(),
            30,
        ), "the run in progress ends with the database error"
        # The next tick (the schedule's, time compressed) once the dead run's lease ran out.
        assert wait_until(lambda: lease_free(site), 10)
        mailqueue.dispatch_soon()
        assert wait_until(lambda: statuses() == {"sent": 200}, 90), statuses()
    finally:
        log = stop_process(cluster)

    failed = Task.objects.get(func=mailqueue.DISPATCH_TASK, success=False)
    found = tally(starttls_server.received, expected)
    figures.update(
        found,
        received_when_dropped=received_when_dropped,
        failed_task=str(failed.result).partition(" : ")[0],
        tasks_succeeded=Task.objects.filter(func=mailqueue.DISPATCH_TASK, success=True).count(),
    )
    print(figures)
    assert "terminating connection" in str(failed.result) or "closed" in str(failed.result), log
    assert (found["sent"], found["lost"], found["unexpected"]) == (200, 0, 0), log
    assert found["duplicated"] <= 1
