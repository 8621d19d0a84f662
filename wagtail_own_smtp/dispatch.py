"""The dispatcher: which site's session goes next, when to wait, when to stop.

How a run works: list the sites with due mail (own mode, a verified server, not paused, not
backed off by their server), take the site whose next slot is earliest (among equals, the one
that sent least recently), open its session (its lease, one connection: session.py), let it send
while its limits allow, and sleep until the earliest next slot while the budget lasts. A run
holds few sessions at a time, so other workers find the other sites unleased.

This module only decides, as Postfix's queue manager does for its delivery agents; a session
talks SMTP and keeps its own books, and knows nothing of the other sessions. A run's state lives
on a ``Dispatcher`` (as django-q2's ``Sentinel`` keeps its loop's), one step a method.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import DatabaseError
from django.db.models import Exists, OuterRef, Q

from . import backoff, conf, limits
from .exceptions import LeaseLost
from .mailqueue import messages, outcomes_without_flush
from .models import DeliveryMode, SmtpSettings
from .sendstate import database_clock, lease_states
from .session import KEEP_OPEN, OutcomePipeline, SiteSession

logger = logging.getLogger(__name__)

REFRESH = 5  # seconds between looks for newly due sites while sending
SITES_AT_ONCE = 2  # site leases one run holds at a time: other workers serve the other sites


@dataclass
class DispatchReport:
    """What one run did, and what the mail it left behind waits for."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    paused_sites: list = field(default_factory=list)
    backed_off_sites: list = field(default_factory=list)  # throttled by their server
    # The earliest moment due mail that this run left could go, and why it waits:
    # "interval", "cap", "lease" (another dispatcher holds the site) or "budget".
    next_slot: object = None
    waiting_for: str | None = None

    def count(self, outcome, site_id):
        """Count a session's outcome ("sent", "deferred", "failed", "paused", "backed_off")."""
        if outcome == "paused":
            self.paused_sites.append(site_id)
        elif outcome == "backed_off":
            self.backed_off_sites.append(site_id)
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self):
        return {
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "paused_sites": list(self.paused_sites),
        }


# -- due sites -------------------------------------------------------------------------------------


def sendable_settings():
    """Settings of the sites the dispatcher sends for: own mode, verified, not paused."""
    return SmtpSettings.objects.filter(
        delivery_mode=DeliveryMode.OWN, sending_paused=False, verified_at__isnull=False
    ).exclude(verified_host="")


def sites_with_due_mail(now, exclude=()):
    """Sendable settings of sites with due mail, but those in ``exclude`` and those whose server
    asked them to wait.

    One probe per sendable site along the (site, status, next_attempt_at) index: its cost
    follows the number of sites, not the number of queued messages.
    """
    due = Q()
    for part in messages().due_parts(now):
        due |= Exists(part.filter(site_id=OuterRef("site_id")))
    waiting = backoff.backed_off(now).values("site_id")  # their server's window is not yet open
    return sendable_settings().exclude(site_id__in=exclude).exclude(site_id__in=waiting).filter(due)


def due_sites(now, exclude):
    """``([(slot, settings), ...], leased_until)``: the sites with due mail whose lease is free,
    with their estimated slot, and when the earliest lease of the others runs out."""
    sendable = list(sites_with_due_mail(now, exclude))
    if not sendable:
        return [], None
    states = lease_states([smtp_settings.site_id for smtp_settings in sendable])
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
    """Earliest slot first; among sites ready at the same moment, the one that sent least
    recently (a site without a session yet counts as long ago)."""
    moment, _reason, item = candidate
    last_sent_at = item.last_sent_at if isinstance(item, SiteSession) else None
    return (moment, last_sent_at or _LONG_AGO, item.site_id)


# -- a run -----------------------------------------------------------------------------------------


class Dispatcher:
    """One dispatch call: its sessions, the sites it is done with, and its budget."""

    def __init__(self, budget_seconds=None, *, until_empty=False, progress=None):
        self.owner = uuid.uuid4().hex
        self.clock = database_clock()
        self.until_empty = until_empty
        self.progress = progress
        if budget_seconds is None:
            budget_seconds = conf.get("DISPATCH_BUDGET")
        self.deadline = None if until_empty else time.monotonic() + float(budget_seconds)
        # A conversation under way when the budget ends gets one TIMEOUT more, not one per step.
        self.server_deadline = (
            None if self.deadline is None else self.deadline + conf.get("TIMEOUT")
        )
        self.report = DispatchReport()
        self.pipeline = OutcomePipeline()  # the one outcome not written yet, whichever site's
        self.sessions = {}  # site_id -> SiteSession holding the lease
        self.parked = {}  # site_id -> (slot, reason) a closed session left for this call
        self.done = set()  # sites not to serve again in this call (paused, leased, unreachable)
        self.fresh, self.leased_until, self.refreshed = [], None, None

    def run(self):
        try:
            while self.step():
                pass
        finally:
            try:
                self.pipeline.settle()
            finally:
                for session in self.sessions.values():
                    session.close()
        return self.report

    def step(self):
        """One decision: serve, wait for or give up on the earliest site; False to stop."""
        now = self.clock()
        self._look_for_due_sites(now)
        candidates = self._candidates(now)
        if self._drop_what_never_fits(candidates):
            return True
        if not candidates:
            if self.leased_until is not None:
                self._stop(self.leased_until, "lease")
            return False
        moment, reason, item = min(candidates, key=_turn_order)
        if moment > now or not (isinstance(item, SiteSession) and item.batch):
            self.pipeline.settle()  # only a message sent right away carries the last outcome
        if moment > now:
            return self._wait(now, moment, reason)
        if self._left() <= 0:
            self._stop(moment, "budget")
            return False
        if isinstance(item, SiteSession):
            self._serve(item, now)
        else:
            self._open(item, now)
        return True

    # the steps
    def _look_for_due_sites(self, now):
        if (
            self.refreshed is None
            or time.monotonic() - self.refreshed > REFRESH
            or not self.sessions
        ):
            self.fresh, self.leased_until = due_sites(now, self.done | set(self.sessions))
            self.refreshed = time.monotonic()

    def _candidates(self, now):
        """``(moment, reason, session or settings)`` of every site this call may serve next."""
        candidates = [(*session.slot(now), session) for session in self.sessions.values()]
        if len(self.sessions) >= SITES_AT_ONCE:
            return candidates  # few sites at a time, so that other workers find the rest
        for slot, smtp_settings in self.fresh:
            site_id = smtp_settings.site_id
            if site_id in self.sessions or site_id in self.done:
                continue
            known, reason = self.parked.get(site_id, (None, None))
            if known is not None and known > slot:
                candidates.append((known, reason, smtp_settings))
            else:
                candidates.append((slot, "interval" if slot > now else None, smtp_settings))
        return candidates

    def _drop_what_never_fits(self, candidates):
        """A message over a cap can never go: fail it now rather than wait forever. A cap of 0
        stops the site instead: its mail waits, and this call leaves the site alone."""
        never = [item for moment, _reason, item in candidates if moment is None]
        for session in never:
            if not (session.batch and session.fail_oversized()):
                self._end(session)
        return bool(never)

    def _wait(self, now, moment, reason):
        """Sleep toward ``moment`` (a second at most, to look again); False when the call ends
        rather than wait that long."""
        wait = (moment - now).total_seconds()
        for session in list(self.sessions.values()):
            slot, slot_reason = session.slot(now)
            if (slot - now).total_seconds() > KEEP_OPEN:
                self._park(session, slot, slot_reason)
        if (self.until_empty and reason != "interval") or wait > self._left():
            self._stop(moment, reason)
            return False
        time.sleep(min(wait, 1.0, max(self._left(), 0)))
        if wait > 1.0:
            self.refreshed = None
        return True

    def _open(self, smtp_settings, now):
        session = SiteSession(
            smtp_settings,
            self.owner,
            pipeline=self.pipeline,
            on_outcome=self._count,
            clock=self.clock,
            deadline=self.server_deadline,
        )
        if not session.open(now):
            self.done.add(session.site_id)  # another dispatcher sends for it
        elif session.finished:
            self._end(session)  # paused as it opened
        else:
            self.sessions[session.site_id] = session

    def _serve(self, session, now):
        """Let a session claim and send its next message; end it when it is done or failed."""
        try:
            if session.fill(now):
                slot, _reason = session.slot(now)
                if slot is not None and slot <= now:
                    session.send_one()
        except LeaseLost:
            logger.warning("Lost the lease of site %s to another dispatcher", session.site_id)
            self._end(session)
        except DatabaseError:
            # One site's write failure ends that site's session, never another site's.
            logger.exception("Could not record an outcome of site %s", session.site_id)
            self._end(session, broken=True)
        else:
            if session.finished:
                self._end(session)

    # ending sessions and the call
    def _end(self, session, *, broken=False):
        """End a session and release what it holds. Its site is served again in this call only
        if its queue ran empty (more may come); ``broken``: after a database error, what cannot
        be released runs out with its lease."""
        self.sessions.pop(session.site_id, None)
        if not session.exhausted:
            self.done.add(session.site_id)
        self.refreshed = None
        if broken:
            session.abandon()
        else:
            session.close()

    def _park(self, session, slot, reason):
        """Close a session whose next slot is far off; its site may come back in this call."""
        self.parked[session.site_id] = (slot, reason)
        session.close()
        del self.sessions[session.site_id]

    def _stop(self, moment, reason):
        self.report.next_slot, self.report.waiting_for = moment, reason

    def _left(self):
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def _count(self, outcome, site_id, message):
        self.report.count(outcome, site_id)
        if self.progress is not None:
            self.progress(outcome, site_id, message)


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
        return Dispatcher(budget_seconds, until_empty=until_empty, progress=progress).run()
