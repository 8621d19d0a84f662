"""Bounces and suppressed addresses in the Wagtail admin, per site like the outbox.

An editor sees the delivery reports read from the sender mailboxes of the sites whose "Own SMTP
server" setting they may change, reads each report, and lifts a suppression (a false positive,
or an address that works again); each lift is logged in Wagtail's history.
"""

import django_filters
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.filters import WagtailFilterSet
from wagtail.admin.ui.tables import Column, TitleColumn
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.log_actions import log

from ..choices import BounceKind
from ..models import Bounce, Suppression
from ..permissions import outbox_sites, row_for_change
from .reports import PerSiteReport, local_datetime, site_name

LIFT_ACTION = "wagtail_own_smtp.lift_suppression"


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


class _SearchOneColumn(PerSiteReport):
    header_icon = "warning"
    search_field = ""  # the one column searched

    def search_queryset(self, queryset):
        if not self.is_searching:
            return queryset
        return queryset.filter(**{f"{self.search_field}__icontains": self.search_query})


class BouncesView(_SearchOneColumn):
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
        Column("site", label=gettext_lazy("Website"), accessor=site_name),
        Column(
            "received_at",
            label=gettext_lazy("Received"),
            accessor=lambda bounce: local_datetime(bounce.received_at),
            sort_key="received_at",
        ),
    ]


class SuppressionsView(_SearchOneColumn):
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
        Column("site", label=gettext_lazy("Website"), accessor=site_name),
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
        self.row = row_for_change(self.model.objects, request.user, kwargs["pk"])
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
            % {"address": suppression.address, "site": site_name(suppression)},
        )
        return redirect("wagtail_own_smtp_admin:suppressions")


urlpatterns = [
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
