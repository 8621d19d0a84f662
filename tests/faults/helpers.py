"""Queueing, counting what arrived (every figure is taken at the SMTP server, by Message-ID),
starting clusters."""

from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

from django.core import mail
from django.core.mail import EmailMessage
from django.utils import timezone

from tests.delivery_helpers import make_site, start_manage, stop_process, wait_until
from wagtail_own_smtp import using_site
from wagtail_own_smtp.models import OutboundMessage, SiteSendState

SENDER = "surveys@platform.example"


def queue(count, prefix="m", site=None):
    """Queue ``count`` one-recipient messages in one go (one transaction, one dispatch task), as
    ``site``'s mail (by default the default site's)."""
    messages = [
        EmailMessage(f"{prefix}{i}", f"Body {i}", SENDER, [f"{prefix}{i}@ex.org"])
        for i in range(count)
    ]
    with using_site(site or make_site()):
        return mail.get_connection().send_messages(messages)


def _unique_part(message_id):
    # The dispatcher may rewrite a local Message-ID domain; the unique part stays.
    return message_id.strip().strip("<>").rpartition("@")[0]


def stored_ids(**filters):
    ids = []
    rows = OutboundMessage.objects.filter(**filters).order_by("pk").values_list("raw_message")
    for (raw,) in rows:
        parsed = message_from_bytes(bytes(raw), policy=policy.default)
        ids.append(_unique_part(parsed["Message-ID"]))
    return ids


def tally(received, expected_ids):
    """queued, sent (distinct at the server), lost, duplicated: the figures of a scenario."""
    arrived = Counter(_unique_part(item.message["Message-ID"]) for item in received)
    expected = set(expected_ids)
    return {
        "queued": len(expected_ids),
        "sent": len(expected & set(arrived)),
        "lost": len(expected - set(arrived)),
        "duplicated": sum(count - 1 for count in arrived.values()),
        "unexpected": len(set(arrived) - expected),
    }


def start_cluster(env, log_path, timeout=60):
    """Start `manage.py qcluster` (its own process group) and wait until it runs."""
    cluster = start_manage(["qcluster"], env, log_path)
    started = wait_until(
        lambda: "running." in Path(log_path).read_text(errors="replace"),
        timeout=timeout,
        interval=0.2,
    )
    if not started:
        raise AssertionError(stop_process(cluster))
    return cluster


def lease_free(site):
    """The site's lease is free or expired (a killed dispatcher's lease ran out)."""
    state = SiteSendState.objects.filter(site=site).first()
    expires = state.lease_expires_at if state else None
    return expires is None or expires < timezone.now()
