"""A site's sending over time, read from the database: when each waiting message is expected
to go, and the recipients sent in the last day.

The expected times come from one walk of the site's limits (``limits.Schedule``) over its waiting
mail in the order the dispatcher claims it (the normal lane first; due time, then primary key).
The outbox rows, the message page and the chart read them; for mail that is due now it is the
walk the forecast's drain time stands for (``limits.drain_eta``), so a row never contradicts the
forecast above it.
"""

from datetime import timedelta

from django.db.models import Case, Value, When
from django.utils import timezone

from . import limits
from .chart import sending_chart
from .choices import WAITING, Lane
from .models import OutboundMessage, SendRecord, SiteSendState, SmtpSettings
from .sendstate import window_records

WALK_LIMIT = 5_000  # waiting messages walked per site; later ones show their due time
HISTORY = timedelta(hours=24)


def sends(smtp_settings):
    """Whether the dispatcher sends this site's mail now (else nothing has an expected time)."""
    return (
        smtp_settings.sends_own
        and smtp_settings.has_verified_server
        and not smtp_settings.sending_paused
    )


def expected_sends(smtp_settings, now=None, limit=WALK_LIMIT):
    """``[(message_pk, moment, recipients), ...]`` of the site's waiting mail, in sending order.

    A message that exceeds a cap never goes and is left out; so is everything when the site does
    not send now (platform mode, no verified server, paused).
    """
    if not sends(smtp_settings):
        return []
    now = now or timezone.now()
    site_id = smtp_settings.site_id
    bulk_last = Case(When(lane=Lane.BULK, then=Value(1)), default=Value(0))
    rows = list(
        OutboundMessage.objects.filter(site_id=site_id, status__in=WAITING)
        .order_by(bulk_last, "next_attempt_at", "pk")
        .values_list("pk", "recipient_count", "next_attempt_at", "lane")[:limit]
    )
    if not rows:
        return []
    site_limits = limits.Limits.of(smtp_settings)
    state = SiteSendState.objects.filter(site_id=site_id).first()
    schedule = limits.Schedule(
        site_limits,
        state.last_sent_at if state else None,
        window_records(site_id, site_limits, now),
        now,
    )
    expected = []
    for pk, count, due, lane in rows:
        moment, _reason = schedule.slot_for(count, not_before=max(due, now), bulk=lane == Lane.BULK)
        if moment is None:
            continue
        schedule.record(moment, count)
        expected.append((pk, moment, count))
    return expected


def expected_times(site_ids, now=None):
    """``{message_pk: moment}`` for the waiting mail of ``site_ids`` (the sites on one page)."""
    now = now or timezone.now()
    times = {}
    for smtp_settings in SmtpSettings.objects.filter(site_id__in=set(site_ids)):
        times.update((pk, moment) for pk, moment, _count in expected_sends(smtp_settings, now))
    return times


def sent_records(site_id, now=None):
    """``(sent_at, recipients)`` handed to the site's server in the last 24 hours, oldest first.

    The window records are kept two days whatever the caps, so they are the history too.
    """
    now = now or timezone.now()
    return list(
        SendRecord.objects.filter(site_id=site_id, sent_at__gt=now - HISTORY)
        .order_by("sent_at")
        .values_list("sent_at", "recipients")
    )


def site_chart(smtp_settings, now=None):
    """The chart of the site's last 24 hours and its queue's expected drain."""
    now = timezone.localtime(now or timezone.now())
    expected = [(moment, count) for _pk, moment, count in expected_sends(smtp_settings, now)]
    return sending_chart(
        sent_records(smtp_settings.site_id, now), expected, now, cap=smtp_settings.max_per_hour
    )


def add_charts(forecasts, now=None):
    """Give each forecast of a site that uses its own server or has mail waiting its chart."""
    for forecast in forecasts:
        forecast.chart = site_chart(forecast.settings, now or forecast.now)
    return forecasts
