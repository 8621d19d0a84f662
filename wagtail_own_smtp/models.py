"""The site setting an editor fills in, and the outbox the dispatcher drains."""

import json
from typing import NamedTuple

from django.conf import settings as django_settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from wagtail.contrib.settings.models import BaseSiteSetting, register_setting
from wagtail.models import Site

from . import crypto

# Django finds a model through this module: the bounce models live in their own.
from .bounce_models import Bounce, MailboxState, Suppression  # noqa: F401
from .choices import (
    SIGN_IN_METHODS,
    AuthMethod,
    DeliveryMode,
    Lane,
    MailboxSecurity,
    MessageStatus,
    Security,
    VerificationStatus,
)
from .dispatch_models import DispatchRequest  # noqa: F401
from .domain_models import DomainCheck  # noqa: F401

MAX_PER_HOUR = 1_000_000
MAX_PER_DAY = 10_000_000
MAX_INTERVAL_SECONDS = 86_400


class ServerFields(NamedTuple):
    """A site's server as saved, or as confirmed (the ``verified_*`` copy of each field).

    These are the parameters a confirmation proves; the field names are the saved ones.
    """

    host: str
    port: int
    security: str
    from_email: str
    username: str
    auth_method: str
    oauth_tenant: str
    oauth_client_id: str
    password_ciphertext: bytes


# Each saved server field and its confirmed copy, which the dispatcher sends through and only
# confirming a link writes.
VERIFIED_FIELDS = {name: f"verified_{name}" for name in ServerFields._fields}
# Where a login secret is stored: as saved and as confirmed.
SECRET_FIELDS = ("password_ciphertext", VERIFIED_FIELDS["password_ciphertext"])


@register_setting(icon="mail")
class SmtpSettings(BaseSiteSetting):
    """A site's own SMTP server.

    The editable fields hold the parameters as last saved. The ``verified_*`` fields hold the
    parameters the editor last confirmed by link: the dispatcher sends only through those, so a
    change that awaits confirmation never interrupts sending through the earlier server.
    """

    delivery_mode = models.CharField(
        _("delivery"), max_length=16, choices=DeliveryMode.choices, default=DeliveryMode.PLATFORM
    )
    host = models.CharField(
        _("SMTP host"),
        max_length=253,
        blank=True,
        help_text=_("Host name or IP address of your mail server, e.g. smtp.example.org."),
    )
    port = models.PositiveIntegerField(
        _("port"),
        default=587,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text=_("Typical: 587 (STARTTLS), 465 (SSL/TLS), 25 (no encryption)."),
    )
    security = models.CharField(
        _("encryption"), max_length=16, choices=Security.choices, default=Security.STARTTLS
    )
    from_email = models.EmailField(
        _("sender address"),
        blank=True,
        help_text=_(
            "All mail of this site is sent from this address. It must be able to "
            "receive the confirmation link."
        ),
    )
    from_name = models.CharField(
        _("sender name"),
        max_length=200,
        blank=True,
        help_text=_("Optional display name shown with the sender address."),
    )
    username = models.CharField(
        _("username"),
        max_length=254,
        blank=True,
        help_text=_("Often the sender address. Leave blank if the server needs no login."),
    )
    auth_method = models.CharField(
        _("login"),
        max_length=16,
        choices=AuthMethod.choices,
        default=AuthMethod.PASSWORD,
    )
    oauth_tenant = models.CharField(
        _("tenant ID"),
        max_length=100,
        blank=True,
        help_text=_("Microsoft 365: the directory (tenant) ID or the organisation's domain."),
    )
    oauth_client_id = models.CharField(
        _("client ID"),
        max_length=200,
        blank=True,
        help_text=_("Microsoft 365 app registration: the application (client) ID."),
    )
    # Fernet token of the login secret, never stored in plain text (see crypto.py): the password,
    # the app registration's client secret, or the refresh token of a signed-in account.
    password_ciphertext = models.BinaryField(blank=True, default=b"", editable=False)
    # Bumped on every secret change, so the fingerprint notices it without touching the secret.
    # A refresh token the provider rotates replaces the ciphertext without a bump.
    password_version = models.PositiveIntegerField(default=0, editable=False)
    min_interval = models.DecimalField(
        _("minimum interval"),
        max_digits=8,
        decimal_places=3,
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(MAX_INTERVAL_SECONDS)],
        help_text=_("Seconds between two messages; 0 = no minimum."),
    )
    max_per_hour = models.PositiveIntegerField(
        _("maximum per hour"),
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_PER_HOUR)],
        help_text=_("Recipients per rolling hour; blank = unlimited."),
    )
    max_per_day = models.PositiveIntegerField(
        _("maximum per day"),
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_PER_DAY)],
        help_text=_("Recipients per rolling 24 hours; blank = unlimited."),
    )
    # The sender-domain check looks for its key at <selector>._domainkey.<sender domain>.
    dkim_selector = models.CharField(
        _("DKIM selector"),
        max_length=63,
        blank=True,
        validators=[RegexValidator(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")],
        help_text=_(
            "Optional: the selector your server signs mail with, e.g. “mail” for "
            "mail._domainkey.example.org. Not needed for Microsoft 365 and Google."
        ),
    )

    # Bounces: the sender's mailbox, read with the verified login (see bounces.py).
    bounce_processing = models.BooleanField(
        _("read bounces from the sender's mailbox"),
        default=False,
        help_text=_(
            "Delivery reports are read from the sender's mailbox over IMAP, shown in the outbox, "
            "and addresses that bounce are no longer mailed. Other mail stays untouched."
        ),
    )
    imap_host = models.CharField(
        _("IMAP host"),
        max_length=253,
        blank=True,
        help_text=_("The server of the sender's mailbox, e.g. outlook.office365.com."),
    )
    imap_port = models.PositiveIntegerField(
        _("IMAP port"),
        default=993,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text=_("Usually 993 (SSL/TLS) or 143 (STARTTLS)."),
    )
    imap_security = models.CharField(
        _("IMAP encryption"),
        max_length=16,
        choices=MailboxSecurity.choices,
        default=MailboxSecurity.SSL,
        help_text=_("The login never travels unencrypted."),
    )
    imap_folder = models.CharField(
        _("folder to read"),
        max_length=200,
        default="INBOX",
        help_text=_("Where delivery reports arrive; usually INBOX."),
    )
    imap_move_to = models.CharField(
        _("folder for recognised reports"),
        max_length=200,
        blank=True,
        help_text=_("Blank: recognised reports stay where they are and are marked as read."),
    )

    # Read-only state.
    verification_status = models.CharField(
        _("verification"),
        max_length=16,
        choices=VerificationStatus.choices,
        default=VerificationStatus.UNVERIFIED,
        editable=False,
    )
    last_error = models.TextField(_("last server reply"), blank=True, editable=False)
    # JSON {language: hint} (``hints.stored_hint``); read it as ``error_hint``.
    last_error_hint = models.TextField(blank=True, editable=False)
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True, editable=False)
    # Sending is paused after an AUTH, sender or TLS failure of the verified server.
    sending_paused = models.BooleanField(default=False, editable=False)

    # The pending confirmation: a hash of the token, and the fingerprint of the parameters it
    # was sent for (a later change voids it).
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    token_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    token_sent_at = models.DateTimeField(null=True, blank=True, editable=False)

    # The confirmed parameters the dispatcher uses.
    verified_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    verified_host = models.CharField(max_length=253, blank=True, editable=False)
    verified_port = models.PositiveIntegerField(null=True, blank=True, editable=False)
    verified_security = models.CharField(max_length=16, blank=True, editable=False)
    verified_from_email = models.EmailField(blank=True, editable=False)
    verified_username = models.CharField(max_length=254, blank=True, editable=False)
    verified_password_ciphertext = models.BinaryField(blank=True, default=b"", editable=False)
    verified_auth_method = models.CharField(
        max_length=16, choices=AuthMethod.choices, default=AuthMethod.PASSWORD, editable=False
    )
    verified_oauth_tenant = models.CharField(max_length=100, blank=True, editable=False)
    verified_oauth_client_id = models.CharField(max_length=200, blank=True, editable=False)

    # ``panels`` and ``base_form_class`` are set in apps.py: this module imports no admin code.

    class Meta:
        verbose_name = _("Own SMTP server")
        verbose_name_plural = _("Own SMTP servers")

    def __str__(self):
        return str(_("Own SMTP server of %(site)s") % {"site": self.site})

    @property
    def has_password(self):
        return bool(self.password_ciphertext)

    @property
    def uses_oauth(self):
        return self.auth_method != AuthMethod.PASSWORD

    @property
    def uses_sign_in(self):
        return self.auth_method in SIGN_IN_METHODS

    def set_password(self, plaintext):
        """Store a new login secret encrypted ("" removes it): password, client secret or
        refresh token."""
        self.password_ciphertext = crypto.encrypt(plaintext)
        self.password_version += 1

    def server(self, verified=False):
        """The server as saved, or as confirmed with ``verified`` (see ``ServerFields``)."""
        values = {
            name: getattr(self, confirmed if verified else name)
            for name, confirmed in VERIFIED_FIELDS.items()
        }
        # PostgreSQL hands a BinaryField back as a memoryview.
        values["password_ciphertext"] = bytes(values["password_ciphertext"] or b"")
        return ServerFields(**values)

    def confirmed_copy(self):
        """The saved server under its ``verified_*`` names: what confirming it writes."""
        return {VERIFIED_FIELDS[name]: value for name, value in self.server()._asdict().items()}

    set_password.alters_data = True

    @property
    def has_verified_server(self):
        return bool(self.verified_host) and self.verified_at is not None

    @property
    def error_hint(self):
        """The hint to the last failure in the current language ("" when there is none)."""
        try:
            texts = json.loads(self.last_error_hint or "{}")
        except ValueError:
            return self.last_error_hint  # stored before hints were kept per language
        if not isinstance(texts, dict):
            return self.last_error_hint
        language = translation.get_language() or django_settings.LANGUAGE_CODE
        for code in (language, language.split("-")[0], django_settings.LANGUAGE_CODE):
            if code in texts:
                return texts[code]
        return next(iter(texts.values()), "")

    @property
    def sends_own(self):
        return self.delivery_mode == DeliveryMode.OWN


class OutboundMessage(models.Model):
    """One message in a site's outbox: the raw RFC 5322 bytes and the envelope, never a pickle."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(
        _("status"), max_length=16, choices=MessageStatus.choices, default=MessageStatus.QUEUED
    )
    lane = models.CharField(_("lane"), max_length=8, choices=Lane.choices, default=Lane.NORMAL)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    envelope_from = models.CharField(max_length=254, blank=True)
    recipients = models.JSONField(_("recipients"), default=list)
    recipient_count = models.PositiveIntegerField(default=1)
    raw_message = models.BinaryField()
    size = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(_("queued at"), auto_now_add=True, db_index=True)
    next_attempt_at = models.DateTimeField(_("next attempt"))
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    last_error = models.TextField(_("last server reply"), blank=True)

    # Set while a worker holds the message; a worker that dies lets it expire.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Which dispatch run claimed it (so a run only releases its own claims).
    claimed_by = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        verbose_name = _("outbound message")
        verbose_name_plural = _("outbound messages")
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="own_smtp_due_idx"),
            models.Index(
                fields=["site", "status", "next_attempt_at"], name="own_smtp_site_due_idx"
            ),
            # claims take a site's normal lane first: one probe per lane
            models.Index(
                fields=["site", "lane", "status", "next_attempt_at"], name="own_smtp_lane_due_idx"
            ),
        ]

    def __str__(self):
        return self.subject or f"#{self.pk}"


class SiteSendState(models.Model):
    """Per-site dispatch state shared by all workers: the site lease and the last send time."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="+", primary_key=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    # A server's throttle or quota: the site sends nothing until then (see backoff.py).
    backoff_until = models.DateTimeField(null=True, blank=True)
    backoff_reply = models.TextField(blank=True)
    backoff_hint = models.TextField(blank=True)

    def __str__(self):
        return f"send state of site {self.site_id}"


class SendRecord(models.Model):
    """Recipients handed to a site's server at one moment: the rolling hour and day windows."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    sent_at = models.DateTimeField()
    recipients = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["site", "sent_at"], name="own_smtp_window_idx")]

    def __str__(self):
        return f"{self.recipients} recipient(s) at {self.sent_at}"


class AccessToken(models.Model):
    """A cached OAuth access token, encrypted, for the login parameters of one fingerprint."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    # verification.fingerprint() of the parameters the token was issued for.
    fingerprint = models.CharField(max_length=64)
    token_ciphertext = models.BinaryField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "fingerprint"], name="own_smtp_token_unique")
        ]

    def __str__(self):
        return f"access token of site {self.site_id} until {self.expires_at}"
