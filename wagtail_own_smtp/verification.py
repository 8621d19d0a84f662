"""Proving a server works: the fingerprint of its parameters, the confirmation message and link.

A confirmation is sent through the parameters as saved; the link in it copies them to the
``verified_*`` fields the dispatcher sends through. Until then the earlier verified server, if
any, stays in use. This module is the only writer of the verification state (the status, the
server's last error and hint, the ``verified_*`` fields, the pause the dispatcher asks for).
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from email.headerregistry import Address

from django.conf import settings as django_settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import conf, crypto, servers, transport
from .exceptions import InvalidLink, SmtpFailure
from .hints import stored_hint
from .mailqueue import dispatch_after_commit
from .message import raw_message
from .models import AccessToken, SmtpSettings, VerificationStatus
from .replies import SERVER
from .sendstate import record_delivery
from .servers import fingerprint
from .signals import server_verified

# The verification state written after a save, a confirmation or a failure: never the
# editable fields, so a concurrent edit of the parameters is not overwritten.
STATE_FIELDS = [
    "verification_status",
    "last_error",
    "last_error_hint",
    "token_hash",
    "token_fingerprint",
    "token_sent_at",
]


def is_complete(smtp_settings):
    """Whether a confirmation can be tried: a server, a sender, and for a sign-in method the
    signed-in account (its refresh token)."""
    if smtp_settings.uses_sign_in and not smtp_settings.has_password:
        return False
    return bool(smtp_settings.host and smtp_settings.from_email)


def needs_verification(smtp_settings):
    """Whether the saved parameters are neither verified nor already sent a confirmation.

    ``token_fingerprint`` keeps the parameters last tried even after a failed attempt, so
    saving again unchanged (e.g. only the limits) does not send again; the status panel's
    button does.
    """
    if not is_complete(smtp_settings):
        return False
    current = fingerprint(smtp_settings)
    return current not in (smtp_settings.verified_fingerprint, smtp_settings.token_fingerprint)


@dataclass
class ConfirmationResult:
    """What happened to a confirmation message: sent to ``recipient``, or ``failure``."""

    recipient: str
    failure: SmtpFailure | None = None

    @property
    def sent(self):
        return self.failure is None


def settings_saved(smtp_settings, request=None):
    """Start, or void, a confirmation after the editor saved the settings.

    Returns a ConfirmationResult when a confirmation was attempted, else None.
    """
    if needs_verification(smtp_settings):
        return send_confirmation(smtp_settings, request=request)
    if smtp_settings.sending_paused:
        return None  # the dispatcher's failure stays until the server is confirmed again
    current = fingerprint(smtp_settings)
    if smtp_settings.has_verified_server and current == smtp_settings.verified_fingerprint:
        # Changed back to the verified server: a pending link no longer applies.
        status = VerificationStatus.VERIFIED
    elif not is_complete(smtp_settings):
        status = VerificationStatus.UNVERIFIED
    else:
        return None
    if smtp_settings.verification_status != status or smtp_settings.token_fingerprint:
        _clear_token(smtp_settings)
        smtp_settings.verification_status = status
        smtp_settings.last_error = smtp_settings.last_error_hint = ""
        smtp_settings.save(update_fields=STATE_FIELDS)
    return None


def send_confirmation(smtp_settings, request=None):
    """Send a one-time confirmation link through the saved parameters to the sender address.

    Sent at once, whatever the limits; it counts toward the server's rolling windows.
    """
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    smtp_settings.token_hash = token_digest(token)
    smtp_settings.token_fingerprint = fingerprint(smtp_settings)
    smtp_settings.token_sent_at = now
    smtp_settings.verification_status = VerificationStatus.PENDING
    smtp_settings.last_error = smtp_settings.last_error_hint = ""
    # Stored before sending: the link may be clicked before the server has answered QUIT.
    smtp_settings.save(update_fields=STATE_FIELDS)

    try:
        params = servers.current_params(smtp_settings)
        raw = confirmation_message(smtp_settings, confirmation_link(smtp_settings, token, request))
        # A request (save, "send again", "Connect account") waits no longer than this.
        deadline = time.monotonic() + transport.request_seconds()
        connection = transport.open_connection(params, deadline=deadline)
        try:
            transport.send(connection, params, params.from_email, [params.from_email], raw)
        finally:
            transport.close_quietly(connection)
    except crypto.UndecryptablePassword:
        failure = SmtpFailure(
            SERVER,
            _("The stored password cannot be decrypted with the configured keys."),
            hint=gettext_lazy("Enter the password again and save."),
        )
        return _record_failure(smtp_settings, failure)
    except SmtpFailure as failure:
        return _record_failure(smtp_settings, failure)

    record_delivery(smtp_settings.site_id, 1, timezone.now())
    return ConfirmationResult(recipient=params.from_email)


def pause_sending(smtp_settings, failure):
    """The server refuses the site's mail (AUTH, the sender, TLS, or the stored password cannot
    be decrypted): the dispatcher sends nothing more for the site until an editor fixes and
    confirms its server again; the settings show the server's words and a hint."""
    SmtpSettings.objects.filter(pk=smtp_settings.pk).update(
        sending_paused=True,
        verification_status=VerificationStatus.FAILED,
        last_error=failure.text,
        last_error_hint=stored_hint(failure.hint),
    )


def _record_failure(smtp_settings, failure):
    smtp_settings.verification_status = VerificationStatus.FAILED
    smtp_settings.last_error = failure.text
    smtp_settings.last_error_hint = stored_hint(failure.hint)
    smtp_settings.token_hash = ""
    smtp_settings.token_sent_at = None
    smtp_settings.save(update_fields=STATE_FIELDS)
    return ConfirmationResult(recipient=smtp_settings.from_email, failure=failure)


def _clear_token(smtp_settings):
    smtp_settings.token_hash = ""
    smtp_settings.token_fingerprint = ""
    smtp_settings.token_sent_at = None


def token_digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def link_expires_at(smtp_settings):
    if smtp_settings.token_sent_at is None:
        return None
    return smtp_settings.token_sent_at + timedelta(seconds=conf.get("VERIFICATION_MAX_AGE"))


def confirmation_link(smtp_settings, token, request=None):
    path = reverse("wagtail_own_smtp:verify", args=[token])
    if request is not None:
        return request.build_absolute_uri(path)
    return smtp_settings.site.root_url + path


def site_language(site):
    """The site's default language: its root page's locale with Wagtail i18n, else LANGUAGE_CODE."""
    if getattr(django_settings, "WAGTAIL_I18N_ENABLED", False):
        return site.root_page.locale.language_code
    return django_settings.LANGUAGE_CODE


def sender(smtp_settings):
    """The From header: the sender address with the optional display name."""
    return str(Address(display_name=smtp_settings.from_name, addr_spec=smtp_settings.from_email))


def confirmation_message(smtp_settings, link):
    """The raw RFC 5322 bytes of the confirmation message (text and HTML), never the password."""
    site = smtp_settings.site
    with translation.override(site_language(site)):
        context = {
            "site_name": site.site_name or site.hostname,
            "link": link,
            "expires_at": link_expires_at(smtp_settings),
            "host": smtp_settings.host,
            "port": smtp_settings.port,
            "security": smtp_settings.get_security_display(),
            "from_email": smtp_settings.from_email,
            "username": smtp_settings.username,
        }
        subject = _("Confirm the mail server for %(site)s") % {"site": context["site_name"]}
        text = render_to_string("wagtail_own_smtp/verification_email.txt", context)
        html = render_to_string("wagtail_own_smtp/verification_email.html", context)
    message = EmailMultiAlternatives(
        subject=subject, body=text, from_email=sender(smtp_settings), to=[smtp_settings.from_email]
    )
    message.attach_alternative(html, "text/html")
    return raw_message(message)


def _usable(smtp_settings, digest):
    if smtp_settings is None or not hmac.compare_digest(smtp_settings.token_hash, digest):
        raise InvalidLink(InvalidLink.UNKNOWN)
    expires_at = link_expires_at(smtp_settings)
    if expires_at is None or timezone.now() > expires_at:
        raise InvalidLink(InvalidLink.EXPIRED)
    if fingerprint(smtp_settings) != smtp_settings.token_fingerprint:
        raise InvalidLink(InvalidLink.CHANGED)
    return smtp_settings


def _valid_token_shape(token):
    return isinstance(token, str) and 20 <= len(token) <= 128


def pending_for(token):
    """The settings a link would activate; raises InvalidLink. Changes nothing."""
    if not _valid_token_shape(token):
        raise InvalidLink(InvalidLink.UNKNOWN)
    digest = token_digest(token)
    candidate = SmtpSettings.objects.select_related("site").filter(token_hash=digest).first()
    return _usable(candidate, digest)


def confirm(token):
    """Activate the parameters a link was sent for; single use. Raises InvalidLink."""
    if not _valid_token_shape(token):
        raise InvalidLink(InvalidLink.UNKNOWN)
    digest = token_digest(token)
    with transaction.atomic():
        smtp_settings = _usable(
            SmtpSettings.objects.select_for_update().filter(token_hash=digest).first(), digest
        )
        now = timezone.now()
        activated = {
            "verified_host": smtp_settings.host,
            "verified_port": smtp_settings.port,
            "verified_security": smtp_settings.security,
            "verified_from_email": smtp_settings.from_email,
            "verified_username": smtp_settings.username,
            "verified_password_ciphertext": bytes(smtp_settings.password_ciphertext or b""),
            "verified_auth_method": smtp_settings.auth_method,
            "verified_oauth_tenant": smtp_settings.oauth_tenant,
            "verified_oauth_client_id": smtp_settings.oauth_client_id,
            "verified_fingerprint": smtp_settings.token_fingerprint,
            "verified_at": now,
            "verification_status": VerificationStatus.VERIFIED,
            "last_error": "",
            "last_error_hint": "",
            "sending_paused": False,
            "token_hash": "",
            "token_fingerprint": "",
            "token_sent_at": None,
        }
        # Conditional on the token, so two clicks cannot both succeed on any database.
        if not SmtpSettings.objects.filter(pk=smtp_settings.pk, token_hash=digest).update(
            **activated
        ):
            raise InvalidLink(InvalidLink.UNKNOWN)
        for name, value in activated.items():
            setattr(smtp_settings, name, value)
        # Access tokens of logins no longer in use (the earlier server's) are dropped.
        AccessToken.objects.filter(site_id=smtp_settings.site_id).exclude(
            fingerprint=smtp_settings.verified_fingerprint
        ).delete()
        # Mail that waited for a verified server can go now.
        dispatch_after_commit()
    server_verified.send(sender=SmtpSettings, settings=smtp_settings)
    return smtp_settings
