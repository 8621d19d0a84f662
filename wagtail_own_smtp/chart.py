"""The picture of a site's sending: recipients per hour over the last 24 hours and the next
hours, against the hourly cap. Pure: it gets the send records, the expected sends and ``now``,
and returns the figures and the SVG geometry the template draws (no database, no clock).
"""

from dataclasses import dataclass, field
from datetime import timedelta

HOUR = timedelta(hours=1)
PAST_HOURS = 24
AHEAD_HOURS = 12

# SVG geometry (user units of the viewBox)
WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 26
BAR_GAP = 2


@dataclass
class Bar:
    start: object  # aware datetime: the hour this bar covers, from start to start + 1 h
    sent: int  # recipients handed to the server in that hour
    expected: int  # recipients expected to go in that hour (the queue's drain)
    x: float = 0
    width: float = 0
    sent_y: float = 0
    sent_height: float = 0
    expected_y: float = 0
    expected_height: float = 0
    label: bool = False  # an axis label under this bar

    @property
    def total(self):
        return self.sent + self.expected


@dataclass
class Chart:
    bars: list
    cap: int | None  # recipients per hour, or None
    now: object
    later: int  # expected recipients after the last bar
    scale_max: int
    cap_y: float | None = None
    now_x: float = 0
    ticks: list = field(default_factory=list)  # (y, value) of the horizontal grid lines
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = HEIGHT - BOTTOM

    @property
    def sent_total(self):
        return sum(bar.sent for bar in self.bars)

    @property
    def expected_total(self):
        return sum(bar.expected for bar in self.bars) + self.later

    @property
    def cap_reached(self):
        return self.cap is not None and any(bar.total >= self.cap for bar in self.bars)


def hour_start(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def nice_ceiling(value):
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is >= ``value`` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def sending_chart(records, expected, now, cap=None, past=PAST_HOURS, ahead=AHEAD_HOURS):
    """The chart of ``records`` (``(sent_at, recipients)`` already sent) and ``expected``
    (``(moment, recipients)`` the queue is expected to send), hour by hour in the time zone of
    ``now``, from ``past`` hours before the current hour to ``ahead`` hours after it."""
    first = hour_start(now) - (past - 1) * HOUR
    count = past + ahead
    bars = [Bar(start=first + index * HOUR, sent=0, expected=0) for index in range(count)]
    end = first + count * HOUR

    def index_of(moment):
        return int((moment - first) // HOUR)

    for sent_at, recipients in records:
        if first <= sent_at < end:
            bars[index_of(sent_at)].sent += recipients
    later = 0
    for moment, recipients in expected:
        if moment >= end:
            later += recipients
        else:
            bars[index_of(max(moment, first))].expected += recipients
    chart = Chart(bars=bars, cap=cap, now=now, later=later, scale_max=1)
    _lay_out(chart)
    return chart


def _lay_out(chart):
    tallest = max([bar.total for bar in chart.bars] + [chart.cap or 0, 1])
    chart.scale_max = nice_ceiling(tallest)
    plot_height = chart.plot_bottom - chart.plot_top
    slot = (chart.plot_right - chart.plot_left) / len(chart.bars)

    def y_of(value):
        return round(chart.plot_bottom - plot_height * value / chart.scale_max, 1)

    for index, bar in enumerate(chart.bars):
        bar.x = round(chart.plot_left + index * slot + BAR_GAP / 2, 1)
        bar.width = round(slot - BAR_GAP, 1)
        bar.sent_y = y_of(bar.sent)
        bar.sent_height = round(chart.plot_bottom - bar.sent_y, 1)
        bar.expected_y = y_of(bar.total)
        bar.expected_height = round(bar.sent_y - bar.expected_y, 1)
        bar.label = bar.start.hour % 6 == 0
    if chart.cap is not None:
        chart.cap_y = y_of(chart.cap)
    offset = (chart.now - chart.bars[0].start) / HOUR
    chart.now_x = round(chart.plot_left + offset * slot, 1)
    values = sorted({0, chart.scale_max // 2, chart.scale_max})
    chart.ticks = [(y_of(value), value) for value in values]
