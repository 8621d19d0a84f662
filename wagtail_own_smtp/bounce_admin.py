"""Bounces and suppressed addresses in the Wagtail admin, per site like the outbox.

An editor sees the delivery reports read from the sender mailboxes of the sites whose "Own SMTP
server" setting they may change, reads each report, and lifts a suppression (a false positive,
or an address that works again); each lift is logged in Wagtail's history.
"""

import django_filters
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.filters import WagtailFilterSet
from wagtail.admin.ui.tables import Column, TitleColumn
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.views.reports import ReportView
from wagtail.log_actions import log

from . import bounces, crypto
from .mailbox import MailboxFailure
from .models import Bounce, BounceKind, SmtpSettings, Suppression
from .outbox import _site_for_change, local_datetime, outbox_sites, settings_permission_policy

LIFT_ACTION = "wagtail_own_smtp.lift_suppression"


def visible(queryset, user):
    if user.is_active and user.is_superuser:
        return queryset
    return queryset.filter(site__in=outbox_sites(user))


def _site_name(row):
    return row.site.site_name or row.site.hostname


class _SiteAndKindFilterSet(WagtailFilterSet):
    site = django_filters.ModelChoiceFilter(
        label=gettext_lazy("Website"),
        queryset=lambda request: outbox_sites(request.user).order_by("hostname", "port"),
        empty_label=gettext_lazy("All sites"),
    )


class BounceFilterSet(_SiteAndKindFilterSet):
    kind = django_filters.ChoiceFilter(label=gettext_lazy("Kind"), choices=BounceKind.choices)

    class Meta:
        model = Bounce
        fields = []


class SuppressionFilterSet(_SiteAndKindFilterSet):
    reason = django_filters.ChoiceFilter(label=gettext_lazy("Reason"), choices=BounceKind.choices)

    class Meta:
        model = Suppression
        fields = []


class _PerSiteReport(ReportView):
    header_icon = "warning"
    is_searchable = True
    search_field = ""  # the one column searched
    paginate_by = 50
    permission_required = "change"

    @cached_property
    def permission_policy(self):
        return settings_permission_policy()

    def get_base_queryset(self):
        return visible(self.model.objects.select_related("site"), self.request.user)

    def search_queryset(self, queryset):
        if not self.is_searching:
            return queryset
        return queryset.filter(**{f"{self.search_field}__icontains": self.search_query})


class BouncesView(_PerSiteReport):
    page_title = gettext_lazy("Bounces")
    index_url_name = "wagtail_own_smtp_admin:bounces"
    index_results_url_name = "wagtail_own_smtp_admin:bounces_results"
    model = Bounce
    filterset_class = BounceFilterSet
    search_field = "recipient"
    default_ordering = "-received_at"
    columns = [
        TitleColumn(
            "recipient",
            label=gettext_lazy("Recipient"),
            url_name="wagtail_own_smtp_admin:bounce",
        ),
        Column("kind", label=gettext_lazy("Kind"), accessor="get_kind_display"),
        Column("status_code", label=gettext_lazy("Status code")),
        Column("diagnostic", label=gettext_lazy("Remote server's reply")),
        Column("site", label=gettext_lazy("Website"), accessor=_site_name),
        Column(
            "received_at",
            label=gettext_lazy("Received"),
            accessor=lambda bounce: local_datetime(bounce.received_at),
            sort_key="received_at",
        ),
    ]


class SuppressionsView(_PerSiteReport):
    page_title = gettext_lazy("Suppressed addresses")
    index_url_name = "wagtail_own_smtp_admin:suppressions"
    index_results_url_name = "wagtail_own_smtp_admin:suppressions_results"
    model = Suppression
    filterset_class = SuppressionFilterSet
    search_field = "address"
    default_ordering = "-since"
    columns = [
        TitleColumn(
            "address",
            label=gettext_lazy("Address"),
            url_name="wagtail_own_smtp_admin:suppression_lift",
        ),
        Column("reason", label=gettext_lazy("Reason"), accessor="get_reason_display"),
        Column("site", label=gettext_lazy("Website"), accessor=_site_name),
        Column(
            "since",
            label=gettext_lazy("Since"),
            accessor=lambda row: local_datetime(row.since),
            sort_key="since",
        ),
    ]


class _OneRow(WagtailAdminTemplateMixin, TemplateView):
    header_icon = "warning"
    list_url_name = ""
    list_label = ""

    def dispatch(self, request, *args, **kwargs):
        self.row = get_object_or_404(self.model.objects.select_related("site"), pk=kwargs["pk"])
        _site_for_change(request.user, self.row.site_id)  # PermissionDenied for other sites
        return super().dispatch(request, *args, **kwargs)

    def get_page_subtitle(self):
        return str(self.row)

    def get_breadcrumbs_items(self):
        return [
            *self.breadcrumbs_items,
            {"url": reverse(self.list_url_name), "label": self.list_label},
            {"url": "", "label": self.get_page_title()},
        ]


class BounceView(_OneRow):
    model = Bounce
    template_name = "wagtail_own_smtp/bounces/bounce.html"
    list_url_name = "wagtail_own_smtp_admin:bounces"
    list_label = gettext_lazy("Bounces")

    def get_page_title(self):
        return _("Bounce of %(recipient)s") % {"recipient": self.row.recipient}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        bounce = self.row
        suppression = Suppression.objects.filter(site=bounce.site, address=bounce.recipient)
        context.update(
            bounce=bounce,
            received=local_datetime(bounce.received_at),
            message_url=(
                reverse("wagtail_own_smtp_admin:outbox_message", args=[bounce.message_id])
                if bounce.message_id
                else ""
            ),
            suppression=suppression.first(),
        )
        return context


class LiftSuppressionView(_OneRow):
    model = Suppression
    template_name = "wagtail_own_smtp/bounces/lift.html"
    list_url_name = "wagtail_own_smtp_admin:suppressions"
    list_label = gettext_lazy("Suppressed addresses")

    def get_page_title(self):
        return _("Lift the suppression of %(address)s") % {"address": self.row.address}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            suppression=self.row,
            since=local_datetime(self.row.since),
            bounces=Bounce.objects.filter(site=self.row.site, recipient=self.row.address).order_by(
                "-received_at"
            )[:10],
        )
        return context

    def post(self, request, *args, **kwargs):
        suppression = self.row
        log(instance=suppression, action=LIFT_ACTION, user=request.user)
        suppression.delete()
        messages.success(
            request,
            _("%(address)s is mailed again by %(site)s.")
            % {"address": suppression.address, "site": _site_name(suppression)},
        )
        return redirect("wagtail_own_smtp_admin:suppressions")


@require_POST
def test_mailbox(request, site_pk):
    """Log in to the saved mailbox and open its folder read-only; nothing changes."""
    site = _site_for_change(request.user, site_pk)
    smtp_settings = SmtpSettings.for_site(site)
    settings_url = reverse(
        "wagtailsettings:edit", args=["wagtail_own_smtp", "smtpsettings", site.pk]
    )
    if not smtp_settings.imap_host:
        messages.error(request, _("Enter the IMAP host and save first."))
        return redirect(settings_url)
    try:
        count = bounces.test_mailbox(smtp_settings)
    except crypto.UndecryptablePassword:
        messages.error(request, _("The stored password cannot be decrypted. Enter it again."))
    except MailboxFailure as failure:
        messages.error(request, _("The mailbox test failed: %(reason)s") % {"reason": failure})
    else:
        messages.success(
            request,
            _(
                "The mailbox works: %(folder)s on %(host)s holds %(count)s messages. "
                "Nothing was changed."
            )
            % {
                "folder": smtp_settings.imap_folder,
                "host": smtp_settings.imap_host,
                "count": count,
            },
        )
    return redirect(settings_url)


urlpatterns = [
    path("<int:site_pk>/test-mailbox/", test_mailbox, name="test_mailbox"),
    path("bounces/", BouncesView.as_view(), name="bounces"),
    path("bounces/results/", BouncesView.as_view(results_only=True), name="bounces_results"),
    path("bounces/<int:pk>/", BounceView.as_view(), name="bounce"),
    path("suppressed/", SuppressionsView.as_view(), name="suppressions"),
    path(
        "suppressed/results/",
        SuppressionsView.as_view(results_only=True),
        name="suppressions_results",
    ),
    path("suppressed/<int:pk>/lift/", LiftSuppressionView.as_view(), name="suppression_lift"),
]
