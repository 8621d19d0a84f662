"""The app's Wagtail hooks: a page served as its site's, the confirmation after a save, the admin
URLs (status panel buttons, "Connect account", outbox, bounces), the Reports menu items, the
log actions (a lifted suppression, a cancelled wave) and the dashboard panel."""

from django.urls import include, path, reverse
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin import messages
from wagtail.admin.menu import MenuItem

from . import domain_status, verification
from .dashboard import OutboxPanel
from .forms import security_hint
from .middleware import serving_page
from .models import SmtpSettings
from .permissions import may_use_outbox
from .views import bounces as bounce_views
from .views import domain, outbox, outbox_bulk, server
from .views import oauth as oauth_views
from .views.notices import add_confirmation_messages


# The highest order wraps innermost: only the page's own serve runs as its site's (Wagtail's view
# restriction and other hooks around it stay outside).
@hooks.register("on_serve_page", order=1000)
def serve_as_the_pages_site(next_serve_page):
    def serve(page, request, args, kwargs):
        with serving_page(page):
            return next_serve_page(page, request, args, kwargs)

    return serve


@hooks.register("after_edit_setting")
def confirm_changed_server(request, instance):
    if not isinstance(instance, SmtpSettings):
        return None
    result = verification.settings_saved(instance, request=request)
    if result is not None:
        add_confirmation_messages(request, result)
    domain_status.settings_saved(instance)
    hint = security_hint(instance)
    if hint and not (result and result.failure and result.failure.hint == hint):
        messages.warning(request, hint)
    return None


_admin_urls = [
    path("<int:site_pk>/send-confirmation/", server.resend_confirmation, name="resend"),
    path("<int:site_pk>/test-connection/", server.test_connection, name="test_connection"),
    path("<int:site_pk>/test-mailbox/", server.test_mailbox, name="test_mailbox"),
    path("<int:site_pk>/check-domain/", domain.check_again, name="check_domain"),
    path("<int:site_pk>/oauth/connect/", oauth_views.oauth_connect, name="oauth_connect"),
    # One fixed address for every site: the providers accept only registered redirect URIs.
    path("oauth/callback/", oauth_views.oauth_callback, name="oauth_callback"),
    *outbox.urlpatterns,
    *bounce_views.urlpatterns,
]


@hooks.register("register_admin_urls")
def register_admin_urls():
    return [
        path(
            "own-smtp/",
            include((_admin_urls, "wagtail_own_smtp_admin"), namespace="wagtail_own_smtp_admin"),
        )
    ]


class ReportMenuItem(MenuItem):
    """A Reports menu item shown to users who may change a site's SMTP setting."""

    def is_shown(self, request):
        return may_use_outbox(request.user)


def _report_item(label, url_name, icon_name, order):
    """A Reports menu item of the app (outbox, bounces, suppressed addresses)."""
    return ReportMenuItem(
        label,
        reverse(f"wagtail_own_smtp_admin:{url_name}"),
        name=f"own-smtp-{url_name}",
        icon_name=icon_name,
        order=order,
    )


@hooks.register("register_reports_menu_item")
def register_outbox_menu_item():
    return _report_item(_("Outbox"), "outbox", "mail", 1000)


@hooks.register("register_reports_menu_item")
def register_bounces_menu_item():
    return _report_item(_("Bounces"), "bounces", "warning", 1001)


@hooks.register("register_reports_menu_item")
def register_suppressions_menu_item():
    return _report_item(_("Suppressed addresses"), "suppressions", "cross", 1002)


@hooks.register("register_log_actions")
def register_log_actions(actions):
    actions.register_action(
        bounce_views.LIFT_ACTION, _("Lift a suppression"), _("Suppression lifted")
    )
    actions.register_action(outbox_bulk.CANCEL_BULK_ACTION)(outbox_bulk.CancelBulkFormatter)


@hooks.register("construct_homepage_panels")
def add_outbox_panel(request, panels):
    if may_use_outbox(request.user):
        panels.append(OutboxPanel(request))
