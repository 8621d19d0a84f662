"""A site's sending limits as pure functions: next slot, rolling-window budgets, drain time.

Nothing here touches the database or the clock: the dispatcher passes the state it read (the
last send time and the ``(sent_at, recipients)`` records of the windows) and ``now``. The caps
count recipients, as providers do. The windows are rolling: a record made at ``t`` counts until
``t + window``.

Lanes: every message counts toward the interval and the caps, but a bulk message goes only while
the window's recipients, its own included, stay within ``100 - bulk_reserve`` percent of each cap
(``Limits.bulk_cap``): the rest is kept for normal mail, which may use the whole cap.
"""

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate

from . import conf

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Limits:
    """A site's limits: minimum interval between two messages and recipient caps (None = none)."""

    min_interval: timedelta = timedelta(0)
    max_per_hour: int | None = None
    max_per_day: int | None = None
    bulk_reserve: int = 0  # percent of each cap bulk mail leaves for normal mail

    @classmethod
    def of(cls, smtp_settings, bulk_reserve=None):
        """A site's limits; ``bulk_reserve`` defaults to ``WAGTAIL_OWN_SMTP_BULK_RESERVE``."""
        if bulk_reserve is None:
            bulk_reserve = conf.bulk_reserve()
        return cls(
            min_interval=timedelta(seconds=float(smtp_settings.min_interval or 0)),
            max_per_hour=smtp_settings.max_per_hour,
            max_per_day=smtp_settings.max_per_day,
            bulk_reserve=bulk_reserve,
        )

    def bulk_cap(self, cap):
        """The part of ``cap`` bulk mail may use (rounded down)."""
        return cap * (100 - self.bulk_reserve) // 100

    def windows(self):
        """(window, cap) for every cap that is set."""
        caps = ((HOUR, self.max_per_hour), (DAY, self.max_per_day))
        return [(window, cap) for window, cap in caps if cap is not None]

    @property
    def longest_window(self):
        """How far back records matter, or None when no cap is set."""
        windows = self.windows()
        return max(window for window, _cap in windows) if windows else None

    def can_ever_send(self, count):
        """False when ``count`` recipients exceed a cap: such a message never fits any window."""
        return all(count <= cap for _window, cap in self.windows())


def next_slot(last_sent_at: datetime | None, min_interval: timedelta) -> datetime | None:
    """The earliest moment the next message may start (None: at once)."""
    if last_sent_at is None or not min_interval:
        return last_sent_at
    return last_sent_at + min_interval


def used(records, now: datetime, window: timedelta) -> int:
    """Recipients counted in the rolling window that ends at ``now``."""
    start = now - window
    return sum(count for sent_at, count in records if sent_at > start)


def budget(records, now: datetime, limits: Limits) -> int | None:
    """Recipients that may still be sent at ``now`` (None = unlimited)."""
    remaining = [cap - used(records, now, window) for window, cap in limits.windows()]
    return max(0, min(remaining)) if remaining else None


class _Window:
    """One rolling window over records in time order, sliding forward only."""

    def __init__(self, records, window, cap):
        self.window = window
        self.cap = cap
        self.records = deque(records)
        self.total = sum(count for _sent_at, count in self.records)

    def slide_to(self, moment):
        while self.records and self.records[0][0] <= moment - self.window:
            self.total -= self.records.popleft()[1]

    def fits_from(self, moment, count, cap=None):
        """Earliest moment >= ``moment`` at which ``count`` more recipients fit under ``cap``
        (default: the window's; the cap must hold ``count``)."""
        self.slide_to(moment)
        excess = self.total + count - (self.cap if cap is None else cap)
        for sent_at, recorded in self.records:
            if excess <= 0:
                break
            excess -= recorded
            moment = sent_at + self.window
        return moment

    def add(self, sent_at, count):
        self.records.append((sent_at, count))
        self.total += count


class Schedule:
    """Walks a site's send times forward: when each next message may go, given all limits.

    ``records`` are ``(sent_at, recipients)`` in time order and must reach back at least
    ``limits.longest_window`` from ``now``.
    """

    def __init__(self, limits: Limits, last_sent_at, records, now):
        self.limits = limits
        self.last_sent_at = last_sent_at
        self.now = now
        records = sorted(records)
        self._windows = [_Window(records, window, cap) for window, cap in limits.windows()]

    def _cap(self, window, count, bulk):
        """The cap a message meets in ``window``: the bulk share for bulk mail. A bulk message
        larger than that share (yet within the cap) waits for a window with nothing else in it."""
        return max(self.limits.bulk_cap(window.cap), count) if bulk else window.cap

    def slot_for(self, count, not_before=None, bulk=False):
        """Earliest moment a message with ``count`` recipients may start, and why it waits.

        Returns ``(moment, reason)`` with reason ``None`` (it may go at ``now``), ``"interval"``
        or ``"cap"``; ``(None, "cap")`` when the message exceeds a cap and can never go.
        ``bulk``: a message of the bulk lane, held to the bulk share of each cap.
        """
        if not self.limits.can_ever_send(count):
            return None, "cap"
        moment, reason = max(self.now, not_before or self.now), None
        slot = next_slot(self.last_sent_at, self.limits.min_interval)
        if slot is not None and slot > moment:
            moment, reason = slot, "interval"
        for window in self._windows:
            fits = window.fits_from(moment, count, self._cap(window, count, bulk))
            if fits > moment:
                moment, reason = fits, "cap"
        return moment, reason

    def room(self, moment, bulk=False):
        """Recipients the windows still take at ``moment`` (``moment`` not before the last);
        ``bulk``: within the bulk share of each cap."""
        free = []
        for window in self._windows:
            window.slide_to(moment)
            cap = self.limits.bulk_cap(window.cap) if bulk else window.cap
            free.append(cap - window.total)
        return max(0, min(free))

    def record(self, sent_at, count):
        """A message with ``count`` recipients went at ``sent_at``."""
        self.last_sent_at = sent_at
        self.now = max(self.now, sent_at)
        for window in self._windows:
            window.add(sent_at, count)

    def record_run(self, start, interval, counts):
        """Messages with ``counts`` recipients went one ``interval`` apart from ``start``;
        returns when the last went. With no interval they count as one record."""
        if not interval:
            self.record(start, sum(counts))
            return start
        times = [start + interval * step for step in range(len(counts))]
        self.last_sent_at = times[-1]
        self.now = max(self.now, times[-1])
        for window in self._windows:
            window.records.extend(zip(times, counts, strict=True))
            window.total += sum(counts)
        return times[-1]


def drain_eta(counts, now, last_sent_at, records, limits: Limits, bulk=()) -> datetime | None:
    """When the last of the queued messages (their recipient ``counts``, in order) may go.

    Sending is taken as instantaneous; None when a message exceeds a cap and never fits.
    ``now`` for an empty queue. ``bulk``: the recipient counts of the bulk lane, which go after
    ``counts`` (the normal lane) within the bulk share of each cap.

    The same moments as walking ``Schedule.slot_for`` message by message, without the walk:
    with no cap, the messages go one interval apart from the first slot; with caps, as many
    messages as the windows' budget holds at a slot go one interval apart (the budget only
    grows while time passes, so each of them fits), and only the next one is looked up.
    """
    every = [*counts, *bulk]
    if not every:
        return now
    if not limits.can_ever_send(max(every)):
        return None
    interval = limits.min_interval
    if not limits.windows():
        first = max(now, next_slot(last_sent_at, interval) or now)
        return first + (len(every) - 1) * interval
    schedule = Schedule(limits, last_sent_at, records, now)
    moment = now
    for lane, is_bulk in ((counts, False), (bulk, True)):
        if lane:
            moment = _walk(schedule, list(lane), interval, is_bulk)
    return moment


def _walk(schedule, counts, interval, bulk):
    """Send ``counts`` on ``schedule`` as ``drain_eta`` describes; when the last goes."""
    totals = list(accumulate(counts, initial=0))  # totals[i]: recipients of the first i messages
    index, moment = 0, schedule.now
    while index < len(counts):
        moment, _reason = schedule.slot_for(counts[index], bulk=bulk)
        schedule.record(moment, counts[index])
        index += 1
        room = schedule.room(moment, bulk)
        # the following messages whose recipients fit in that room, one interval apart
        end = bisect_right(totals, totals[index] + room, lo=index) - 1
        if end > index:
            moment = schedule.record_run(moment + interval, interval, counts[index:end])
            index = end
    return moment
