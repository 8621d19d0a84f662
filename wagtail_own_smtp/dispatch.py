"""The dispatcher: which site's session goes next, when to wait, when to stop.

How a run works: list the sites with due mail (own mode, a verified server, not paused, not
backed off by their server), and in the order of their next slots (among equals, the one that
sent least recently first) open up to ``WAGTAIL_OWN_SMTP_CONNECTIONS`` sessions (a site's lease
and its one connection: session.py). Each session's messages go one after the other over its
connection, on an agent thread (agents.py), while its limits allow; the sessions go side by side,
so a slow or stalling server holds back only its own site. The run waits for deliveries and for
the earliest next slot while the budget lasts.

This module only decides, as Postfix's queue manager does for its delivery agents; a session
talks SMTP and keeps its own books, and knows nothing of the other sessions. A run's state lives
on a ``Dispatcher`` (as django-q2's ``Sentinel`` keeps its loop's), one step a method.
"""

import logging
import time
import uuid
from contextlib import contextmanager

from django.db import DatabaseError

from . import conf, transport
from .agents import Agents, Gate, Inbox, answer
from .dispatch_report import DispatchReport
from .due_sites import due_sites, turn_order
from .durability import outcomes_without_flush
from .exceptions import LeaseLost
from .sendstate import database_clock
from .session import KEEP_OPEN, SiteSession

logger = logging.getLogger(__name__)

REFRESH = 5  # seconds between looks for newly due sites while sending
REFRESH_WITH_ROOM = 0.5  # the same while the run could take more sites


# -- a run -----------------------------------------------------------------------------------------


class Dispatcher:
    """One dispatch call: its sessions, the deliveries under way, the sites it is done with, and
    its budget. Everything here runs on the caller's thread; only ``SiteSession.deliver`` runs on
    the agents' (agents.py)."""

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
        self.connections = max(1, int(conf.get("CONNECTIONS")))
        self.report = DispatchReport()
        self.inbox = Inbox()
        self.agents = None  # started with the first delivery
        self.sessions = {}  # site_id -> SiteSession holding the lease
        self.closing = {}  # site_id -> SiteSession whose QUIT goes on an agent thread
        self.busy = {}  # site_id -> Delivery under way on an agent thread
        self.parked = {}  # site_id -> (slot, reason) a closed session left for this call
        self.done = set()  # sites not to serve again in this call (paused, leased, unreachable)
        self.fresh, self.leased_until, self.refreshed = [], None, None
        self.ending = False  # no more follow-ons are offered (see _offer)

    def run(self):
        try:
            while self.step():
                pass
        finally:
            self.ending = True
            try:
                self._drain()
                for session in list(self.sessions.values()):
                    self._end(session)
                self._drain()
            finally:
                for session in [*self.sessions.values(), *self.closing.values()]:
                    session.close()
                if self.agents is not None:
                    self.agents.shutdown()
        return self.report

    def _drain(self):
        """Book every delivery under way and every goodbye; each ends by its own deadline."""
        while self.busy or self.closing:
            event = self.inbox.next(None)
            try:
                self._handle(event)
            except Exception:  # the run is ending on an error already: book the others
                logger.exception("Could not book a delivery of the ending run")

    def step(self):
        """Start what may go now, then wait for a delivery, a slot or the end; False to stop."""
        now = self.clock()
        self._look_for_due_sites(now)
        candidates = self._candidates(now)
        if self._drop_what_never_fits(candidates):
            return True
        started = False
        for moment, _reason, item in sorted(candidates, key=turn_order):
            if moment > now or self._left() <= 0:
                break
            started |= self._serve(item, now)
        if started:
            return True
        waiting = [c for c in self._candidates(now) if c[0] is not None]
        if not self.busy and not self.closing:
            if not waiting:
                if self.leased_until is not None:
                    self._stop(self.leased_until, "lease")
                return False
            moment, reason, _item = min(waiting, key=turn_order)
            if moment <= now:  # due, but the budget is spent
                self._stop(moment, "budget")
                return False
            if (self.until_empty and reason != "interval") or (
                (moment - now).total_seconds() > self._left()
            ):
                self._stop(moment, reason)
                return False
        self._wait(now, min((c[0] for c in waiting), default=None))
        return True

    # the steps
    def _look_for_due_sites(self, now):
        # With connections free, mail being queued right now should not wait for a session's end.
        every = REFRESH if self._full() else REFRESH_WITH_ROOM
        if self.refreshed is None or time.monotonic() - self.refreshed > every or not self.sessions:
            self.fresh, self.leased_until = due_sites(now, self._not_again())
            self.refreshed = time.monotonic()

    def _candidates(self, now):
        """``(moment, reason, session or settings)`` of every site this call may serve next:
        its idle sessions, and new sites while connections are free."""
        candidates = [
            (*session.slot(now), session)
            for site_id, session in self.sessions.items()
            if site_id not in self.busy and not session.finished
        ]
        if self._full():
            return candidates
        held = self._not_again()
        for slot, smtp_settings in self.fresh:
            site_id = smtp_settings.site_id
            if site_id in held:
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

    def _wait(self, now, moment):
        """Wait for a delivery to end or toward ``moment`` (a second at most, to look again);
        sessions whose next slot is far off close meanwhile."""
        for site_id, session in list(self.sessions.items()):
            if site_id not in self.busy and not session.finished:
                slot, reason = session.slot(now)
                if slot is not None and (slot - now).total_seconds() > KEEP_OPEN:
                    self._park(session, slot, reason)
        timeout = 1.0 if moment is None else (moment - now).total_seconds()
        if timeout <= 0:  # due but not startable now (budget spent): a delivery's end changes it
            timeout = 1.0
        if not self.busy:
            timeout = min(timeout, max(self._left(), 0))
        if timeout > 1.0:
            self.refreshed = None
        self._handle(self.inbox.next(min(max(timeout, 0), 1.0)))

    def _serve(self, item, now):
        """Open a site's session, or let an idle one claim and start its next message; True
        when something changed."""
        if len(self.busy) >= self.connections:
            return False
        if not isinstance(item, SiteSession):
            if self._full() or item.site_id in self._not_again():
                return False
            return self._open(item, now)
        session = item
        with self._guard(session):
            if not session.fill(now):
                self._end(session)
                return True
            slot, _reason = session.slot(now)
            if slot is None or slot > now:
                return True  # the claimed batch's first message waits for its slot
            self._start(session, session.next_delivery())
        return True

    def _open(self, smtp_settings, now):
        session = SiteSession(
            smtp_settings,
            self.owner,
            on_outcome=self._count,
            clock=self.clock,
            deadline=self.server_deadline,
            ask=self.inbox.call,
        )
        if not session.open(now):
            self.done.add(session.site_id)  # another dispatcher sends for it
        elif session.finished:
            self._end(session)  # paused as it opened
        else:
            self.sessions[session.site_id] = session
        return True

    def _start(self, session, delivery):
        if delivery is None:
            return  # failed before it went (every recipient suppressed)
        if self.agents is None:
            self.agents = Agents(self.connections, self.inbox)
        self.busy[session.site_id] = delivery
        self._offer(session, delivery)
        self.agents.start(session, lambda: self._deliver_on(session, delivery))

    def _deliver_on(self, session, delivery):
        """On an agent thread: deliver, then go on with each follow-on this thread was offered
        (``_offer``) while the budget lasts, without waiting for it; every result but the last
        is posted as "went_on" (``_went_on``), the last returned."""
        while True:
            result = session.deliver(delivery)
            following = delivery.take_follow()
            if following is None or result[0] != "sent" or self._left() <= 0:
                return result
            self.inbox.post(("went_on", session, result))
            delivery = following

    def _offer(self, session, delivery):
        """Let the agent go on from ``delivery`` to the session's next message when that may go
        right after it (``SiteSession.follow_on``), as Postfix's delivery agents take the next
        message of a destination without a round trip to the queue manager."""
        if not self.ending and self._left() > 0:
            following = session.follow_on(self.clock())
            if following is not None:
                delivery.offer(following)

    def _went_on(self, session, result):
        """Book a sent message whose agent went on with its follow-on: that one is under way
        now; offer it the next, write this outcome, then let its data go."""
        delivery = self.busy[session.site_id]
        following = self.busy[session.site_id] = delivery.follow
        written = False
        try:
            with self._guard(session):
                write = session.apply(delivery, result)
                self._offer(session, following)
                write()
                written = session.write_error is None
        finally:
            following.gate.open(written)

    def _handle(self, event):
        """Answer an agent's call, or book a delivery that ended (starting the session's next
        message before writing this one's outcome, when it may go at once)."""
        if event is None:
            return
        if event[0] == "call":
            answer(event)
            return
        if event[0] == "closed":
            self._closed(event[1])
            return
        if event[0] == "went_on":
            self._went_on(event[1], event[2])
            return
        _kind, session, result = event
        delivery = self.busy.pop(session.site_id)
        if isinstance(result, BaseException):  # deliver() itself broke: a bug
            result = ("error", result)
        with self._guard(session):
            write = session.apply(delivery, result)
            if write is not None:
                gate = Gate()
                try:
                    self._start_next(session, gate)
                finally:
                    try:
                        write()
                    finally:
                        gate.open(session.write_error is None)
        if session.finished and session.site_id not in self.busy:
            self._end(session)

    def _start_next(self, session, gate):
        """Start the session's next message if it may go at once: its data wait at ``gate``."""
        if self._left() > 0 and session.can_go_now(self.clock()):
            self._start(session, session.next_delivery(gate))

    @contextmanager
    def _guard(self, session):
        """One site's lost lease or database failure ends that site's session, never another's."""
        try:
            yield
        except LeaseLost:
            logger.warning("Lost the lease of site %s to another dispatcher", session.site_id)
            session.finished = True
            if session.site_id not in self.busy:
                self._end(session)
        except DatabaseError:
            logger.exception("Could not record an outcome of site %s", session.site_id)
            session.finished = session.broken = True
            if session.site_id not in self.busy:
                self._end(session)

    # ending sessions and the call
    def _end(self, session):
        """End a session and release what it holds. Its site is served again in this call only
        if its queue ran empty (more may come); a ``broken`` session (a database error) leaves
        what cannot be released to run out with its lease."""
        if self.sessions.pop(session.site_id, None) is None:
            return
        if not session.exhausted:
            self.done.add(session.site_id)
        self.refreshed = None
        if session.broken:
            session.abandon()
        else:
            self._close(session)

    def _park(self, session, slot, reason):
        """Close a session whose next slot is far off; its site may come back in this call."""
        self.parked[session.site_id] = (slot, reason)
        del self.sessions[session.site_id]
        self._close(session)

    def _close(self, session):
        """Release a session: its QUIT on an agent thread (a server slow to answer it holds back
        no other site), its lease once that is done, so its site has one connection at a time."""
        connection = session.detach()
        if connection is None:  # else an agent opened it: the agents are running
            self._release(session)
            return
        self.closing[session.site_id] = session
        self.agents.start(session, lambda: transport.close_quietly(connection), kind="closed")

    def _closed(self, session):
        del self.closing[session.site_id]
        self._release(session)

    @staticmethod
    def _release(session):
        try:
            session.close()
        except DatabaseError:  # the lease runs out by itself
            logger.exception("Could not release the lease of site %s", session.site_id)

    def _full(self):
        """True when every connection is taken (a closing one until its server said goodbye)."""
        return len(self.sessions) + len(self.closing) >= self.connections

    def _not_again(self):
        """The sites this call does not open a session for now."""
        return self.done | set(self.sessions) | set(self.closing)

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
