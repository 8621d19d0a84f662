"""The values the app's fields take, one place each (models, forms, panels and queries use them)."""

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class DeliveryMode(models.TextChoices):
    PLATFORM = "platform", _("Send via the platform's mail service")
    OWN = "own", _("Send exclusively via own mail server")


class Security(models.TextChoices):
    # A context of our own: Wagtail translates the bare word differently, and its catalogue wins
    # when the app comes after it in INSTALLED_APPS (as the README wires it).
    NONE = "none", pgettext_lazy("own smtp encryption", "None")
    STARTTLS = "starttls", _("STARTTLS")
    SSL = "ssl", _("SSL/TLS")


class AuthMethod(models.TextChoices):
    PASSWORD = "password", _("Password")
    MICROSOFT_APP = "microsoft_app", _("Microsoft 365: app registration (OAuth)")
    MICROSOFT = "microsoft", _("Microsoft 365: sign in (OAuth)")
    GOOGLE = "google", _("Google Workspace / Gmail: sign in (OAuth)")


# Methods whose secret is a refresh token the editor gets by signing in ("Connect account").
SIGN_IN_METHODS = (AuthMethod.MICROSOFT, AuthMethod.GOOGLE)


class MailboxSecurity(models.TextChoices):
    SSL = "ssl", _("SSL/TLS")
    STARTTLS = "starttls", _("STARTTLS")


class VerificationStatus(models.TextChoices):
    UNVERIFIED = "unverified", _("Not verified")
    PENDING = "pending", _("Waiting for confirmation")
    VERIFIED = "verified", _("Verified")
    FAILED = "failed", _("Failed")


class MessageStatus(models.TextChoices):
    QUEUED = "queued", pgettext_lazy("own smtp message status", "Queued")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    DEFERRED = "deferred", _("Deferred")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", pgettext_lazy("own smtp message status", "Cancelled")


class Lane(models.TextChoices):
    """A site's two lanes: at each slot a due normal message goes before any bulk one."""

    NORMAL = "normal", pgettext_lazy("own smtp lane", "Normal")
    BULK = "bulk", pgettext_lazy("own smtp lane", "Bulk")


class BounceKind(models.TextChoices):
    HARD = "hard", _("Hard bounce")
    SOFT = "soft", _("Soft bounce")
    COMPLAINT = "complaint", _("Complaint")


# Statuses of a message that still waits to go out.
WAITING = (MessageStatus.QUEUED, MessageStatus.DEFERRED, MessageStatus.SENDING)


class DomainCheckStatus(models.TextChoices):
    """How one line of the sender-domain check came out (domain_check.py)."""

    PASS = "pass", _("Passes")
    ATTENTION = "attention", _("Needs attention")
    UNKNOWN = "unknown", _("Could not check")
