"""A site backed off by its server: a throttle or quota ("this site for a while").

The server said the account may not send now (``replies.THROTTLE``). The session has ended,
every message stays queued without spending an attempt, and the site sends nothing until its
window can have room again; the forecast says why and until when.
"""

from datetime import timedelta

from . import conf
from .models import SendRecord, SiteSendState

HOUR = timedelta(hours=1)


def back_off(site_id, failure, now):
    """Back the site off after ``failure`` (a THROTTLE); returns until when."""
    until = now + timedelta(seconds=conf.get("THROTTLE_SECONDS"))
    window = failure.window or 0
    if window > conf.get("THROTTLE_SECONDS"):
        # A rolling quota (a day): room comes when the oldest recipient this site handed the
        # server within the window leaves it. The server may count mail sent by other means
        # too, so without such a record, try again after an hour.
        oldest = (
            SendRecord.objects.filter(site_id=site_id, sent_at__gt=now - timedelta(seconds=window))
            .order_by("sent_at")
            .values_list("sent_at", flat=True)
            .first()
        )
        until = max(until, oldest + timedelta(seconds=window) if oldest else now + HOUR)
    fields = {"backoff_until": until, "backoff_reply": failure.text, "backoff_hint": failure.hint}
    if not SiteSendState.objects.filter(site_id=site_id).update(**fields):
        SiteSendState.objects.update_or_create(site_id=site_id, defaults=fields)
    return until


def backed_off(now):
    """The send states of sites that wait for their server's window (a query to exclude)."""
    return SiteSendState.objects.filter(backoff_until__gt=now)
