"""One site's session: open (its lease), claim, send over its one connection, record, release.

A session talks SMTP and keeps its own books; which site goes when is the dispatcher's to decide,
as Postfix's queue manager decides for its delivery agents. It knows nothing of other sites and
tells what happened through ``on_outcome``; only ``deliver`` runs on an agent thread (agents.py).

Delivery is at-least-once: a message is marked ``sent`` right after the server accepted it, so a
dispatcher that dies between the server's "250" and that write causes the one message in flight to
be sent again once its lease expires. Nothing else is ever sent twice: a site's messages are only
claimed by the holder of the site's lease, and a session checks that it still holds the lease
(renewing it) before it sends, at least every half lease.
"""

import logging
import smtplib
import time
from collections import deque
from dataclasses import replace
from datetime import timedelta

from django.db import DatabaseError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import backoff, bounces, conf, limits, servers, signals, smtp_client, transport, verification
from .agents import Delivery, Gate, TokenOnDispatcherThread, run_here
from .exceptions import LeaseLost, OutcomeNotWritten, SmtpFailure, UndecryptablePassword
from .mailqueue import (
    NormalFirst,
    claim_due,
    extend_claims,
    record_deferred,
    record_failed,
    record_sent,
    release_claims,
    too_old_to_retry,
)
from .message import SenderRewrite, envelope_sender
from .models import MessageStatus, OutboundMessage
from .replies import MESSAGE, SERVER, THROTTLE, refused_text
from .sendstate import (
    forget_old_records,
    last_send,
    release_lease,
    renew_lease,
    take_lease,
    window_records,
)

logger = logging.getLogger(__name__)

CLAIM_BATCH = 100  # messages claimed at once (fewer when the interval spaces them out)
KEEP_OPEN = 10  # seconds: a connection whose next slot is further away is closed
IDLE_CHECK = 5  # seconds idle after which a kept connection is checked with NOOP first


class SiteSession:
    """One site's turn: its lease, its claimed messages, its one connection.

    ``on_outcome(outcome, site_id, message)`` is told "sent", "deferred" and "failed" per message,
    "paused" and "backed_off" (message None) when the site stops; ``clock`` is the run's
    (``sendstate.database_clock``); ``deadline`` the monotonic moment no exchange may pass;
    ``ask(function, *args)`` runs database work of ``deliver`` on the dispatcher's thread.
    """

    def __init__(self, smtp_settings, owner, *, on_outcome, clock, deadline=None, ask=run_here):
        self.settings = smtp_settings
        self.site_id = smtp_settings.site_id
        self.owner = owner
        self.ask = ask
        self.on_outcome = on_outcome
        self.clock = clock
        self.deadline = deadline
        self.limits = limits.Limits.of(smtp_settings)
        self.lease_seconds = float(conf.get("LEASE_SECONDS"))
        self.lease_until = None
        self.schedule = None
        self.batch = deque()
        self.suppressed = set()  # addresses of the batch the site no longer mails, lower case
        self.connection = None
        self.last_used = None
        self.finished = False  # no more due messages, or stopped by a failure
        self.write_error = None  # a sent message's outcome that could not be written
        self.broken = False  # a database error: what cannot be released runs out with its lease
        self.exhausted = False  # the queue had nothing more to claim
        self.normal_first = NormalFirst(self.site_id, owner)  # normal mail before bulk

    # opening and ordering
    def open(self, now):
        """Take the site's lease and read what the session needs; False when another dispatcher
        holds the lease. A stored password no key decrypts pauses the site (``finished``)."""
        if not take_lease(self.site_id, self.owner, now, conf.get("LEASE_SECONDS")):
            return False
        self.lease_until = now + timedelta(seconds=self.lease_seconds)
        try:
            self.params = servers.verified_params(self.settings)  # decrypted once per session
            if self.params.token_source is not None:
                source = TokenOnDispatcherThread(self.params.token_source, self.ask)
                self.params = replace(self.params, token_source=source)
        except UndecryptablePassword as error:
            hint = gettext_lazy("Enter the password again and confirm the server.")
            self._pause(SmtpFailure(SERVER, str(error), hint=hint))
            return True
        self.sender = envelope_sender(self.params.from_email)
        self.rewrite = SenderRewrite(
            self.sender, self.settings.from_name, reference_header=bounces.REFERENCE_HEADER
        )
        last_sent_at = last_send(self.site_id)
        forget_old_records(self.site_id, now)
        records = window_records(self.site_id, self.limits, now)
        self.schedule = limits.Schedule(self.limits, last_sent_at, records, now)
        return True

    @property
    def last_sent_at(self):
        return self.schedule.last_sent_at if self.schedule is not None else None

    def slot(self, now):
        """``(moment, reason)`` for this site's next message (count 1 until one is claimed)."""
        count = self.batch[0].recipient_count if self.batch else 1
        return self.schedule.slot_for(count, not_before=now, bulk=NormalFirst.bulk(self.batch))

    def claim_size(self):
        interval = self.limits.min_interval.total_seconds()
        if not interval:
            return CLAIM_BATCH
        return max(1, min(CLAIM_BATCH, int(KEEP_OPEN / interval) + 1))

    def fill(self, now):
        """Claim more messages if the batch is empty; False when none are due."""
        if not self.batch:
            self._renew(now, force=True)
            self.batch.extend(
                claim_due(self.site_id, self.owner, now, self.lease_until, self.claim_size())
            )
            addresses = {address for message in self.batch for address in message.recipients}
            self.suppressed = bounces.suppressed(self.site_id, addresses) if addresses else set()
            if not self.batch:
                self.exhausted = self.finished = True
        return bool(self.batch)

    def _renewal_due(self, now):  # at least every half lease
        return now >= self.lease_until - timedelta(seconds=self.lease_seconds / 2)

    def _renew(self, now, force=False):
        if not force and not self._renewal_due(now):
            return
        until = now + timedelta(seconds=self.lease_seconds)
        if not renew_lease(self.site_id, self.owner, until, self.last_sent_at):
            raise LeaseLost
        extend_claims([m.pk for m in self.batch], self.owner, until)
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

    def can_go_now(self, now):
        """True when the next claimed message may go at once over the open connection."""
        if self.finished or not self.batch or getattr(self.connection, "sock", None) is None:
            return False
        slot, _reason = self.slot(now)
        return slot is not None and slot <= now

    def follow_on(self, now):
        """The delivery of the message after the one under way (``batch[0]``) if it may go right
        after it without asking the dispatcher (no interval, room in every window for both, no
        renewal or look for normal mail due); its data wait for that one's outcome (its gate)."""
        if self.finished or len(self.batch) < 2 or self.limits.min_interval:
            return None
        if self._renewal_due(now):
            return None
        current, following = self.batch[0], self.batch[1]
        if (bulk := NormalFirst.bulk([following])) and not self.normal_first.looked_lately():
            return None
        count = current.recipient_count + following.recipient_count
        slot, _reason = self.schedule.slot_for(count, not_before=now, bulk=bulk)
        if slot is None or slot > now:
            return None
        recipients = self._recipients(following)
        return Delivery(following, recipients, Gate()) if recipients else None

    def _recipients(self, message):  # the ones the site still mails
        return [r for r in message.recipients if r.lower() not in self.suppressed]

    def next_delivery(self, gate=None):
        """The next claimed message for ``deliver``, its lease renewed; None when it cannot go
        (every recipient suppressed: it fails here; normal mail came: claimed bulk goes back)."""
        self._renew(self.clock())
        if self.normal_first.make_way(self.batch, self.clock()):
            return None
        message = self.batch[0]
        recipients = self._recipients(message)
        if not recipients:
            self.batch.popleft()
            self._fail(message, _("Not sent: every recipient bounced before and is suppressed."))
            return None
        return Delivery(message, recipients, gate)

    def deliver(self, delivery):
        """On an agent thread: hand the message to the server (SMTP only, no database).

        Returns ``(kind, detail)`` for ``apply``: "sent" (the refused recipients), "failure" (an
        SmtpFailure), "unreachable" (no connection: an SmtpFailure), "not_written" (the previous
        outcome could not be written: the message is incomplete, dropped with the connection)
        or "error" (a bug, which must not block the queue behind this message).
        """
        message = delivery.message
        try:
            connection = self._connection()
        except SmtpFailure as failure:
            return "unreachable", failure
        try:
            raw = self.rewrite(
                bytes(message.raw_message), bounces.reference(self.site_id, message.pk)
            )
            refused = transport.send(
                connection,
                self.params,
                self.sender,
                delivery.recipients,
                raw,
                meanwhile=delivery.wait_for_previous,
            )
        except SmtpFailure as failure:
            self.last_used = time.monotonic()
            return "failure", failure
        except OutcomeNotWritten:
            self._drop_connection()
            return "not_written", None
        except Exception as error:
            logger.exception("Unexpected error while sending message %s", message.pk)
            self._drop_connection()
            return "error", error
        self.last_used = time.monotonic()
        return "sent", refused

    def apply(self, delivery, result):
        """Book what ``deliver`` returned. For a sent message, returns the write of its outcome
        (the caller may start the next message first, see ``agents.Gate``); else None.
        Raises the DatabaseError of an outcome that could not be written."""
        kind, detail = result
        message = delivery.message
        if kind == "sent":
            self.batch.popleft()
            return self._sent(message, detail)
        if kind == "unreachable":
            self._failed(detail)
        elif kind == "failure":
            self._failed(detail, message)
        elif kind == "not_written":
            self.finished = True
            if self.write_error is not None:
                raise self.write_error
        else:
            self.batch.popleft()
            reason = _("Internal error: %(error)s") % {"error": type(detail).__name__}
            self._fail(message, reason)
        return None

    def _failed(self, failure, message=None):
        """The one failure policy, by the reply's scope (see replies.py). ``message``: the
        message it is about; None when no connection could be opened."""
        if failure.kind == SERVER:
            self._pause(failure)
        elif failure.kind == THROTTLE:
            self._back_off(failure)
        elif message is None:
            # The server cannot be reached: every claimed message waits for a retry.
            for claimed in list(self.batch):
                self._defer(claimed, failure)
            self.batch.clear()
            self.finished = True
        elif failure.kind == MESSAGE:
            self.batch.popleft()
            self._fail(message, failure.text)
        else:
            self.batch.popleft()
            self._defer(message, failure)
            if failure.code in (None, 421) or getattr(self.connection, "sock", None) is None:
                self._drop_connection()  # reconnect for the next message

    # outcomes
    def _sent(self, message, refused):
        sent_at = self.clock()
        note = refused_text(refused) if refused else ""
        recipients = len(message.recipients)
        self.schedule.record(sent_at, recipients)
        return lambda: self._record_sent(message, recipients, sent_at, note)

    def _record_sent(self, message, recipients, sent_at, note):
        # The site's last_sent_at is written with the lease (renewal, release), not here.
        try:
            record_sent(
                message.pk, self.site_id, recipients, sent_at, note, envelope_from=self.sender
            )
        except DatabaseError as error:
            # Only THIS site's session ends. The message stays claimed; when its lease runs out
            # it goes again.
            logger.exception("Could not record message %s of site %s", message.pk, self.site_id)
            self.finished, self.write_error = True, error
            return
        message.status, message.sent_at, message.last_error = MessageStatus.SENT, sent_at, note
        message.envelope_from = self.sender
        message.attempts += 1
        signals.message_sent.send(sender=OutboundMessage, message=message)
        self.on_outcome("sent", self.site_id, message)

    def _fail(self, message, reason):
        record_failed(message.pk, reason, self.clock())
        message.status, message.last_error = MessageStatus.FAILED, reason
        message.attempts += 1
        signals.message_failed.send(sender=OutboundMessage, message=message, reason=reason)
        self.on_outcome("failed", self.site_id, message)

    def _defer(self, message, failure):
        now = self.clock()
        if too_old_to_retry(message, now):
            self._fail(message, failure.text)
            return
        attempts = message.attempts + 1
        retry_at = record_deferred(message.pk, attempts, failure.text, now)
        message.status, message.attempts, message.next_attempt_at = (
            MessageStatus.DEFERRED,
            attempts,
            retry_at,
        )
        message.last_error = failure.text
        self.on_outcome("deferred", self.site_id, message)

    def _pause(self, failure):
        """The server refuses us (AUTH, sender, TLS): pause the site, keep its mail queued."""
        verification.pause_sending(self.settings, failure)
        logger.warning(
            "Sending paused for site %s: %s", self.site_id, smtp_client.for_log(failure.text)
        )
        self.finished = True
        self.on_outcome("paused", self.site_id, None)

    def _back_off(self, failure):
        """The server throttles the account: QUIT, put every claimed message back as it was
        (no attempt spent), and let the site wait for its server's window."""
        self._drop_connection()
        release_claims([m.pk for m in self.batch], self.owner)
        self.batch.clear()
        until = backoff.back_off(self.site_id, failure, self.clock())
        logger.info(
            "Site %s backs off until %s: %s", self.site_id, until, smtp_client.for_log(failure.text)
        )
        self.finished = True
        self.on_outcome("backed_off", self.site_id, None)

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

    # releasing
    def abandon(self):
        """Close after a database error: what cannot be released runs out with its lease."""
        try:
            self.close()
        except DatabaseError:
            self._drop_connection()

    def detach(self):
        """Put the claimed messages back and hand over the connection (the caller says QUIT
        where a slow answer holds back no one); the lease stays until ``close``."""
        connection, self.connection = self.connection, None
        release_claims([m.pk for m in self.batch], self.owner)
        self.batch.clear()
        return connection

    def close(self):
        # Safe after a lost lease too: both releases only touch what this session still owns.
        connection = self.detach()
        if connection is not None:
            transport.close_quietly(connection)
        release_lease(self.site_id, self.owner, self.last_sent_at)
