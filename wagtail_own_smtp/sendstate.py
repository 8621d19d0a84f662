"""What every worker of every machine agrees on about a site's sending: one clock, the lease, the
records of its rolling windows.

The limits hold across workers because their state lives in the database (``SiteSendState``,
``SendRecord``) and is compared with the database's clock, never with a machine's own.
"""

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from . import limits
from .models import SendRecord, SiteSendState

CLOCK_TOLERANCE = timedelta(milliseconds=50)  # clock skew below this is measurement noise


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


# -- the rolling windows -------------------------------------------------------------------------


def record_delivery(site_id, recipients, sent_at):
    """Count recipients handed to a site's server toward its interval and rolling windows.

    Every message through the server counts, confirmation messages included (providers count them).
    The dispatcher writes its own with the outcome, in one commit (``mailqueue.record_sent``).
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


def forget_old_records(site_id, now):
    """Drop records older than the longest window: no one needs them any more."""
    SendRecord.objects.filter(site_id=site_id, sent_at__lt=now - 2 * limits.DAY).delete()


def last_send(site_id):
    """When the site last handed a message to its server, as the lease holders wrote it."""
    return SiteSendState.objects.get(site_id=site_id).last_sent_at


# -- the site lease: one dispatcher per site at a time --------------------------------------------


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


def lease_states(site_ids):
    """``{site_id: SiteSendState}`` of the given sites (those that have one)."""
    return {s.site_id: s for s in SiteSendState.objects.filter(site_id__in=site_ids)}
