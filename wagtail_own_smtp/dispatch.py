"""Claim due messages of a site, send them over one connection within its limits, record outcomes."""

from .models import SendRecord, SiteSendState


def record_delivery(site_id, recipients, sent_at):
    """Count recipients handed to a site's server toward its interval and rolling windows.

    Every message through the server counts, confirmation messages included (providers count them).
    """
    SendRecord.objects.create(site_id=site_id, recipients=recipients, sent_at=sent_at)
    SiteSendState.objects.update_or_create(site_id=site_id, defaults={"last_sent_at": sent_at})
