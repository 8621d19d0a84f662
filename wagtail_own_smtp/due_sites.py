"""Which sites have due mail, when each may send next, and in which order they take turns.

One probe per sendable site: the cost follows the number of sites, not of queued messages.
"""

from datetime import UTC, datetime

from django.db.models import Exists, OuterRef, Q

from . import backoff, limits
from .mailqueue import messages
from .models import DeliveryMode, SmtpSettings
from .sendstate import lease_states


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


def turn_order(candidate):
    """Earliest slot first; among sites ready at the same moment, the one that sent least
    recently (a site without a session yet counts as long ago)."""
    moment, _reason, item = candidate  # item: a SiteSession, or a site's SmtpSettings
    last_sent_at = getattr(item, "last_sent_at", None)
    return (moment, last_sent_at or _LONG_AGO, item.site_id)
