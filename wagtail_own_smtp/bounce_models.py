"""What the bounce handling keeps: how far each mailbox was read, the reports, the suppressions."""

from django.db import models
from django.utils.translation import gettext_lazy as _
from wagtail.models import Site

from .choices import BounceKind


class MailboxState(models.Model):
    """How far a site's mailbox has been read: IMAP numbers anew when UIDVALIDITY changes."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="+", primary_key=True)
    uidvalidity = models.BigIntegerField(default=0)
    last_uid = models.BigIntegerField(default=0)
    read_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    too_large = models.PositiveIntegerField(default=0)  # messages left alone for their size

    def __str__(self):
        return f"mailbox state of site {self.site_id}"


class Bounce(models.Model):
    """A delivery report about a message of the site, for one of its recipients."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(
        "OutboundMessage", on_delete=models.SET_NULL, null=True, related_name="bounces"
    )
    recipient = models.CharField(_("recipient"), max_length=254)
    kind = models.CharField(_("kind"), max_length=16, choices=BounceKind.choices)
    status_code = models.CharField(_("status code"), max_length=16, blank=True)
    diagnostic = models.TextField(_("remote server's reply"), blank=True)
    report = models.TextField(_("report"), blank=True)  # the report itself, size-capped
    report_key = models.CharField(max_length=64)  # the same report read twice counts once
    received_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("bounce")
        verbose_name_plural = _("bounces")
        constraints = [
            models.UniqueConstraint(
                fields=["site", "report_key", "recipient"], name="own_smtp_bounce_once"
            )
        ]
        indexes = [models.Index(fields=["site", "recipient"], name="own_smtp_bounce_rcpt_idx")]

    def __str__(self):
        return f"{self.kind} bounce of {self.recipient}"


class Suppression(models.Model):
    """An address the site no longer mails, until an editor lifts it."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    address = models.CharField(_("address"), max_length=254)  # lower case
    reason = models.CharField(_("reason"), max_length=16, choices=BounceKind.choices)
    bounce = models.ForeignKey(Bounce, on_delete=models.SET_NULL, null=True, related_name="+")
    since = models.DateTimeField(_("since"), auto_now_add=True)

    class Meta:
        verbose_name = _("suppressed address")
        verbose_name_plural = _("suppressed addresses")
        constraints = [
            models.UniqueConstraint(fields=["site", "address"], name="own_smtp_suppressed_once")
        ]

    def __str__(self):
        return self.address
