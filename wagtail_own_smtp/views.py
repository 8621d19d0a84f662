"""Public confirmation view and the status panel's admin actions, with the OAuth sign-in."""

import ipaddress
import math
import secrets
import time

from authlib.common.security import generate_token
from django.conf import settings as django_settings
from django.contrib import messages as django_messages
from django.core.cache import caches
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import translation
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from wagtail.admin import messages
from wagtail.models import Site

from . import conf, crypto, oauth, servers, transport, verification
from .models import SmtpSettings
from .oauth import PROVIDER_NAMES


def settings_edit_url(site_pk):
    meta = SmtpSettings._meta
    return reverse("wagtailsettings:edit", args=[meta.app_label, meta.model_name, site_pk])


def user_can_change(user, site):
    """The check Wagtail's settings EditView makes for a site setting."""
    policy = SmtpSettings.get_permission_policy()
    return policy.user_has_permission_for_instance(user, "change", site)


# -- public: the confirmation link -------------------------------------------------------------

_LINK_PROBLEMS = {
    verification.InvalidLink.UNKNOWN: (
        404,
        gettext_lazy(
            "This confirmation link is not valid. It may have been used already, or a newer "
            "confirmation message replaced it."
        ),
    ),
    verification.InvalidLink.EXPIRED: (
        410,
        gettext_lazy(
            "This confirmation link has expired. Send the confirmation again from the settings."
        ),
    ),
    verification.InvalidLink.CHANGED: (
        410,
        gettext_lazy(
            "The server settings changed after this link was sent, so it no longer applies. "
            "Use the link in the newest confirmation message."
        ),
    ),
}


def reader_language(request, site=None):
    """The language of the public confirmation pages: the editor's admin language when signed in,
    else the site's (the language of the message that carried the link)."""
    user = request.user
    if user.is_authenticated and hasattr(user, "wagtail_userprofile"):
        return user.wagtail_userprofile.get_preferred_language()
    if site is not None:
        return verification.site_language(site)
    return translation.get_language()


def _render_in(language, response):
    # A TemplateResponse renders after the view returns: render it while the language is active.
    with translation.override(language):
        return response.render()


def _invalid_link(request, problem):
    status, text = _LINK_PROBLEMS[problem.reason]
    if problem.reason == verification.InvalidLink.UNKNOWN:
        if (refused := _too_many_wrong_links(request)) is not None:
            return refused
        _count_wrong_link(request)
    return _render_in(
        reader_language(request),
        TemplateResponse(
            request, "wagtail_own_smtp/verify_invalid.html", {"problem": text}, status=status
        ),
    )


# -- a per-client limit on wrong links ---------------------------------------------------------
# A token cannot be guessed (256 bits), but a client trying many is refused for a while all the
# same, and the logs show who tried. Only misses count and only misses are refused: a valid link
# always works (one office behind one address must not be locked out by a colleague's typo), and
# expired or voided links do not count (only someone who received the real token can open one).


def _client_key(request):
    """The cache key of the client: its IPv4 address, or its IPv6 /64 (one subscriber's share)."""
    address = request.META.get("REMOTE_ADDR") or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        client = address[:64]
    else:
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        client = str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
    return f"wagtail_own_smtp:wrong-links:{client}"


def _failure_cache():
    return caches[conf.get("VERIFY_FAILURE_CACHE")]


def _count_wrong_link(request):
    if not conf.get("VERIFY_FAILURE_LIMIT"):
        return
    cache, key = _failure_cache(), _client_key(request)
    # The window starts with the first wrong link; add() is atomic, so racing requests count once.
    if not cache.add(key, 1, conf.get("VERIFY_FAILURE_WINDOW")):
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.add(key, 1, conf.get("VERIFY_FAILURE_WINDOW"))


def _too_many_wrong_links(request):
    """A 429 page when this client opened too many wrong links in the window, else None."""
    limit = conf.get("VERIFY_FAILURE_LIMIT")
    if not limit or (_failure_cache().get(_client_key(request)) or 0) < limit:
        return None
    window = int(conf.get("VERIFY_FAILURE_WINDOW"))
    text = _(
        "Too many invalid confirmation links were opened from your network. Wait "
        "%(minutes)s minutes, then open the link from the newest confirmation message again."
    ) % {"minutes": max(1, math.ceil(window / 60))}
    response = _render_in(
        reader_language(request),
        TemplateResponse(
            request, "wagtail_own_smtp/verify_invalid.html", {"problem": text}, status=429
        ),
    )
    response["Retry-After"] = str(window)
    return response


@never_cache
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def verify(request, token):
    """GET shows what the link activates and changes nothing; POST activates it.

    No login: the token, delivered to the sender's mailbox through the new server, is the proof.
    A client that opened too many wrong links gets 429 for a while for further wrong ones.
    """
    if request.method == "POST":
        try:
            smtp_settings = verification.confirm(token)
        except verification.InvalidLink as problem:
            return _invalid_link(request, problem)
        language = reader_language(request, smtp_settings.site)
        with translation.override(language):
            messages.success(request, _("The new server settings are now active."))
        # An editor who may change the setting sees it verified in the admin; anyone else gets
        # a small public page with the same green message.
        if user_can_change(request.user, smtp_settings.site):
            return redirect(settings_edit_url(smtp_settings.site_id))
        # The page after the redirect has no token to find the site by: it gets the language.
        return redirect(f"{reverse('wagtail_own_smtp:verified')}?language={language}")

    try:
        smtp_settings = verification.pending_for(token)
    except verification.InvalidLink as problem:
        return _invalid_link(request, problem)
    return _render_in(
        reader_language(request, smtp_settings.site),
        TemplateResponse(
            request,
            "wagtail_own_smtp/verify_confirm.html",
            {
                "settings": smtp_settings,
                "site_name": smtp_settings.site.site_name or smtp_settings.site.hostname,
                "security": smtp_settings.get_security_display(),
            },
        ),
    )


@never_cache
@require_GET
def verified(request):
    language = request.GET.get("language")
    if language not in dict(django_settings.LANGUAGES):
        language = reader_language(request, Site.find_for_request(request))
    return _render_in(
        language,
        TemplateResponse(request, "wagtail_own_smtp/verified.html", {}),
    )


# -- admin: the status panel's buttons ---------------------------------------------------------


def _settings_for_change(request, site_pk):
    site = get_object_or_404(Site, pk=site_pk)
    if not user_can_change(request.user, site):
        raise PermissionDenied
    return SmtpSettings.for_site(site)


def error_with_hint(request, text, hint=""):
    """A red admin message; the hint, where one is known, on a line of its own below it."""
    detail = hint and format_html('<span class="w-block w-mt-1" data-own-smtp-hint>{}</span>', hint)
    django_messages.error(request, messages.render(text, None, detail=detail))


def add_failure_message(request, intro, failure):
    """The server's original reply, verbatim, and the hint where one is known."""
    text = _("%(intro)s The server answered: %(reply)s") % {"intro": intro, "reply": failure.text}
    error_with_hint(request, text, failure.hint)


def add_confirmation_messages(request, result):
    """Turn a ConfirmationResult into an admin message (red either way, as on the help page)."""
    if result.sent:
        messages.error(
            request,
            _(
                "A test message with a confirmation link was sent to %(address)s. The new "
                "settings take effect once you click the link in it."
            )
            % {"address": result.recipient},
        )
    else:
        add_failure_message(request, _("The test message could not be sent."), result.failure)


def _incomplete_message(request, smtp_settings):
    if smtp_settings.uses_sign_in and not smtp_settings.has_password:
        messages.error(request, _("Click “Connect account” and sign in first."))
    else:
        messages.error(request, _("Enter and save the SMTP host and the sender address first."))


@require_POST
def resend_confirmation(request, site_pk):
    smtp_settings = _settings_for_change(request, site_pk)
    if not verification.is_complete(smtp_settings):
        _incomplete_message(request, smtp_settings)
    else:
        add_confirmation_messages(
            request, verification.send_confirmation(smtp_settings, request=request)
        )
    return redirect(settings_edit_url(site_pk))


@require_POST
def test_connection(request, site_pk):
    """Connect, TLS, AUTH, MAIL FROM / RCPT TO, RSET: nothing is sent, nothing is counted."""
    smtp_settings = _settings_for_change(request, site_pk)
    if not verification.is_complete(smtp_settings):
        _incomplete_message(request, smtp_settings)
        return redirect(settings_edit_url(site_pk))
    try:
        transport.test_connection(servers.current_params(smtp_settings))
    except crypto.UndecryptablePassword:
        messages.error(
            request,
            _("The stored password cannot be decrypted with the configured keys. Enter it again."),
        )
    except transport.SmtpFailure as failure:
        add_failure_message(request, _("The connection test failed."), failure)
    else:
        messages.success(
            request,
            _(
                "The connection to %(host)s:%(port)s works: the server accepted the login and "
                "the sender address. Nothing was sent."
            )
            % {"host": smtp_settings.host, "port": smtp_settings.port},
        )
    return redirect(settings_edit_url(site_pk))


# -- admin: signing in with Microsoft 365 or Google ("Connect account") -------------------------
# One fixed callback URL for every site: providers accept only redirect URIs registered with the
# platform's app. The session carries which site a sign-in is for, with its state and PKCE
# verifier; an answer whose state the session does not hold is refused.

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
    smtp_settings = _settings_for_change(request, site_pk)
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
    smtp_settings = _settings_for_change(request, site_pk)
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
