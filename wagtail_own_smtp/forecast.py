"""Every read-only figure of a site's queue, and the words for them: how much waits, at what pace,
and when the last message goes out.

The figures come from the dispatcher's own schedule over the limits (``limits.Schedule``), read
for many sites at once where the admin shows many; the words are for the outbox, the dashboard
panel and ``own_smtp_status``.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import limits
from .choices import WAITING, Lane
from .mailqueue import messages
from .models import DeliveryMode, MessageStatus, SiteSendState, SmtpSettings
from .sendstate import window_records


def number(value):
    return formats.number_format(value, force_grouping=True)


def seconds(value):
    """30 -> "30", 0.5 -> "0.5" (with the locale's decimal separator)."""
    text = f"{float(value):g}"
    return text.replace(".", formats.get_format("DECIMAL_SEPARATOR"))


def pace(site_limits: limits.Limits):
    """ "at one message every 30 s and at most 100 recipients an hour" """
    interval = site_limits.min_interval.total_seconds()
    hour, day = site_limits.max_per_hour, site_limits.max_per_day
    caps = ""
    if hour is not None and day is not None:
        caps = _("at most %(hour)s recipients an hour and %(day)s a day") % {
            "hour": number(hour),
            "day": number(day),
        }
    elif hour is not None:
        caps = _("at most %(hour)s recipients an hour") % {"hour": number(hour)}
    elif day is not None:
        caps = _("at most %(day)s recipients a day") % {"day": number(day)}
    every = _("at one message every %(seconds)s s") % {"seconds": seconds(interval)}
    if interval and caps:
        return _("%(interval)s and %(caps)s") % {"interval": every, "caps": caps}
    if interval:
        return every
    return caps or _("with no limits")


def moment(when, now):
    """ "around 18:40 today" / "tomorrow" / "on <date>" in the current time zone."""
    if when <= now + timedelta(minutes=1):
        return _("within a minute")
    local = timezone.localtime(when)
    days = (local.date() - timezone.localtime(now).date()).days
    time = formats.time_format(local, "TIME_FORMAT")
    if days == 0:
        return _("around %(time)s today") % {"time": time}
    if days == 1:
        return _("around %(time)s tomorrow") % {"time": time}
    return _("around %(time)s on %(date)s") % {
        "time": time,
        "date": formats.date_format(local, "DATE_FORMAT"),
    }


@dataclass
class Forecast:
    """One site's queue at a glance, with the sentence that says it."""

    site: object
    settings: SmtpSettings
    counts: dict
    waiting: int
    next_slot: object
    drained_at: object
    # "empty", "sending", "platform", "unverified", "paused", "backoff" or "never"
    state: str
    text: str
    now: object
    chart: object = None  # the picture of the sending (timeline.add_charts), where shown
    bulk_waiting: int = 0  # of ``waiting``, the bulk lane's

    @property
    def next_slot_text(self):
        """When the next message may go, while the site is sending ("" otherwise)."""
        if self.next_slot is None or self.state != "sending":
            return ""
        return moment(self.next_slot, self.now)


_BACKOFF_FIELDS = ("site_id", "backoff_until", "backoff_reply", "backoff_hint")


def site_forecast(smtp_settings, now=None, read=None, backoff=None):
    """The forecast of one site's queue (a few queries, see ``site_outlook``).

    ``read``: the keyword arguments of ``site_outlook`` that ``forecasts`` read for many sites;
    ``backoff``: the site's ``(site_id, until, reply, hint)`` of its server's throttle, if read.
    """
    now = now or timezone.now()
    if read is None:
        backoff = (
            SiteSendState.objects.filter(site_id=smtp_settings.site_id, backoff_until__gt=now)
            .values_list(*_BACKOFF_FIELDS)
            .first()
        )
    backoff = backoff if backoff and backoff[1] and backoff[1] > now else None
    read = {**(read or {}), "backoff_until": backoff[1] if backoff else None}
    outlook = site_outlook(smtp_settings, now, **read)
    waiting = sum(outlook.counts[status] for status in WAITING)
    count = {"count": number(waiting)}
    if not waiting:
        state, text = "empty", _("Nothing waits to be sent.")
    elif not smtp_settings.sends_own:
        state = "platform"
        text = (
            ngettext(
                "%(count)s message waiting: the site sends via the platform's mail service now, "
                "so it waits until the site sends via its own server again.",
                "%(count)s messages waiting: the site sends via the platform's mail service now, "
                "so they wait until the site sends via its own server again.",
                waiting,
            )
            % count
        )
    elif not smtp_settings.has_verified_server:
        state = "unverified"
        text = (
            ngettext(
                "%(count)s message waiting until a server is verified.",
                "%(count)s messages waiting until a server is verified.",
                waiting,
            )
            % count
        )
    elif smtp_settings.sending_paused:
        state = "paused"
        text = (
            ngettext(
                "%(count)s message waiting: sending is paused until the server is confirmed again.",
                "%(count)s messages waiting: sending is paused until the server is "
                "confirmed again.",
                waiting,
            )
            % count
        )
    elif backoff:
        state = "backoff"
        _site, until, reply, hint = backoff
        text = ngettext(
            "%(count)s message waiting: the server asked the site to wait (“%(reply)s”); "
            "sending resumes %(when)s.",
            "%(count)s messages waiting: the server asked the site to wait (“%(reply)s”); "
            "sending resumes %(when)s.",
            waiting,
        ) % {**count, "reply": reply, "when": moment(until, now)}
        text = f"{text} {hint}".strip()
    elif outlook.never_fits:
        state = "never"
        text = (
            ngettext(
                "%(count)s message waiting; a message has more recipients than a limit allows, "
                "so the queue cannot drain within the limits.",
                "%(count)s messages waiting; a message has more recipients than a limit allows, "
                "so the queue cannot drain within the limits.",
                waiting,
            )
            % count
        )
    else:
        state = "sending"
        text = ngettext(
            "%(count)s message waiting — %(pace)s, it goes out %(when)s.",
            "%(count)s messages waiting — %(pace)s, the last goes out %(when)s.",
            waiting,
        ) % {
            **count,
            "pace": pace(limits.Limits.of(smtp_settings)),
            "when": moment(outlook.drained_at, now),
        }
        if outlook.bulk_waiting:
            bulk_text = ngettext(
                "%(count)s of them is bulk mail: normal mail goes first, at the next slot, and "
                "the bulk lane drains %(when)s.",
                "%(count)s of them are bulk mail: normal mail goes first, at the next slot, and "
                "the bulk lane drains %(when)s.",
                outlook.bulk_waiting,
            ) % {"count": number(outlook.bulk_waiting), "when": moment(outlook.drained_at, now)}
            text = f"{text} {bulk_text}"
    return Forecast(
        site=smtp_settings.site,
        settings=smtp_settings,
        counts=outlook.counts,
        waiting=waiting,
        next_slot=outlook.next_slot,
        drained_at=outlook.drained_at,
        state=state,
        text=text,
        now=now,
        bulk_waiting=outlook.bulk_waiting,
    )


def sites_in_use(sites):
    """Those of ``sites`` that send via their own server or have mail waiting in the outbox.

    Sites that never used the outbox are left out, so a platform with many sites shows only the
    ones that matter.
    """
    # ``sites`` filters the outer query; the subqueries need not join it again (with a
    # thousand sites the planner may loop over them once per row)
    own = SmtpSettings.objects.filter(delivery_mode=DeliveryMode.OWN)
    waiting = messages().waiting()
    return sites.filter(
        Q(pk__in=own.values("site_id")) | Q(pk__in=waiting.values("site_id"))
    ).order_by("hostname", "port")


def forecasts(sites, now=None):
    """The forecast of each of ``sites`` (an iterable of Site), in that order.

    The queue figures of all of them are read at once (a few queries, whatever their number);
    only a site with caps reads its waiting mail and window records on its own.
    """
    now = now or timezone.now()
    sites = list(sites)
    site_ids = [site.pk for site in sites]
    settings_by_site = {s.site_id: s for s in SmtpSettings.objects.filter(site__in=site_ids)}
    counts = queue_counts(site_ids)
    times = waiting_times(site_ids)
    states = SiteSendState.objects.filter(site__in=site_ids)
    last_sent, backoffs = {}, {}
    for row in states.values_list("last_sent_at", *_BACKOFF_FIELDS):
        last_sent[row[1]] = row[0]
        backoffs[row[1]] = row[1:]
    result = []
    for site in sites:
        smtp_settings = settings_by_site.get(site.pk) or SmtpSettings(site_id=site.pk)
        smtp_settings.site = site
        read = {
            "counts": counts.get(site.pk, {}),
            "last_sent_at": last_sent.get(site.pk),
            "times": times.get(site.pk),
        }
        result.append(site_forecast(smtp_settings, now, read, backoffs.get(site.pk)))
    return result


# -- the figures ---------------------------------------------------------------------------------


@dataclass
class Outlook:
    """A site's queue at a glance."""

    counts: dict
    next_slot: object  # datetime, or None when nothing waits
    drained_at: object  # datetime, or None when nothing waits or a message can never fit
    never_fits: bool = False
    bulk_waiting: int = 0  # waiting messages of the bulk lane (they go after the normal lane)


def queue_counts(site_ids=None):
    """``{site_id: {status: count}}`` in one aggregate query (every status present, 0 or more)."""
    return messages().of_sites(site_ids).counts_by_site()


def waiting_mail(site_ids=None):
    """``{site_id: [(recipient_count, next_attempt_at, lane), ...]}`` of waiting mail in sending
    order within each lane."""
    return messages().of_sites(site_ids).waiting_by_site()


def waiting_times(site_ids=None):
    """``{site_id: (first, latest, bulk)}``: the earliest and latest ``next_attempt_at`` of waiting
    mail, and how much of it is bulk mail.

    All a site without caps needs for its forecast, in one aggregate query, instead of every
    waiting row.
    """
    return messages().of_sites(site_ids).waiting_times_by_site()


_UNREAD = object()


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
    their number, lanes and due times tell when the last goes. The normal lane goes first, the bulk
    lane within its share of the caps.
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
        normal = [count for count, _due, lane in waiting if lane != Lane.BULK]
        bulk_counts = [count for count, _due, lane in waiting if lane == Lane.BULK]
        first_due = min(due for _count, due, _lane in waiting)
        latest_retry = max(due for _count, due, _lane in waiting)
    else:
        if times is _UNREAD:
            times = waiting_times([site_id]).get(site_id)
        if not times:
            return Outlook(counts, None, None)
        first_due, latest_retry, bulk = times
        # without caps, only their number matters
        normal, bulk_counts = [1] * (waiting_count - bulk), [1] * bulk
    if last_sent_at is _UNREAD or backoff_until is _UNREAD:
        state = SiteSendState.objects.filter(site_id=site_id).first()
        if last_sent_at is _UNREAD:
            last_sent_at = state.last_sent_at if state else None
        if backoff_until is _UNREAD:
            backoff_until = state.backoff_until if state else None
    start = max(now, backoff_until or now)  # nothing goes while the server's window is closed
    records = window_records(site_id, site_limits, now)
    schedule = limits.Schedule(site_limits, last_sent_at, records, now)
    next_slot, _reason = schedule.slot_for(
        (normal or bulk_counts)[0], not_before=max(first_due, start), bulk=not normal
    )
    drained_at = limits.drain_eta(
        normal, start, last_sent_at, records, site_limits, bulk=bulk_counts
    )
    if drained_at is not None:
        drained_at = max(drained_at, latest_retry)
    outlook = Outlook(counts, next_slot, drained_at, never_fits=drained_at is None)
    outlook.bulk_waiting = len(bulk_counts)
    return outlook
