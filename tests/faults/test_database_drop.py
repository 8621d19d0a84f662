"""The database connection dropped in the middle of a batch (PostgreSQL terminates the
dispatcher's backend): that run ends with the database error, the next tick recovers, and
nothing is lost."""

import time

import psycopg
import pytest
from django.db import Error, close_old_connections, connection

from tests.delivery_helpers import make_site, own_server, real_backend, statuses, wait_until
from tests.faults.conftest import needs_postgres
from tests.faults.helpers import lease_free, queue, stored_ids, tally
from wagtail_own_smtp import signals
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
