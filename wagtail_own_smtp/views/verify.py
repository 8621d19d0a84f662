"""The public confirmation link: the page it opens, its Confirm button, and the page after.

No login: the token, delivered to the sender's mailbox through the new server, is the proof. The
pages speak the reader's language: the editor's admin language when signed in, else the site's.
"""

import ipaddress
import math

from django.conf import settings as django_settings
from django.core.cache import caches
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_http_methods
from wagtail.admin import messages
from wagtail.models import Site

from .. import conf, verification
from ..permissions import user_can_change
from .notices import settings_edit_url
from .reports import site_name

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
                "site_name": site_name(smtp_settings),
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
