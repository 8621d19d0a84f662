"""Bounces: delivery reports read back from a site's sender mailbox, matched to the site's own
messages, recorded, and the addresses that bounce suppressed for that site.

Every message the dispatcher sends carries ``REFERENCE_HEADER``: the message's number and a MAC
of it with its site. A report counts only when the returned message carries a reference that is
valid for the site whose mailbox it came from, and names one of that message's recipients, so a
forged report cannot suppress another site's recipient, or anyone at will.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from . import conf, servers, signals
from .bounce_reports import COMPLAINT, HARD, SOFT, read_report
from .choices import MessageStatus
from .mailbox import Mailbox, MailboxFailure, MailboxParams
from .models import Bounce, MailboxState, OutboundMessage, SmtpSettings, Suppression

logger = logging.getLogger(__name__)

REFERENCE_HEADER = "X-Own-SMTP-Ref"
MAX_STORED_REPORT = 64 * 1024  # characters of a report the editor can read
_SALT = "wagtail_own_smtp.bounces.reference"


def reference(site_id, message_pk, secret=None):
    """The value of ``REFERENCE_HEADER`` for a message: ``<pk>.<MAC>``."""
    mac = salted_hmac(_SALT, f"{site_id}.{message_pk}", secret=secret, algorithm="sha256")
    return f"{message_pk}.{mac.hexdigest()[:24]}"


def referenced_message(site_id, value):
    """The pk of the site's message a reference names, or None (also for other sites' ones)."""
    number, _dot, _mac = str(value).strip().partition(".")
    if not number.isdigit():
        return None
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if any(
        constant_time_compare(reference(site_id, number, secret), value.strip())
        for secret in secrets
    ):
        return int(number)
    return None


@dataclass
class Reading:
    """What reading one site's mailbox did."""

    site_id: int
    read: int = 0
    bounces: list = field(default_factory=list)
    too_large: int = 0
    failure: str = ""


def mailbox_params(smtp_settings, verified=True):
    """The site's mailbox, opened with the SMTP login: the password, or an access token of the
    same OAuth login (XOAUTH2). The verified login for reading, the saved one for the editor's
    "Test the mailbox"."""
    server = smtp_settings.server(verified)
    password, token_source = servers.login_secret(smtp_settings, verified)
    return MailboxParams(
        host=smtp_settings.imap_host,
        port=smtp_settings.imap_port,
        security=smtp_settings.imap_security,
        username=server.username or server.from_email,
        password=password,
        folder=smtp_settings.imap_folder or "INBOX",
        move_to=smtp_settings.imap_move_to,
        token_source=token_source,
    )


def test_mailbox(smtp_settings):
    """Log in and open the folder read-only: how many messages it holds. Changes nothing."""
    with Mailbox(mailbox_params(smtp_settings, verified=False)) as box:
        return box.count()


def bounce_rate(site_id, days=7):
    """(bounced recipients, sent recipients) of the site's messages sent in the last ``days``."""
    since = timezone.now() - timedelta(days=days)
    sent = OutboundMessage.objects.filter(
        site_id=site_id, status=MessageStatus.SENT, sent_at__gte=since
    )
    recipients = sent.aggregate(total=Sum("recipient_count"))["total"] or 0
    bounced = (
        Bounce.objects.filter(site_id=site_id, message__in=sent)
        .values("message_id", "recipient")
        .distinct()
        .count()
    )
    return bounced, recipients


def readable_settings():
    """Sites whose sender mailbox is read: bounce processing on, a verified login."""
    return SmtpSettings.objects.filter(bounce_processing=True, verified_at__isnull=False).exclude(
        imap_host=""
    )


def read_all():
    """Read every enabled mailbox once; one site's failure never ends another's turn."""
    readings = []
    for smtp_settings in readable_settings():
        try:
            readings.append(read_mailbox(smtp_settings))
        except Exception:
            logger.exception("Reading the mailbox of site %s failed", smtp_settings.site_id)
            readings.append(Reading(smtp_settings.site_id, failure="internal error"))
    return readings


def read_mailbox(smtp_settings, timeout=None):
    """Read the new messages of a site's mailbox: record the reports about its messages, file
    them, and leave everything else exactly as it was (unread, in place)."""
    site_id = smtp_settings.site_id
    state, _created = MailboxState.objects.get_or_create(site_id=site_id)
    reading = Reading(site_id)
    try:
        with Mailbox(mailbox_params(smtp_settings), timeout) as box:
            fetched = box.fetch_new(state.uidvalidity, state.last_uid, conf.get("BOUNCES_PER_RUN"))
            for uid, raw in fetched.messages:
                reading.read += 1
                recorded = record_report(site_id, raw)
                if recorded is not None:
                    reading.bounces.extend(recorded)
                    try:
                        box.file_report(uid)
                    except Exception:  # recorded; filing it is a courtesy to the editor
                        logger.info("Could not file report %s of site %s", uid, site_id)
            reading.too_large = len(fetched.too_large)
            if fetched.failure is not None:
                reading.failure = fetched.failure.text
    except MailboxFailure as failure:
        reading.failure = failure.text
        fetched = None
    _remember(state, fetched, reading)
    return reading


def _remember(state, fetched, reading):
    if fetched is not None:
        state.uidvalidity, state.last_uid = fetched.uidvalidity, fetched.last_uid
        state.too_large += reading.too_large
    state.read_at = timezone.now()
    state.last_error = reading.failure
    state.save()


def record_report(site_id, raw):
    """The bounces a report records for the site, or None when it is not a report about one of
    the site's messages (then nothing changes)."""
    report = read_report(raw)
    if report is None:
        return None
    headers = {name.lower(): value for name, value in report.original_headers}
    pk = referenced_message(site_id, headers.get(REFERENCE_HEADER.lower(), ""))
    message = OutboundMessage.objects.filter(pk=pk, site_id=site_id).first() if pk else None
    if message is None:
        return None
    recipients = {address.lower() for address in message.recipients}
    key = hashlib.sha256(raw).hexdigest()
    recorded = []
    for failure in report.failures:
        recipient = failure.recipient
        if not recipient and failure.kind == COMPLAINT and len(recipients) == 1:
            [recipient] = recipients  # the provider redacted the complainer
        if recipient not in recipients:
            continue
        bounce = _record(site_id, message, recipient, failure, key, raw)
        if bounce is not None:
            recorded.append(bounce)
    return recorded


def _record(site_id, message, recipient, failure, key, raw):
    try:
        with transaction.atomic():
            bounce = Bounce.objects.create(
                site_id=site_id,
                message=message,
                recipient=recipient,
                kind=failure.kind,
                status_code=failure.status,
                diagnostic=failure.diagnostic,
                report=_readable(raw),
                report_key=key,
            )
    except IntegrityError:
        return None  # this report was read before (UIDVALIDITY changed, or a run died)
    if failure.kind in (HARD, COMPLAINT) or _soft_limit_reached(site_id, recipient):
        Suppression.objects.get_or_create(
            site_id=site_id,
            address=recipient,
            defaults={"reason": failure.kind, "bounce": bounce},
        )
    signals.message_bounced.send(sender=OutboundMessage, message=message, bounce=bounce)
    return bounce


def _soft_limit_reached(site_id, recipient):
    """Soft bounces count once a day (as Mailman scores them), within SOFT_BOUNCE_DAYS."""
    since = timezone.now() - timedelta(days=conf.get("SOFT_BOUNCE_DAYS"))
    days = (
        Bounce.objects.filter(
            site_id=site_id, recipient=recipient, kind=SOFT, received_at__gte=since
        )
        .annotate(day=TruncDate("received_at"))
        .values("day")
        .distinct()
        .count()
    )
    return days >= conf.get("SOFT_BOUNCE_LIMIT")


def _readable(raw):
    """The report as text the editor can read: bounded, no NUL (PostgreSQL refuses it)."""
    text = raw[: MAX_STORED_REPORT * 4].decode("utf-8", "replace")[:MAX_STORED_REPORT]
    return text.replace("\x00", "")


def suppressed(site_id, addresses):
    """Those of ``addresses`` (in lower case) the site no longer mails."""
    lowered = {address.lower() for address in addresses}
    found = Suppression.objects.filter(site_id=site_id, address__in=list(lowered))
    return set(found.values_list("address", flat=True))
