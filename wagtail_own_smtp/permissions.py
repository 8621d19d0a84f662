"""Who may see and act on which site's SMTP setting, outbox, bounces and suppressions.

One rule for every admin screen of the app: a user acts on a site's mail when they may change
that site's "Own SMTP server" setting (the setting's per-site permission policy, the check
Wagtail's own settings edit view makes), and sees nothing of the other sites.
"""

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from wagtail.models import Site

from .models import SmtpSettings


def settings_permission_policy():
    """The SMTP setting's permission policy: per site (Wagtail 7.4 and 8)."""
    return SmtpSettings.get_permission_policy()


def user_can_change(user, site):
    """The check Wagtail's settings EditView makes for a site setting."""
    return settings_permission_policy().user_has_permission_for_instance(user, "change", site)


def outbox_sites(user):
    """The sites whose outbox the user may see and act on."""
    return settings_permission_policy().sites_user_has_permission_for(user, "change")


def may_use_outbox(user):
    """True when the user manages at least one site's mail (menu items, dashboard panel)."""
    return settings_permission_policy().user_has_permission(user, "change")


def visible_rows(queryset, user):
    """The rows of ``queryset`` (each with a ``site``) that belong to the user's sites."""
    if user.is_active and user.is_superuser:
        return queryset
    return queryset.filter(site__in=outbox_sites(user))


def site_for_change(user, site_pk):
    """The site, when the user may change its setting: 404 for no such site, else 403."""
    site = get_object_or_404(Site, pk=site_pk)
    if not user_can_change(user, site):
        raise PermissionDenied
    return site


def settings_for_change(user, site_pk):
    """The SMTP setting of a site the user may change (see ``site_for_change``)."""
    return SmtpSettings.for_site(site_for_change(user, site_pk))


def row_for_change(queryset, user, pk):
    """A row (a message, bounce or suppression) of a site the user may change: 404, else 403."""
    row = get_object_or_404(queryset.select_related("site"), pk=pk)
    if not user_can_change(user, row.site):
        raise PermissionDenied
    return row
