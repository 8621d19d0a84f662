"""When a site's sender domain is checked, and where the result is kept.

A check runs in the background: after a server is verified, daily for every site that sends
through its own server, and when an editor clicks "Check again". It never touches sending: its
result is a warning in the status panel. Sites whose check would ask the same questions (same
domain, server, selector and blocklists) share a result younger than
``DOMAIN_CHECK_REUSE_SECONDS``, so a platform with many sites of one customer asks DNS once.
"""

from datetime import timedelta

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from . import conf
from .choices import DeliveryMode
from .dns_client import DnsClient
from .domain_check import run_checks
from .mailqueue import queue_task
from .models import DomainCheck, SmtpSettings
from .sender_domain import sender_of
from .signals import server_verified

CHECK_TASK = "wagtail_own_smtp.domain_status.check_site_task"


def sites_to_check():
    """The settings of every site that sends exclusively through its own verified server."""
    return SmtpSettings.objects.filter(
        delivery_mode=DeliveryMode.OWN, verified_at__isnull=False
    ).exclude(verified_host="")


def check_site(smtp_settings, fresh=False):
    """Check the site's verified sender domain and store the result (a shared one when a site
    with the same questions was checked lately, unless ``fresh``).

    Returns the DomainCheck, or None when the site has no verified server to check.
    """
    sender = sender_of(smtp_settings)
    if sender is None:
        return None
    shared = None
    if not fresh:
        since = timezone.now() - timedelta(seconds=conf.get("DOMAIN_CHECK_REUSE_SECONDS"))
        shared = (
            DomainCheck.objects.filter(sender_key=sender.key, checked_at__gte=since)
            .order_by("-checked_at")
            .first()
        )
    if shared is not None:
        lines, checked_at = shared.lines, shared.checked_at
    else:
        lines = [line.as_dict() for line in run_checks(sender, DnsClient.from_settings())]
        checked_at = timezone.now()
    check, _created = DomainCheck.objects.update_or_create(
        site_id=smtp_settings.site_id,
        defaults={
            "domain": sender.domain,
            "sender_key": sender.key,
            "checked_at": checked_at,
            "lines": lines,
        },
    )
    return check


# -- django-q2 entry points: primary keys only, safe to run twice ------------------------------


def check_site_task(site_pk, fresh=False):
    """Check one site's sender domain (queued after verification and by "Check again")."""
    smtp_settings = SmtpSettings.objects.filter(site_id=site_pk).first()
    check = smtp_settings and check_site(smtp_settings, fresh=fresh)
    return check and [(line["check"], line["status"]) for line in check.lines]


def check_all_task():
    """Queue one check per site that sends through its own server (``tasks.DOMAINS_TASK``,
    daily): each runs within its own deadline, so no task outlives the cluster's timeout however
    many sites there are."""
    site_pks = list(sites_to_check().values_list("site_id", flat=True))
    for site_pk in site_pks:
        check_soon(site_pk)
    return len(site_pks)


def check_soon(site_pk, fresh=False):
    return queue_task(CHECK_TASK, site_pk, fresh, task_name="wagtail_own_smtp domain check")


def check_after_commit(site_pk, fresh=False):
    """Queue a check once the current transaction commits (at once outside one).

    robust: a broker that is down must not turn a committed confirmation into an error; the
    daily schedule checks the site later.
    """

    def check_once_committed():  # named: Django logs a robust callback's failure by its name
        check_soon(site_pk, fresh)

    transaction.on_commit(check_once_committed, robust=True)


@receiver(server_verified, dispatch_uid="wagtail_own_smtp.domain_check")
def check_verified_server(sender, settings, **kwargs):
    """``server_verified`` receiver: check the domain of the server just confirmed."""
    check_after_commit(settings.site_id, fresh=True)


def settings_saved(smtp_settings):
    """After the settings form was saved: check again when the questions changed (a new DKIM
    selector, say), or when a verified site was never checked."""
    sender = sender_of(smtp_settings)
    if sender is None:
        return
    checked = DomainCheck.objects.filter(site_id=smtp_settings.site_id)
    if checked.values_list("sender_key", flat=True).first() != sender.key:
        check_after_commit(smtp_settings.site_id, fresh=True)
