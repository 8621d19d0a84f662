"""The status panel's "Check again" of the sender-domain check."""

from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from wagtail.admin import messages
from wagtail.models import Site

from ..domain_status import check_after_commit
from ..models import SmtpSettings
from ..permissions import user_can_change
from ..sender_domain import sender_of
from .notices import settings_edit_url

# Clicks on "Check again" within this time queue one check: each asks DNS up to its deadline.
AGAIN_AFTER_SECONDS = 60


@require_POST
def check_again(request, site_pk):
    """Queue a fresh check of the site's verified sender domain (CSRF-protected POST, for users
    who may change the site's setting)."""
    site = get_object_or_404(Site, pk=site_pk)
    if not user_can_change(request.user, site):
        raise PermissionDenied
    sender = sender_of(SmtpSettings.for_site(site))
    if sender is None:
        messages.error(
            request,
            _("The check needs a verified server: save it and click the confirmation link."),
        )
    elif not cache.add(f"wagtail_own_smtp:domain-check:{site.pk}", True, AGAIN_AFTER_SECONDS):
        messages.warning(
            request,
            _("A check of %(domain)s was asked for less than a minute ago; its result comes soon.")
            % {"domain": sender.domain},
        )
    else:
        check_after_commit(site.pk, fresh=True)
        messages.success(
            request,
            _(
                "The check of %(domain)s runs in the background; reload this page in a minute "
                "to see the result."
            )
            % {"domain": sender.domain},
        )
    return redirect(settings_edit_url(site_pk))
