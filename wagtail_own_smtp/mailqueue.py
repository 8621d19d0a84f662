"""The outbound queue: claims, outcome writes, the retry policy, and the one way to
start a dispatch run once the work that queued mail commits.

Named ``mailqueue``, not ``queue``: a module of that name would stand for the standard library's
``queue`` wherever the package's own folder is on ``sys.path`` (``makemessages`` run from it).

A message is claimed (``sending``) under the lease of the dispatcher that sends it, with an
expiry: if that worker dies, the claim runs out and the message is due again. Its outcome is
written right after the server answered, so a crash can cause at most the one message in flight
on a connection to go twice (at-least-once).
"""

import random
import time
from contextlib import nullcontext, suppress
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Case, Exists, F, Q, Value, When
from django.utils import timezone
from wagtail.models import Site

from . import conf
from .models import DispatchRequest, Lane, MessageStatus, OutboundMessage, SendRecord
from .querysets import OutboundMessageQuerySet

# Raw bytes the claims of one dispatcher hold in memory at most, shared by its connections:
# raising CONNECTIONS makes each claim smaller, not the process larger (16 connections: 8 MB each).
CLAIM_MEMORY = 128 * 1024 * 1024
RETRY_FIRST = 60  # seconds: the first retry comes after about a minute
RETRY_MAX = 3600  # seconds: retries come at most an hour apart
# The django-q2 entry point that runs the dispatcher (tasks.dispatch_task), by its path: the
# queue starts it without importing the dispatcher.
DISPATCH_TASK = "wagtail_own_smtp.tasks.dispatch_task"


def messages():
    """The queue's rows with its questions (``OutboundMessageQuerySet``): the same as
    ``OutboundMessage.objects`` where models.py attaches that QuerySet as its manager."""
    return OutboundMessageQuerySet(OutboundMessage)


# -- starting a run ------------------------------------------------------------------------------


def queue_task(path, *args, task_name):
    """Hand the task ``path(*args)`` to django-q2; its id.

    django-q2's ORM broker closes the caller's database connections when handed a task outside
    a transaction (close_old_connections): inside one of its own it leaves them open, so a page
    that sends mail does not pay a new database connection for it.
    """
    from django_q.conf import Conf
    from django_q.tasks import async_task

    with transaction.atomic(using=Conf.ORM) if Conf.ORM else nullcontext():
        return async_task(path, *args, task_name=task_name)


def dispatch_soon():
    """Queue a dispatch run now (after mail was queued, or a server was verified), unless one
    queued before has not started yet: that one finds this mail too (``DispatchRequest``)."""
    if not DispatchRequest.take():
        return None
    try:
        return queue_task(DISPATCH_TASK, task_name="wagtail_own_smtp dispatch")
    except BaseException:
        DispatchRequest.clear()
        raise


def dispatch_after_commit():
    """Queue a dispatch run once the current transaction commits (at once outside one).

    robust: a broker that is down must not turn committed work (queued mail, a confirmation)
    into an error; the every-minute schedule picks it up.
    """
    transaction.on_commit(dispatch_soon, robust=True)


# -- claims --------------------------------------------------------------------------------------


def claim_due(site_id, owner, now, lease_until, limit):
    """Mark up to ``limit`` due messages of the site ``sending`` under the lease; return them.

    The normal lane first: bulk messages only fill what due normal mail leaves of ``limit``.
    Within a lane, in due order (each lane's parts follow the index (site, lane, status, due)).
    At most the session's share of ``CLAIM_MEMORY`` in raw bytes (one message at least).
    """
    candidates = []
    for lane in (Lane.NORMAL, Lane.BULK):
        wanted = limit - len(candidates)
        if wanted <= 0:
            break
        parts = messages().filter(site_id=site_id, lane=lane).due_parts(now)
        candidates += sorted(
            row
            for part in parts
            for row in part.order_by("next_attempt_at", "pk").values_list(
                "next_attempt_at", "pk", "size"
            )[:wanted]
        )[:wanted]
    pks, held, share = [], 0, CLAIM_MEMORY // max(1, int(conf.get("CONNECTIONS")))
    for _due_at, pk, size in candidates:
        if pks and held + size > share:
            break
        pks.append(pk)
        held += size
    if not pks:
        return []
    messages().due(now).filter(pk__in=pks).update(
        status=MessageStatus.SENDING, claimed_by=owner, lease_expires_at=lease_until
    )
    # by primary key only: a condition on the status could lead the database to that index
    claimed = {m.pk: m for m in OutboundMessage.objects.filter(pk__in=pks)}
    return [
        m
        for m in map(claimed.get, pks)
        if m is not None and m.claimed_by == owner and m.status == MessageStatus.SENDING
    ]


def normal_mail_due(site_id, now):
    """Whether a normal message of the site is due: one query, one index probe per due part."""
    due = Q()
    for part in messages().filter(site_id=site_id, lane=Lane.NORMAL).due_parts(now):
        due |= Exists(part)
    return Site.objects.filter(pk=site_id).filter(due).exists()


class NormalFirst:
    """Normal mail before bulk in a site's session, whatever was claimed first.

    Before a claimed bulk message goes (``SiteSession.next_delivery``), one cheap look
    (``normal_mail_due``, at most every ``LOOK_EVERY`` seconds) whether normal mail of the site
    became due meanwhile: then the claimed messages go back (``release_claims``), and the
    session's next claim takes the normal lane first. Only on the dispatcher's thread, and only
    with no message of the batch in flight.
    """

    LOOK_EVERY = 0.1  # seconds

    def __init__(self, site_id, owner):
        self.site_id, self.owner, self.looked = site_id, owner, None

    def looked_lately(self):
        """Whether the last look was less than ``LOOK_EVERY`` ago (the next is not due)."""
        return self.looked is not None and time.monotonic() - self.looked < self.LOOK_EVERY

    @staticmethod
    def bulk(batch):
        """Whether the batch's next message is bulk mail."""
        return bool(batch) and batch[0].lane == Lane.BULK

    def make_way(self, batch, now):
        """Release ``batch`` (and empty it) when it starts with bulk and normal mail is due;
        whether it did."""
        if not self.bulk(batch):
            return False
        if self.looked_lately():
            return False
        self.looked = time.monotonic()
        if not normal_mail_due(self.site_id, now):
            return False
        release_claims([message.pk for message in batch], self.owner)
        batch.clear()
        return True


def extend_claims(pks, owner, until):
    """Keep claimed, unsent messages claimed until ``until`` (the renewed lease)."""
    messages().claimed(owner).filter(pk__in=pks).update(lease_expires_at=until)


def release_claims(pks, owner):
    """Put claimed, unsent messages back: queued, or deferred if they had failed before."""
    messages().claimed(owner).filter(pk__in=list(pks)).update(
        status=Case(
            When(attempts=0, then=Value(MessageStatus.QUEUED)),
            default=Value(MessageStatus.DEFERRED),
        ),
        claimed_by="",
        lease_expires_at=None,
    )


# -- the retry policy ----------------------------------------------------------------------------


def retry_delay(attempts, rng=random):
    """Exponential backoff with jitter: about a minute after the first failure, at most an hour."""
    base = RETRY_FIRST * 2 ** min(max(attempts - 1, 0), 12)
    return timedelta(seconds=min(RETRY_MAX, base * rng.uniform(0.8, 1.2)))


def too_old_to_retry(message, now):
    """Whether a message that failed for now has waited its maximum age: it fails for good."""
    return now - message.created_at >= timedelta(seconds=conf.get("MAX_MESSAGE_AGE"))


def retry_deferred(site_ids=None):
    """Make deferred mail due now (``own_smtp_send --retry-deferred``); returns how many."""
    deferred = messages().of_sites(site_ids).filter(status=MessageStatus.DEFERRED)
    return deferred.update(next_attempt_at=timezone.now())


# -- an editor's operations on the queue (the outbox) --------------------------------------------

RETRYABLE = (MessageStatus.DEFERRED, MessageStatus.FAILED)
CANCELLABLE = (MessageStatus.QUEUED, MessageStatus.DEFERRED)


def retry_now(messages_qs):
    """Make deferred and failed messages due now; returns how many."""
    count = messages_qs.filter(status__in=RETRYABLE).update(
        status=MessageStatus.DEFERRED, next_attempt_at=timezone.now()
    )
    if count:
        dispatch_after_commit()
    return count


def retry_deferred_of(site):
    """Make all deferred mail of ``site`` due now and wake the dispatcher; how many."""
    count = retry_deferred([site.pk])
    if count:
        dispatch_after_commit()
    return count


def cancel(messages_qs):
    """Cancel queued and deferred messages (one being sent right now goes on); how many."""
    return messages_qs.filter(status__in=CANCELLABLE).update(status=MessageStatus.CANCELLED)


def waiting_bulk(site):
    """The bulk mail of ``site`` that waits and can be cancelled (queued or deferred)."""
    return messages().filter(site=site, lane=Lane.BULK, status__in=CANCELLABLE)


def cancel_bulk(site):
    """Cancel the waiting bulk mail of ``site`` (a bulk message being sent goes on); how many."""
    return cancel(waiting_bulk(site))


def delete_sent(sites, older_than, now=None):
    """Delete the sent messages of ``sites`` sent longer than ``older_than`` ago; how many."""
    cutoff = (now or timezone.now()) - older_than
    deleted, _by_model = OutboundMessage.objects.filter(
        site__in=sites, status=MessageStatus.SENT, sent_at__lt=cutoff
    ).delete()
    return deleted


# -- outcomes ------------------------------------------------------------------------------------


def record_failed(message_pk, reason, now):
    """The message failed for good (a refusal, or too old to retry)."""
    OutboundMessage.objects.filter(pk=message_pk).update(
        status=MessageStatus.FAILED,
        last_attempt_at=now,
        attempts=F("attempts") + 1,
        last_error=reason,
        lease_expires_at=None,
    )


def record_deferred(message_pk, attempts, reason, now):
    """The message failed for now: it waits for its retry, which this returns the time of."""
    retry_at = now + retry_delay(attempts)
    OutboundMessage.objects.filter(pk=message_pk).update(
        status=MessageStatus.DEFERRED,
        next_attempt_at=retry_at,
        last_attempt_at=now,
        attempts=attempts,
        last_error=reason,
        lease_expires_at=None,
        claimed_by="",
    )
    return retry_at


def _outcome_sql():
    """The two statements of a sent message's outcome, built once per database connection type.

    They run for every message, so they skip the ORM's per-call query building: one UPDATE of
    the message by primary key, one INSERT of its window record.
    """
    quote = connection.ops.quote_name
    message, record = OutboundMessage._meta, SendRecord._meta

    def column(meta, name):
        return quote(meta.get_field(name).column)

    update = (
        f"UPDATE {quote(message.db_table)} SET "
        f"{column(message, 'status')} = %s, {column(message, 'sent_at')} = %s, "
        f"{column(message, 'last_attempt_at')} = %s, "
        f"{column(message, 'attempts')} = {column(message, 'attempts')} + 1, "
        f"{column(message, 'last_error')} = %s, {column(message, 'envelope_from')} = %s, "
        f"{column(message, 'lease_expires_at')} = NULL "
        f"WHERE {column(message, 'id')} = %s"
    )
    insert = (
        f"INSERT INTO {quote(record.db_table)} "
        f"({column(record, 'site')}, {column(record, 'sent_at')}, {column(record, 'recipients')}) "
        "VALUES (%s, %s, %s)"
    )
    return update, insert


_OUTCOME_SQL = {}


def record_sent(message_pk, site_id, recipients, sent_at, note="", *, envelope_from):
    """Mark a message ``sent`` and count its recipients in the site's windows: one commit.

    ``envelope_from``: the sender it really went with (the verified one), for the outbox.
    """
    sql = _OUTCOME_SQL.get(connection.vendor)
    if sql is None:
        sql = _OUTCOME_SQL[connection.vendor] = _outcome_sql()
    update, insert = sql
    when = connection.ops.adapt_datetimefield_value(sent_at)
    params = [MessageStatus.SENT.value, when, when, note, envelope_from, message_pk]
    params += [site_id, when, recipients]
    if _one_round_trip():
        # PostgreSQL, client-side binding, no transaction of the caller: the whole transaction
        # in one request to the server instead of five (each a wait for the server's turn).
        with connection.cursor() as cursor:
            try:
                cursor.execute(
                    f"BEGIN; SET LOCAL synchronous_commit TO OFF; {update}; {insert}; COMMIT",
                    params,
                )
            except BaseException:
                # A dropped connection cannot roll back: the error that dropped it says why.
                with suppress(Exception):
                    if connection.connection.info.transaction_status != 0:  # not idle
                        connection.connection.execute("ROLLBACK")
                raise
        return
    if _sqlite_outside_transaction():
        # The same transaction on the driver's connection: Django's atomic() and cursor wrappers
        # cost more than SQLite's own work here, once per message.
        raw = connection.connection
        with connection.wrap_database_errors:
            raw.execute("BEGIN")
            try:
                raw.execute(update.replace("%s", "?"), params[:6])
                raw.execute(insert.replace("%s", "?"), params[6:])
                raw.execute("COMMIT")
            except BaseException:
                with suppress(Exception):  # a closed database cannot roll back
                    raw.execute("ROLLBACK")
                raise
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL synchronous_commit TO OFF")  # see durability.py
            cursor.execute(update, params[:6])
            cursor.execute(insert, params[6:])


def _sqlite_outside_transaction():
    return (
        connection.vendor == "sqlite"
        and not connection.in_atomic_block
        and connection.connection is not None
        and connection.get_autocommit()
    )


def _one_round_trip():
    """Whether an outcome may go as one multi-statement request (psycopg 3, client-side binding,
    autocommit): server-side binding allows one statement per request only."""
    return (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and connection.connection is not None
        and hasattr(connection.connection, "info")  # psycopg 3
        and not connection.settings_dict.get("OPTIONS", {}).get("server_side_binding")
    )
