"""Signing in with Microsoft 365 or Google ("Connect account") for a site's SMTP login.

One fixed callback URL for every site: providers accept only redirect URIs registered with the
platform's app. The session carries which site a sign-in is for, with its state and PKCE
verifier; an answer whose state the session does not hold is refused.
"""

import secrets
import time

from authlib.common.security import generate_token
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from wagtail.admin import messages

from .. import oauth, transport, verification
from ..oauth import PROVIDER_NAMES
from ..permissions import settings_for_change
from .notices import add_confirmation_messages, error_with_hint, settings_edit_url

_SIGN_INS_KEY = "wagtail_own_smtp_oauth"
_SIGN_INS_KEPT = 5  # sign-ins started in other tabs stay valid, a few at most
_SIGN_IN_MAX_AGE = 900  # seconds from "Connect account" to the provider's answer


def _callback_uri(request):
    return request.build_absolute_uri(reverse("wagtail_own_smtp_admin:oauth_callback"))


def _sign_in_failed(request, text, hint=""):
    error_with_hint(
        request, _("The account could not be connected. %(reason)s") % {"reason": text}, hint
    )


@require_POST
def oauth_connect(request, site_pk):
    """Send the editor's browser to the provider's sign-in page for the saved sign-in method."""
    smtp_settings = settings_for_change(request.user, site_pk)
    if not smtp_settings.uses_sign_in:
        messages.error(
            request, _("Choose a sign-in login (Microsoft 365 or Google) and save it first.")
        )
        return redirect(settings_edit_url(site_pk))
    provider = oauth.PROVIDER_OF[smtp_settings.auth_method]
    if not oauth.is_configured(provider):
        messages.error(
            request,
            _(
                "Signing in with %(provider)s is not set up on this platform. Its administrator "
                "registers an app and enters it in the setting WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS."
            )
            % {"provider": PROVIDER_NAMES[provider]},
        )
        return redirect(settings_edit_url(site_pk))
    state, verifier = secrets.token_urlsafe(32), generate_token(48)
    try:
        url = oauth.authorization_url(
            provider,
            _callback_uri(request),
            state,
            verifier,
            tenant=smtp_settings.oauth_tenant,
            login_hint=smtp_settings.username or smtp_settings.from_email,
        )
    except transport.SmtpFailure as failure:
        _sign_in_failed(request, failure.text, failure.hint)
        return redirect(settings_edit_url(site_pk))
    now = time.time()
    pending = {
        key: value
        for key, value in request.session.get(_SIGN_INS_KEY, {}).items()
        if now - value.get("started", 0) < _SIGN_IN_MAX_AGE
    }
    pending[state] = {
        "site_pk": smtp_settings.site_id,
        "verifier": verifier,
        "provider": provider,
        "tenant": smtp_settings.oauth_tenant,
        "started": now,
    }
    newest = sorted(pending.items(), key=lambda item: item[1]["started"])[-_SIGN_INS_KEPT:]
    request.session[_SIGN_INS_KEY] = dict(newest)
    return redirect(url)


@never_cache
@require_GET
def oauth_callback(request):
    """The provider's answer: store the refresh token, then send the confirmation message."""
    pending = request.session.get(_SIGN_INS_KEY, {})
    started = pending.pop(request.GET.get("state", ""), None)
    request.session[_SIGN_INS_KEY] = pending  # each state is used once
    if started is None or time.time() - started["started"] >= _SIGN_IN_MAX_AGE:
        _sign_in_failed(
            request,
            _(
                "This answer from the sign-in page belongs to no sign-in started here, or it was "
                "used already or came too late."
            ),
            _("Click “Connect account” again."),
        )
        if started is None:
            return redirect("wagtailadmin_home")
        return redirect(settings_edit_url(started["site_pk"]))
    site_pk = started["site_pk"]
    smtp_settings = settings_for_change(request.user, site_pk)
    if "error" in request.GET:
        # The provider's words, verbatim: "access_denied: AADSTS65004: User declined ...".
        reply = request.GET["error"]
        if request.GET.get("error_description"):
            reply = f"{reply}: {request.GET['error_description']}"
        _sign_in_failed(request, _("The provider answered: %(reply)s") % {"reply": reply})
        return redirect(settings_edit_url(site_pk))
    if oauth.PROVIDER_OF.get(smtp_settings.auth_method) != started["provider"] or (
        not smtp_settings.uses_sign_in
    ):
        _sign_in_failed(
            request,
            _("The login was changed while you signed in; nothing was stored."),
            _("Click “Connect account” again."),
        )
        return redirect(settings_edit_url(site_pk))
    if not request.GET.get("code"):
        _sign_in_failed(
            request,
            _("The provider returned no authorization code."),
            _("Click “Connect account” again."),
        )
        return redirect(settings_edit_url(site_pk))
    try:
        refresh_token = oauth.exchange_code(
            started["provider"],
            _callback_uri(request),
            request.GET["code"],
            started["verifier"],
            tenant=started["tenant"],
        )
    except transport.SmtpFailure as failure:
        _sign_in_failed(request, failure.text, failure.hint)
        return redirect(settings_edit_url(site_pk))
    smtp_settings.set_password(refresh_token)
    smtp_settings.save(update_fields=["password_ciphertext", "password_version"])
    messages.success(request, _("The account is connected."))
    # As after saving the settings: a new login is confirmed by link before mail uses it.
    result = verification.settings_saved(smtp_settings, request=request)
    if result is not None:
        add_confirmation_messages(request, result)
    return redirect(settings_edit_url(site_pk))
