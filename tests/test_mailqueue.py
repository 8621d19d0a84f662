"""The queue: the retry policy, how outcomes are committed, and claims that follow the index."""

import pytest
from django.core.mail import EmailMessage
from django.test.utils import CaptureQueriesContext

from tests.delivery_helpers import make_site, own_server, queue_mail, real_backend
from wagtail_own_smtp import signals, using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.mailqueue import retry_delay

pytestmark = pytest.mark.usefixtures("real_backend")
__all__ = ["real_backend"]


def test_retry_delay_grows_to_an_hour():
    first = [retry_delay(1).total_seconds() for _ in range(50)]
    assert 48 <= min(first) and max(first) <= 72 and len(set(first)) > 1  # jitter
    assert 96 <= retry_delay(2).total_seconds() <= 144
    assert all(retry_delay(n).total_seconds() <= 3600 for n in (7, 8, 30, 1000))


@pytest.mark.django_db(transaction=True)
def test_outcome_commits_do_not_wait_for_the_disk_and_the_host_setting_comes_back(
    starttls_server,
):
    """SQLite in WAL mode: synchronous=NORMAL for the run only. PostgreSQL: synchronous_commit
    off for the run only, and every outcome's transaction sets it off for itself as well."""
    from django.db import connection as db

    site = make_site()
    own_server(site, starttls_server)
    queue_mail(3)
    during, statements = [], []

    def look(sender, message, **kwargs):
        with db.cursor() as cursor:
            if db.vendor == "sqlite":
                cursor.execute("PRAGMA synchronous")
            else:
                cursor.execute("SHOW synchronous_commit")
            during.append(cursor.fetchone()[0])

    def note(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    signals.message_sent.connect(look)
    try:
        if db.vendor == "sqlite":
            with db.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
        with db.execute_wrapper(note):
            assert dispatch(until_empty=True).sent == 3
        with db.cursor() as cursor:
            if db.vendor == "sqlite":
                cursor.execute("PRAGMA synchronous")
                assert cursor.fetchone()[0] == 2  # FULL, as the host had it
                assert during == [1, 1, 1]  # NORMAL while the run sent
            else:
                cursor.execute("SHOW synchronous_commit")
                assert cursor.fetchone()[0] == "on"  # as the host had it
                assert during == ["off", "off", "off"]  # off while the run sent
                assert sum("SET LOCAL synchronous_commit TO OFF" in sql for sql in statements) == 3
    finally:
        signals.message_sent.disconnect(look)
        if db.vendor == "sqlite":
            with db.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=DELETE")


@pytest.mark.django_db
def test_claims_and_the_due_sites_follow_the_index_whatever_the_table_holds(starttls_server):
    """Neither a claim nor the look for due sites reads a site's sent rows or sorts its queue:
    their cost stays the same with 1,000 or 100,000 messages in the table (SQLite's plans)."""
    from django.db import connection as db

    if db.vendor != "sqlite":
        pytest.skip("PostgreSQL plans depend on the table's statistics: see bench-scale")
    site = make_site()
    own_server(site, starttls_server)
    queue_mail(3)
    with using_site(site, bulk=True):  # a wave: before it goes, a look for due normal mail
        EmailMessage("wave", "Body", to=["x@example.org"]).send()
    with CaptureQueriesContext(db) as queries:
        dispatch(until_empty=True)
    selects = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and "outboundmessage" in q["sql"]
    ]
    assert selects
    with db.cursor() as cursor:
        for sql in selects:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            plan = " / ".join(row[-1] for row in cursor.fetchall())
            if "IN (" in sql and '"status"' not in sql.split("WHERE", 1)[-1]:
                continue  # the claimed rows by primary key
            assert "TEMP B-TREE" not in plan, (sql, plan)
            assert (
                "own_smtp_site_due_idx" in plan
                or "own_smtp_lane_due_idx" in plan
                or "PRIMARY KEY" in plan
            ), (sql, plan)


@pytest.mark.django_db
def test_a_dispatchers_claims_hold_the_same_memory_however_many_connections_it_keeps(
    settings, starttls_server
):
    """Every session claims raw bytes for its own connection: the more connections, the
    smaller each claim, so a dispatcher holds at most ``CLAIM_MEMORY`` whatever ``CONNECTIONS``
    is (a claim still takes one message of any allowed size)."""
    from datetime import timedelta

    from django.utils import timezone

    from wagtail_own_smtp.mailqueue import CLAIM_MEMORY, claim_due, release_claims

    site = make_site()
    own_server(site, starttls_server)
    size = CLAIM_MEMORY // 64 // 2 + 100_000  # two of them exceed a 64th of the memory
    line = "x" * 75 + "\n"
    with using_site(site):
        for i in range(5):
            EmailMessage(f"big{i}", line * (size // len(line)), to=[f"b{i}@ex.org"]).send()
    now = timezone.now()

    def claimed_with(connections):
        settings.WAGTAIL_OWN_SMTP_CONNECTIONS = connections
        claimed = claim_due(site.pk, "owner", now, now + timedelta(minutes=5), 100)
        release_claims([m.pk for m in claimed], "owner")
        return claimed

    assert len(claimed_with(16)) == 5  # 8 MB each for 16 connections
    many = claimed_with(64)
    assert len(many) == 1 and many[0].size > CLAIM_MEMORY // 64 // 2
    assert len(claimed_with(64 * 1024)) == 1  # a share smaller than one message: one anyway
