"""Claim due messages of a site, send them over one connection within its limits, record outcomes.

How a run works: list the sites with due mail (own mode, a verified server, not paused), take the
site whose next slot is earliest, take that site's lease (one dispatcher per site at a time, across
processes and machines; different sites go in parallel), claim a few due messages under the same
lease, open ONE connection through the verified parameters, and send while the limits allow.
Each outcome is written right after the server answers. A run sleeps until the earliest next slot
while its budget lasts.

Delivery is at-least-once: a message is marked ``sent`` right after the server accepted it, so a
dispatcher that dies between the server's "250" and that write causes the one message in flight to
be sent again once its lease expires. Nothing else is ever sent twice: a site's messages are only
claimed by the holder of the site's lease, and a run checks that it still holds the lease (renewing
it) before it sends, at least every half lease.

The sender is rewritten at send time, not when the message is queued: the verified sender can
change (an editor confirms a new server) while mail waits, and the mail must leave with the
sender of the server it actually goes through.
"""

import logging
import random
import smtplib
import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.db.models import Case, Count, Exists, F, Max, Min, OuterRef, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import backoff, bounces, conf, crypto, limits, replies, signals, smtp_client, transport
from .choices import WAITING
from .exceptions import LeaseLost, OutcomeNotWritten
from .message import SenderRewrite, envelope_sender
from .models import (
    DeliveryMode,
    MessageStatus,
    OutboundMessage,
    SendRecord,
    SiteSendState,
    SmtpSettings,
    VerificationStatus,
    stored_hint,
)

logger = logging.getLogger(__name__)

CLAIM_BATCH = 100  # messages claimed at once (fewer when the interval spaces them out)
CLAIM_BYTES = 8 * 1024 * 1024  # raw bytes held in memory per claim
KEEP_OPEN = 10  # seconds: a connection whose next slot is further away is closed
IDLE_CHECK = 5  # seconds idle after which a kept connection is checked with NOOP first
REFRESH = 5  # seconds between looks for newly due sites while sending
SITES_AT_ONCE = 2  # site leases one run holds at a time: other workers serve the other sites
RETRY_FIRST = 60
RETRY_MAX = 3600
CLOCK_TOLERANCE = timedelta(milliseconds=50)  # clock skew below this is measurement noise


# -- shared state: the rolling windows and the site lease ----------------------------------


def record_delivery(site_id, recipients, sent_at):
    """Count recipients handed to a site's server toward its interval and rolling windows.

    Every message through the server counts, confirmation messages included (providers count them).
    """
    SendRecord.objects.create(site_id=site_id, recipients=recipients, sent_at=sent_at)
    later = Q(last_sent_at__isnull=True) | Q(last_sent_at__lt=sent_at)
    if not SiteSendState.objects.filter(later, site_id=site_id).update(last_sent_at=sent_at):
        SiteSendState.objects.get_or_create(site_id=site_id, defaults={"last_sent_at": sent_at})


def window_records(site_id, site_limits, now):
    """The ``(sent_at, recipients)`` records the site's caps look at, oldest first."""
    window = site_limits.longest_window
    if window is None:
        return []
    return list(
        SendRecord.objects.filter(site_id=site_id, sent_at__gt=now - window)
        .order_by("sent_at")
        .values_list("sent_at", "recipients")
    )


def database_clock():
    """``now()`` as the database server's clock tells it, measured once per run.

    The interval, the caps and the leases are times one worker writes and another compares with
    its own clock. Were each to use its machine's clock, a worker whose clock runs behind would
    take a lease still held or send before the interval ended, one running ahead would miss
    records of the rolling windows. Aligned to the one database clock, they all agree.
    """
    if connection.vendor == "postgresql":
        sql = "SELECT clock_timestamp()"
    elif connection.vendor == "sqlite":
        sql = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"  # the library's clock, in ms
    else:
        return timezone.now
    before = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(sql)
        (database_now,) = cursor.fetchone()
    after = timezone.now()
    if isinstance(database_now, str):
        database_now = datetime.fromisoformat(database_now)
    if database_now.tzinfo is None:
        database_now = database_now.replace(tzinfo=UTC)
    offset = database_now - (before + (after - before) / 2)
    if abs(offset) < CLOCK_TOLERANCE:
        # Only the measurement's own error (the database rounds to the millisecond): a clock
        # set a hair behind would leave mail queued "now" by this process undue until the next run.
        return timezone.now
    return lambda: timezone.now() + offset


@contextmanager
def outcomes_without_flush():
    """A run's commits return without waiting for the disk, where the database allows it safely.

    Each outcome is committed on its own, right after the server accepted the message (see the
    module's docstring): waiting for the disk at every commit would cost more than talking SMTP.
    Not waiting changes nothing when a WORKER dies: the committed outcome is with the database
    server (PostgreSQL) or in the operating system's cache (SQLite), and survives. Only when the
    database server or the machine itself goes down can the outcomes of the last moment (well
    under a second) be lost; those messages then go again, like the one in flight.

    PostgreSQL: ``SET LOCAL synchronous_commit TO OFF`` in each outcome's transaction (see
    ``record_sent``), nothing to do here. SQLite: only a database in WAL mode is safe without a
    flush at each commit; for the run (when not inside a transaction of the caller) its
    connection uses ``PRAGMA synchronous=NORMAL``, and the host's setting is restored afterwards.
    A database in the default rollback-journal mode is left alone: it waits for the disk.
    """
    previous = None
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            (journal,) = cursor.fetchone()
            cursor.execute("PRAGMA synchronous")
            (level,) = cursor.fetchone()
            if journal.lower() == "wal" and level > 1:
                cursor.execute("PRAGMA synchronous=NORMAL")
                previous = level
    try:
        yield
    finally:
        if previous is not None and connection.connection is not None:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(f"PRAGMA synchronous={int(previous)}")
            except DatabaseError:
                pass  # a broken connection: its next one starts with the host's setting


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
                if connection.connection.info.transaction_status != 0:  # not idle: roll back
                    connection.connection.execute("ROLLBACK")
                raise
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL synchronous_commit TO OFF")  # see outcomes_without_flush
            cursor.execute(update, params[:6])
            cursor.execute(insert, params[6:])


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


def take_lease(site_id, owner, now, seconds):
    """Take the site's lease if it is free or expired; True when taken.

    A compare-and-swap on the row as read, so exactly one of several racing dispatchers wins, on
    SQLite and PostgreSQL alike. When the previous holder died (its lease ran out, never
    released), it may have sent right up to the expiry: the interval then counts from there.
    """
    state, _created = SiteSendState.objects.get_or_create(site_id=site_id)
    if state.lease_expires_at is not None and state.lease_expires_at >= now:
        return False
    last_sent_at = state.last_sent_at
    if state.lease_owner and state.lease_expires_at is not None:
        last_sent_at = max(filter(None, [last_sent_at, state.lease_expires_at]))
    return bool(
        SiteSendState.objects.filter(
            Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now),
            site_id=site_id,
            lease_owner=state.lease_owner,
            lease_expires_at=state.lease_expires_at,
            last_sent_at=state.last_sent_at,
        ).update(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=seconds),
            last_sent_at=last_sent_at,
        )
    )


def _later_sent(last_sent_at):
    """``last_sent_at`` moved forward to the given moment, never back (None: unchanged).

    The holder of a lease writes its send times only when it renews or releases the lease:
    while it holds the lease no other dispatcher sends for the site, and should it die, the
    next holder counts the interval from the lease's expiry (see ``take_lease``).
    """
    if last_sent_at is None:
        return {}
    later = Q(last_sent_at__isnull=True) | Q(last_sent_at__lt=last_sent_at)
    return {"last_sent_at": Case(When(later, then=Value(last_sent_at)), default=F("last_sent_at"))}


def renew_lease(site_id, owner, until, last_sent_at=None):
    """Extend a lease this owner still holds; False when another dispatcher took it over."""
    return bool(
        SiteSendState.objects.filter(site_id=site_id, lease_owner=owner).update(
            lease_expires_at=until, **_later_sent(last_sent_at)
        )
    )


def release_lease(site_id, owner, last_sent_at=None):
    SiteSendState.objects.filter(site_id=site_id, lease_owner=owner).update(
        lease_owner="", lease_expires_at=None, **_later_sent(last_sent_at)
    )


def _due(now):
    """Messages a dispatcher may claim: due ones, and ones whose worker's lease ran out."""
    queued, deferred, abandoned = _due_parts(now)
    return queued | deferred | abandoned


def _due_parts(now):
    """``_due`` in parts that each follow one index (site, status, next_attempt_at) in order.

    A single query with the OR of these makes the database read every row of a site, sent ones
    included, and sort the due ones: a cost that grows with the table, for every claim.
    """
    abandoned = Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    return (
        Q(status=MessageStatus.QUEUED, next_attempt_at__lte=now),
        Q(status=MessageStatus.DEFERRED, next_attempt_at__lte=now),
        Q(status=MessageStatus.SENDING) & abandoned,
    )


def claim_due(site_id, owner, now, lease_until, limit):
    """Mark up to ``limit`` due messages of the site ``sending`` under the lease; return them."""
    candidates = sorted(
        row
        for part in _due_parts(now)
        for row in OutboundMessage.objects.filter(part, site_id=site_id)
        .order_by("next_attempt_at", "pk")
        .values_list("next_attempt_at", "pk", "size")[:limit]
    )[:limit]
    pks, held = [], 0
    for _due_at, pk, size in candidates:
        if pks and held + size > CLAIM_BYTES:
            break
        pks.append(pk)
        held += size
    if not pks:
        return []
    OutboundMessage.objects.filter(_due(now), pk__in=pks).update(
        status=MessageStatus.SENDING, claimed_by=owner, lease_expires_at=lease_until
    )
    claimed = OutboundMessage.objects.filter(pk__in=pks).order_by("next_attempt_at", "pk")
    # by primary key only: a condition on the status could lead the database to that index
    return [m for m in claimed if m.claimed_by == owner and m.status == MessageStatus.SENDING]


def release_claims(pks, owner):
    """Put claimed, unsent messages back: queued, or deferred if they had failed before."""
    OutboundMessage.objects.filter(
        pk__in=list(pks), claimed_by=owner, status=MessageStatus.SENDING
    ).update(
        status=Case(
            When(attempts=0, then=Value(MessageStatus.QUEUED)),
            default=Value(MessageStatus.DEFERRED),
        ),
        claimed_by="",
        lease_expires_at=None,
    )


def retry_deferred(site_ids=None):
    """Make deferred mail due now (``own_smtp_send --retry-deferred``); returns how many."""
    deferred = OutboundMessage.objects.filter(status=MessageStatus.DEFERRED)
    if site_ids is not None:
        deferred = deferred.filter(site_id__in=site_ids)
    return deferred.update(next_attempt_at=timezone.now())


def retry_delay(attempts, rng=random):
    """Exponential backoff with jitter: about a minute after the first failure, at most an hour."""
    base = RETRY_FIRST * 2 ** min(max(attempts - 1, 0), 12)
    return timedelta(seconds=min(RETRY_MAX, base * rng.uniform(0.8, 1.2)))


# -- a run ------------------------------------------------------------------------------------


@dataclass
class DispatchReport:
    """What one run did, and what the mail it left behind waits for."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    paused_sites: list = field(default_factory=list)
    backed_off_sites: list = field(default_factory=list)  # throttled by their server
    # The earliest moment due mail that this run left could go, and why it waits:
    # "interval", "cap", or "lease" (another dispatcher holds the site).
    next_slot: object = None
    waiting_for: str | None = None

    def as_dict(self):
        return {
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "paused_sites": list(self.paused_sites),
        }


class _Outcome:
    """The outcome a dispatch call has not written yet: at most one, whichever site it is of.

    A sent message's outcome may wait for the next message the call sends, of the same site or
    another: it is written after that message's ``MAIL FROM`` went to the server and before the
    reply is read, so the database and the server work at the same time. The next message's
    data follow only after that write, so at any moment at most one message is accepted by a
    server and not yet marked ``sent``: the one in flight, as before. Every other step that
    touches the database or sleeps writes it first (``settle``).
    """

    def __init__(self):
        self.write = None

    def settle(self):
        write, self.write = self.write, None
        if write is not None:
            write()


class _SiteRun:
    """One site's turn: its lease, its claimed messages, its one connection."""

    def __init__(
        self, smtp_settings, owner, now, report, progress, clock=None, outcome=None, deadline=None
    ):
        self.settings = smtp_settings
        self.deadline = deadline  # monotonic moment no exchange with the server may pass
        self.clock = clock or timezone.now
        self.site_id = smtp_settings.site_id
        self.owner = owner
        self.report = report
        self.progress = progress
        self.params = smtp_settings.verified_params()  # decrypted once per turn
        self.sender = envelope_sender(self.params.from_email)
        self.display_name = smtp_settings.from_name
        self.rewrite = SenderRewrite(self.sender, self.display_name, bounces.REFERENCE_HEADER)
        self.limits = limits.Limits.of(smtp_settings)
        self.lease_seconds = float(conf.get("LEASE_SECONDS"))
        self.lease_until = now + timedelta(seconds=self.lease_seconds)
        state = SiteSendState.objects.get(site_id=self.site_id)
        # Records older than the longest window are no longer needed by anyone.
        SendRecord.objects.filter(site_id=self.site_id, sent_at__lt=now - 2 * limits.DAY).delete()
        self.schedule = limits.Schedule(
            self.limits,
            state.last_sent_at,
            window_records(self.site_id, self.limits, now),
            now,
        )
        self.batch = deque()
        self.suppressed = set()  # addresses of the batch the site no longer mails, lower case
        self.outcome = outcome or _Outcome()  # shared by the call's runs
        self.connection = None
        self.last_used = None
        self.finished = False  # no more due messages, or stopped by a failure
        self.write_error = None  # a sent message's outcome that could not be written
        self.exhausted = False  # the queue had nothing more to claim

    # ordering
    def slot(self, now):
        """``(moment, reason)`` for this site's next message (count 1 until one is claimed)."""
        count = self.batch[0].recipient_count if self.batch else 1
        return self.schedule.slot_for(count, not_before=now)

    def claim_size(self):
        interval = self.limits.min_interval.total_seconds()
        if not interval:
            return CLAIM_BATCH
        return max(1, min(CLAIM_BATCH, int(KEEP_OPEN / interval) + 1))

    def fill(self, now):
        """Claim more messages if the batch is empty; False when none are due."""
        if not self.batch:
            self.settle()
            self._renew(now, force=True)
            self.batch.extend(
                claim_due(self.site_id, self.owner, now, self.lease_until, self.claim_size())
            )
            addresses = {address for message in self.batch for address in message.recipients}
            self.suppressed = bounces.suppressed(self.site_id, addresses) if addresses else set()
            if not self.batch:
                self.exhausted = self.finished = True
        return bool(self.batch)

    def _renew(self, now, force=False):
        if not force and now < self.lease_until - timedelta(seconds=self.lease_seconds / 2):
            return
        self.settle()
        until = now + timedelta(seconds=self.lease_seconds)
        if not renew_lease(self.site_id, self.owner, until, self.schedule.last_sent_at):
            raise LeaseLost
        OutboundMessage.objects.filter(
            pk__in=[m.pk for m in self.batch], claimed_by=self.owner, status=MessageStatus.SENDING
        ).update(lease_expires_at=until)
        self.lease_until = until

    # sending
    def _connection(self):
        if self.connection is not None and time.monotonic() - self.last_used > IDLE_CHECK:
            try:
                if self.connection.noop()[0] != 250:
                    raise smtplib.SMTPServerDisconnected
            except (smtplib.SMTPException, OSError):
                self._drop_connection()
        if self.connection is None:
            self.connection = transport.open_connection(self.params, deadline=self.deadline)
            self.last_used = time.monotonic()
        return self.connection

    def _drop_connection(self):
        if self.connection is not None:
            transport.close_quietly(self.connection)
            self.connection = None

    def send_one(self):
        """Send the next claimed message and record its outcome."""
        if self.finished:
            return  # a failed write ended the turn (see ``_sent``)
        try:
            self._send_one()
        except OutcomeNotWritten as error:
            # The message under way is not complete: the server drops it with the connection.
            self._drop_connection()
            raise error.__cause__ from None

    def _send_one(self):
        now = self.clock()
        self._renew(now)
        message = self.batch[0]
        try:
            connection = self._connection()
        except transport.SmtpFailure as failure:
            if failure.kind == replies.SERVER:
                self._pause(failure)
            elif failure.kind == replies.THROTTLE:
                self._back_off(failure)
            else:
                # The server cannot be reached: every claimed message waits for a retry.
                for claimed in list(self.batch):
                    self._defer(claimed, failure)
                self.batch.clear()
                self.finished = True
            return
        recipients = [r for r in message.recipients if r.lower() not in self.suppressed]
        if not recipients:
            self.batch.popleft()
            self._fail(message, _("Not sent: every recipient bounced before and is suppressed."))
            return
        try:
            raw = self.rewrite(
                bytes(message.raw_message), bounces.reference(self.site_id, message.pk)
            )
            refused = transport.send(
                connection,
                self.params,
                self.sender,
                recipients,
                raw,
                meanwhile=self._settle_before_reply,
            )
        except transport.SmtpFailure as failure:
            self.last_used = time.monotonic()
            if failure.kind == replies.SERVER:
                self._pause(failure)
                return
            if failure.kind == replies.THROTTLE:
                self._back_off(failure)
                return
            self.batch.popleft()
            if failure.kind == replies.MESSAGE:
                self._fail(message, failure.text)
            else:
                self._defer(message, failure)
                if failure.code in (None, 421) or getattr(connection, "sock", None) is None:
                    self._drop_connection()  # reconnect for the next message
            return
        except OutcomeNotWritten:
            raise
        except Exception as error:  # a bug must not block the queue behind this message
            logger.exception("Unexpected error while sending message %s", message.pk)
            self.batch.popleft()
            self._drop_connection()
            self._fail(message, _("Internal error: %(error)s") % {"error": type(error).__name__})
            return
        self.last_used = time.monotonic()
        self.batch.popleft()
        self._sent(message, refused)

    # outcomes
    def _sent(self, message, refused):
        sent_at = self.clock()
        note = ""
        if refused:
            note = replies.refused_text(refused)
        recipients = len(message.recipients)
        self.schedule.record(sent_at, recipients)

        def write():
            # The site's last_sent_at is written with the lease (renewal, release), not here.
            try:
                record_sent(
                    message.pk, self.site_id, recipients, sent_at, note, envelope_from=self.sender
                )
            except DatabaseError as error:
                # Written during whichever site's message goes next: only THIS site's turn
                # ends. The message stays claimed; when its lease runs out it goes again.
                logger.exception("Could not record message %s of site %s", message.pk, self.site_id)
                self.finished, self.write_error = True, error
                return
            message.status, message.sent_at, message.last_error = MessageStatus.SENT, sent_at, note
            message.envelope_from = self.sender
            message.attempts += 1
            self.report.sent += 1
            signals.message_sent.send(sender=OutboundMessage, message=message)
            self._progress("sent", message)

        self.outcome.settle()  # none is left at this point; never two
        slot, _reason = self.slot(sent_at)
        if self.connection is not None and self.batch and slot is not None and slot <= sent_at:
            # The next message may go at once: this outcome is written while a server answers
            # the MAIL FROM of the next message the call sends (see ``_Outcome``).
            self.outcome.write = write
        else:
            write()

    def settle(self):
        """Write the outcome not written yet (see ``_Outcome``)."""
        self.outcome.settle()

    def _settle_before_reply(self):
        if self.outcome.write is not None:
            try:
                self.outcome.settle()
            except Exception as error:
                raise OutcomeNotWritten from error
            if self.write_error is not None:  # this site's own write failed: stop here
                raise OutcomeNotWritten from self.write_error

    def _fail(self, message, reason):
        self.settle()
        now = self.clock()
        OutboundMessage.objects.filter(pk=message.pk).update(
            status=MessageStatus.FAILED,
            last_attempt_at=now,
            attempts=F("attempts") + 1,
            last_error=reason,
            lease_expires_at=None,
        )
        message.status, message.last_error = MessageStatus.FAILED, reason
        message.attempts += 1
        self.report.failed += 1
        signals.message_failed.send(sender=OutboundMessage, message=message, reason=reason)
        self._progress("failed", message)

    def _defer(self, message, failure):
        self.settle()
        now = self.clock()
        attempts = message.attempts + 1
        if now - message.created_at >= timedelta(seconds=conf.get("MAX_MESSAGE_AGE")):
            self._fail(message, failure.text)
            return
        retry_at = now + retry_delay(attempts)
        OutboundMessage.objects.filter(pk=message.pk).update(
            status=MessageStatus.DEFERRED,
            next_attempt_at=retry_at,
            last_attempt_at=now,
            attempts=attempts,
            last_error=failure.text,
            lease_expires_at=None,
            claimed_by="",
        )
        message.status, message.attempts, message.next_attempt_at = (
            MessageStatus.DEFERRED,
            attempts,
            retry_at,
        )
        message.last_error = failure.text
        self.report.deferred += 1
        self._progress("deferred", message)

    def _pause(self, failure):
        """The server refuses us (AUTH, sender, TLS): pause the site, keep its mail queued."""
        self.settle()
        pause_site(self.settings, failure, self.report)
        self.finished = True
        self._progress("paused", None)

    def _back_off(self, failure):
        """The server throttles the account: QUIT, put every claimed message back as it was
        (no attempt spent), and let the site wait for its server's window."""
        self.settle()
        self._drop_connection()
        release_claims([m.pk for m in self.batch], self.owner)
        self.batch.clear()
        until = backoff.back_off(self.site_id, failure, self.clock())
        self.report.backed_off_sites.append(self.site_id)
        logger.info(
            "Site %s backs off until %s: %s", self.site_id, until, smtp_client.for_log(failure.text)
        )
        self.finished = True
        self._progress("backed_off", None)

    def fail_oversized(self):
        """Fail the next message if it has more recipients than a (non-zero) cap allows."""
        if not all(cap for _window, cap in self.limits.windows()):
            return False
        message = self.batch.popleft()
        reason = _(
            "This message has %(count)s recipients, more than the site's hourly or daily "
            "limit allows; it cannot be sent within the limits."
        ) % {"count": message.recipient_count}
        self._fail(message, reason)
        return True

    def _progress(self, outcome, message):
        if self.progress is not None:
            self.progress(outcome, self.site_id, message)

    def abandon(self):
        """Close after a database error: what cannot be released runs out with its lease."""
        try:
            self.close()
        except DatabaseError:
            self._drop_connection()

    def close(self):
        # Safe after a lost lease too: both releases only touch what this run still owns.
        self.settle()
        self._drop_connection()
        release_claims([m.pk for m in self.batch], self.owner)
        release_lease(self.site_id, self.owner, self.schedule.last_sent_at)
        self.batch.clear()


def pause_site(smtp_settings, failure, report):
    """Stop sending for a site until an editor fixes and re-verifies its server."""
    SmtpSettings.objects.filter(pk=smtp_settings.pk).update(
        sending_paused=True,
        verification_status=VerificationStatus.FAILED,
        last_error=failure.text,
        last_error_hint=stored_hint(failure.hint),
    )
    report.paused_sites.append(smtp_settings.site_id)
    logger.warning(
        "Sending paused for site %s: %s", smtp_settings.site_id, smtp_client.for_log(failure.text)
    )


def sendable_settings():
    """Settings of the sites the dispatcher sends for: own mode, verified, not paused."""
    return SmtpSettings.objects.filter(
        delivery_mode=DeliveryMode.OWN, sending_paused=False, verified_at__isnull=False
    ).exclude(verified_host="")


def _due_sites(now, exclude):
    """Sendable settings of sites with due mail whose lease is free, with their estimated slot.

    One probe per sendable site along the (site, status, next_attempt_at) index: its cost
    follows the number of sites, not the number of queued messages.
    """
    due = Q()
    for part in _due_parts(now):
        due |= Exists(OutboundMessage.objects.filter(part, site_id=OuterRef("site_id")))
    waiting = backoff.backed_off(now).values("site_id")  # their server's window is not yet open
    sendable = list(
        sendable_settings().exclude(site_id__in=exclude).exclude(site_id__in=waiting).filter(due)
    )
    if not sendable:
        return [], None
    site_ids = [smtp_settings.site_id for smtp_settings in sendable]
    states = {s.site_id: s for s in SiteSendState.objects.filter(site_id__in=site_ids)}
    found, leased_until = [], None
    for smtp_settings in sendable:
        state = states.get(smtp_settings.site_id)
        if state and state.lease_expires_at and state.lease_expires_at >= now:
            leased_until = min(filter(None, [leased_until, state.lease_expires_at]))
            continue
        interval = limits.Limits.of(smtp_settings).min_interval
        slot = limits.next_slot(state.last_sent_at if state else None, interval)
        found.append((max(slot or now, now), smtp_settings))
    return found, leased_until


_LONG_AGO = datetime.min.replace(tzinfo=UTC)


def _turn_order(candidate):
    moment, _reason, item = candidate
    last_sent_at = item.schedule.last_sent_at if isinstance(item, _SiteRun) else None
    return (moment, last_sent_at or _LONG_AGO, item.site_id)


def dispatch(budget_seconds=None, *, until_empty=False, progress=None):
    """Send due mail of all sites within their limits; returns a DispatchReport.

    With a budget (the default: ``DISPATCH_BUDGET``), the run sends and sleeps until the earliest
    next slot while the budget lasts, and starts no message after it: it ends at the latest one
    connection and one message after the budget, within one ``TIMEOUT``: every exchange with a
    server has that deadline.

    ``until_empty=True`` has no budget: it waits out the minimum interval while mail is due and
    returns once what is left waits for a cap window, a retry time, another dispatcher or a paused
    site. ``progress(outcome, site_id, message)`` is called per outcome.
    """
    with outcomes_without_flush():
        return _dispatch(budget_seconds, until_empty, progress)


def _dispatch(budget_seconds, until_empty, progress):
    owner = uuid.uuid4().hex
    clock = database_clock()
    started = time.monotonic()
    if budget_seconds is None:
        budget_seconds = conf.get("DISPATCH_BUDGET")
    deadline = None if until_empty else started + float(budget_seconds)
    # A conversation under way when the budget ends gets one TIMEOUT more, not one per step.
    server_deadline = None if deadline is None else deadline + conf.get("TIMEOUT")
    report = DispatchReport()
    runs = {}  # site_id -> _SiteRun holding the lease
    blocked = {}  # site_id -> (slot, reason) a closed run left for this call
    done = set()  # sites not to touch again in this call (paused, lease taken, unreachable)
    fresh, leased_until, refreshed = [], None, None
    outcome = _Outcome()  # the one outcome not written yet, whichever site's

    def left():
        return float("inf") if deadline is None else deadline - time.monotonic()

    try:
        while True:
            now = clock()
            if refreshed is None or time.monotonic() - refreshed > REFRESH or not runs:
                fresh, leased_until = _due_sites(now, done | set(runs))
                refreshed = time.monotonic()
            candidates = [(*run.slot(now), run) for run in runs.values()]
            # A run holds few sites at a time, so that other workers find the rest unleased.
            for slot, smtp_settings in fresh if len(runs) < SITES_AT_ONCE else ():
                if smtp_settings.site_id in runs or smtp_settings.site_id in done:
                    continue
                known, reason = blocked.get(smtp_settings.site_id, (None, None))
                if known is not None and known > slot:
                    candidates.append((known, reason, smtp_settings))
                else:
                    candidates.append((slot, "interval" if slot > now else None, smtp_settings))
            # A message over a cap can never go: fail it now rather than wait forever. A cap of
            # 0 stops the site instead: its mail waits, and this call leaves the site alone.
            never = [item for moment, _reason, item in candidates if moment is None]
            for run in never:
                if not (run.batch and run.fail_oversized()):
                    run.close()
                    del runs[run.site_id]
                    done.add(run.site_id)
            if never:
                continue
            if not candidates:
                if leased_until is not None:
                    report.next_slot, report.waiting_for = leased_until, "lease"
                break
            # Among sites ready at the same moment, the one that sent least recently goes first.
            moment, reason, item = min(candidates, key=_turn_order)
            if moment > now or not (isinstance(item, _SiteRun) and item.batch):
                outcome.settle()  # only a message sent right away carries the last outcome

            if moment > now:
                wait = (moment - now).total_seconds()
                for run in list(runs.values()):
                    run_slot, run_reason = run.slot(now)
                    if (run_slot - now).total_seconds() > KEEP_OPEN:
                        blocked[run.site_id] = (run_slot, run_reason)
                        run.close()
                        del runs[run.site_id]
                if (until_empty and reason != "interval") or wait > left():
                    report.next_slot, report.waiting_for = moment, reason
                    break
                time.sleep(min(wait, 1.0, max(left(), 0)))
                if wait > 1.0:
                    refreshed = None
                continue
            if left() <= 0:
                report.next_slot, report.waiting_for = moment, "budget"
                break

            if not isinstance(item, _SiteRun):
                if not take_lease(item.site_id, owner, now, conf.get("LEASE_SECONDS")):
                    done.add(item.site_id)
                    continue
                try:
                    runs[item.site_id] = _SiteRun(
                        item, owner, now, report, progress, clock, outcome, server_deadline
                    )
                except crypto.UndecryptablePassword as error:
                    hint = gettext_lazy("Enter the password again and confirm the server.")
                    pause_site(
                        item, transport.SmtpFailure(replies.SERVER, str(error), hint=hint), report
                    )
                    release_lease(item.site_id, owner)
                    done.add(item.site_id)
                continue

            run = item
            try:
                if run.fill(now):
                    run_slot, _run_reason = run.slot(now)
                    if run_slot is not None and run_slot <= now:
                        run.send_one()
            except LeaseLost:
                logger.warning("Lost the lease of site %s to another dispatcher", run.site_id)
                run.close()
                del runs[run.site_id]
                done.add(run.site_id)
                continue
            except DatabaseError:
                # One site's write failure ends that site's turn, never another site's.
                logger.exception("Could not record an outcome of site %s", run.site_id)
                del runs[run.site_id]
                done.add(run.site_id)
                run.abandon()
                continue
            if run.finished:
                run.close()
                del runs[run.site_id]
                if not run.exhausted:
                    done.add(run.site_id)
                refreshed = None
    finally:
        try:
            outcome.settle()
        finally:
            for run in runs.values():
                run.close()
    return report


# -- what the status command and the admin show -----------------------------------------------


@dataclass
class Outlook:
    """A site's queue at a glance."""

    counts: dict
    next_slot: object  # datetime, or None when nothing waits
    drained_at: object  # datetime, or None when nothing waits or a message can never fit
    never_fits: bool = False


def queue_counts(site_ids=None):
    """``{site_id: {status: count}}`` in one aggregate query (every status present, 0 or more)."""
    rows = OutboundMessage.objects.all()
    if site_ids is not None:
        rows = rows.filter(site_id__in=list(site_ids))
    counts, statuses = {}, MessageStatus.values
    for row in rows.values("site_id", "status").annotate(n=Count("pk")).order_by():
        site_counts = counts.get(row["site_id"])
        if site_counts is None:
            site_counts = counts[row["site_id"]] = dict.fromkeys(statuses, 0)
        site_counts[row["status"]] = row["n"]
    return counts


_UNREAD = object()


def waiting_mail(site_ids=None):
    """``{site_id: [(recipient_count, next_attempt_at), ...]}`` of waiting mail in sending order."""
    rows = OutboundMessage.objects.filter(status__in=WAITING)
    if site_ids is not None:
        rows = rows.filter(site_id__in=list(site_ids))
    waiting = {}
    for site_id, count, due in rows.order_by("site_id", "next_attempt_at", "pk").values_list(
        "site_id", "recipient_count", "next_attempt_at"
    ):
        waiting.setdefault(site_id, []).append((count, due))
    return waiting


def waiting_times(site_ids=None):
    """``{site_id: (first, latest)}``: the earliest and latest ``next_attempt_at`` of waiting mail.

    All a site without caps needs for its forecast, in one aggregate query over the index
    (site, status, next_attempt_at), instead of every waiting row.
    """
    rows = OutboundMessage.objects.filter(status__in=WAITING)
    if site_ids is not None:
        rows = rows.filter(site_id__in=list(site_ids))
    return {
        row["site_id"]: (row["first"], row["latest"])
        for row in rows.values("site_id")
        .annotate(first=Min("next_attempt_at"), latest=Max("next_attempt_at"))
        .order_by()
    }


def site_outlook(
    smtp_settings,
    now=None,
    counts=None,
    last_sent_at=_UNREAD,
    waiting=None,
    times=_UNREAD,
    backoff_until=_UNREAD,
):
    """Queue counts, next send slot and estimated drain time of a site (a few queries).

    ``counts`` (the site's entry of ``queue_counts``), ``last_sent_at`` and ``backoff_until`` (its
    ``SiteSendState``),
    ``times`` (its entry of ``waiting_times``) and, for a site with caps, ``waiting`` (its entry
    of ``waiting_mail``) when the caller read them for many sites at once: only a site with caps
    then costs a query (its window records). A site without caps never reads its waiting rows:
    their number and due times tell when the last goes.
    """
    now = now or timezone.now()
    site_id = smtp_settings.site_id
    if counts is None:
        counts = queue_counts([site_id]).get(site_id)
    counts = counts or dict.fromkeys(MessageStatus.values, 0)
    waiting_count = sum(counts[status] for status in WAITING)
    if not waiting_count:
        return Outlook(counts, None, None)
    site_limits = limits.Limits.of(smtp_settings)
    if site_limits.windows():
        if waiting is None:
            waiting = waiting_mail([site_id]).get(site_id, [])
        if not waiting:
            return Outlook(counts, None, None)
        recipients = [count for count, _due in waiting]
        first_due = waiting[0][1]
        latest_retry = max(due for _count, due in waiting)
    else:
        if times is _UNREAD:
            times = waiting_times([site_id]).get(site_id)
        if not times:
            return Outlook(counts, None, None)
        first_due, latest_retry = times
        recipients = [1] * waiting_count  # without caps, only their number matters
    if last_sent_at is _UNREAD or backoff_until is _UNREAD:
        state = SiteSendState.objects.filter(site_id=site_id).first()
        if last_sent_at is _UNREAD:
            last_sent_at = state.last_sent_at if state else None
        if backoff_until is _UNREAD:
            backoff_until = state.backoff_until if state else None
    start = max(now, backoff_until or now)  # nothing goes while the server's window is closed
    records = window_records(site_id, site_limits, now)
    schedule = limits.Schedule(site_limits, last_sent_at, records, now)
    next_slot, _reason = schedule.slot_for(recipients[0], not_before=max(first_due, start))
    drained_at = limits.drain_eta(recipients, start, last_sent_at, records, site_limits)
    if drained_at is not None:
        drained_at = max(drained_at, latest_retry)
    return Outlook(counts, next_slot, drained_at, never_fits=drained_at is None)
