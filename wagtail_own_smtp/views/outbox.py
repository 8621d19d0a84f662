"""The outbox in the Wagtail admin: each site's messages, their state, and what an editor may do.

Everything is per site: an editor sees and acts on the messages of the sites whose "Own SMTP
server" setting they may change (``permissions``), and nothing else. The listing is a Wagtail
report (filters, search, pagination; its table in ``outbox_table``) with each site's forecast;
one message's page is ``outbox_message``. Deleting old sent mail is here too.
"""

from datetime import timedelta

from django import forms
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext_lazy
from django.views.decorators.http import require_POST
from django.views.generic import FormView
from wagtail.admin import messages
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.widgets.button import HeaderButton
from wagtail.models import Site

from .. import forecast, timeline
from ..choices import WAITING
from ..mailqueue import delete_sent, retry_deferred_of
from ..models import Bounce, MessageStatus, OutboundMessage
from ..permissions import may_use_outbox, outbox_sites, site_for_change
from . import outbox_bulk, outbox_message, outbox_table
from .reports import PerSiteReport

FORECAST_SITES = 10  # sites forecast on one page; the site filter narrows to one


# -- the queue operations of the listing (queue.py is their later home) ---------------------


# -- the listing ------------------------------------------------------------------------------


def first_forecasts(sites):
    """The forecasts of the first ``FORECAST_SITES`` of ``sites`` in use, and whether more are."""
    shown = list(forecast.sites_in_use(sites)[: FORECAST_SITES + 1])
    return forecast.forecasts(shown[:FORECAST_SITES]), len(shown) > FORECAST_SITES


class OutboxView(PerSiteReport):
    page_title = gettext_lazy("Outbox")
    header_icon = "mail"
    template_name = "wagtail_own_smtp/outbox/index.html"
    results_template_name = "wagtail_own_smtp/outbox/index_results.html"
    index_url_name = "wagtail_own_smtp_admin:outbox"
    index_results_url_name = "wagtail_own_smtp_admin:outbox_results"
    model = OutboundMessage
    filterset_class = outbox_table.OutboxFilterSet
    search_fields = ["subject", "recipients"]
    default_ordering = "-created_at"
    table_class = outbox_table.OutboxTable
    table_classname = "listing own-smtp-outbox"
    list_export = outbox_table.EXPORT_FIELDS
    export_headings = outbox_table.EXPORT_HEADINGS
    columns = outbox_table.COLUMNS

    def get_filename(self):
        return f"outbox-{timezone.localdate().isoformat()}"

    def write_csv_row(self, writer, row_dict):
        # Subjects, recipients and server replies are written by others; a spreadsheet would run
        # a cell such as =HYPERLINK(...) as a formula (Wagtail neutralises XLSX only).
        return writer.writerow(
            {
                field: outbox_table.neutralise_formula(
                    self.preprocess_field_value(field, value, self.FORMAT_CSV)
                )
                for field, value in row_dict.items()
            }
        )

    def get_base_queryset(self):
        # The raw bytes (up to the size limit each) are never needed in the listing.
        return (
            super()
            .get_base_queryset()
            .defer("raw_message", "envelope_from", "claimed_by")
            .annotate(bounced=Exists(Bounce.objects.filter(message=OuterRef("pk"))))
        )

    def order_queryset(self, queryset):
        queryset = super().order_queryset(queryset)
        # Ties (bulk-queued mail) keep a stable order across pages.
        ordering = self.ordering or "-created_at"
        return queryset.order_by(ordering, "-pk" if ordering.startswith("-") else "pk")

    def decorate_paginated_queryset(self, object_list):
        if self.is_export:
            return object_list
        shown = list(object_list)  # the page's rows, read once; the table renders these
        waiting = {message.site_id for message in shown if message.status in WAITING}
        expected = timeline.expected_times(waiting)
        for message in shown:
            message.expected_at = expected.get(message.pk)
        return object_list

    def search_queryset(self, queryset):
        if not self.is_searching:
            return queryset
        return queryset.filter(outbox_table.search_filter(self.search_query))

    @cached_property
    def header_buttons(self):
        return [
            HeaderButton(
                _("Delete old sent messages"),
                url=reverse("wagtail_own_smtp_admin:outbox_delete_sent"),
                icon_name="bin",
                attrs={"data-own-smtp-delete-sent-link": ""},
            ),
        ]

    @cached_property
    def site_filter(self):
        if self.filters is not None and self.filters.is_valid():
            return self.filters.form.cleaned_data.get("site")
        return None

    def _unfiltered_by_status(self):
        queryset = self.get_base_queryset()
        if self.filters is not None:
            data = self.request.GET.copy()
            data.setlist("status", [])
            filterset = self.filterset_class(data=data, request=self.request)
            if filterset.is_valid():
                queryset = filterset.filter_queryset(queryset)
        return self.search_queryset(queryset)

    def status_links(self):
        """Each status with its count (site, date and search filters apply) and its link."""
        counts = outbox_table.status_counts(self._unfiltered_by_status())
        chosen = set(self.request.GET.getlist("status"))
        links = []
        for value, label in MessageStatus.choices:
            query = self.request.GET.copy()
            for name in ("status", self.page_kwarg, "_w_filter_fragment"):
                query.pop(name, None)
            query.setlist("status", [value])
            links.append(
                {
                    "status": value,
                    "label": label,
                    "count": counts[value],
                    "url": f"{self.index_url}?{query.urlencode()}",
                    "active": chosen == {value},
                }
            )
        return links

    def site_forecasts(self):
        sites = outbox_sites(self.request.user)
        if self.site_filter is not None:
            sites = sites.filter(pk=self.site_filter.pk)
        forecasts, more = first_forecasts(sites)
        return timeline.add_charts(forecasts), more

    def get_context_data(self, *args, **kwargs):
        context = super().get_context_data(*args, **kwargs)
        if self.is_export:
            return context
        context["status_links"] = self.status_links()
        if not self.results_only:
            # Work for the whole queue: once per page, not on each filter change or keystroke.
            context["forecasts"], context["more_forecasts"] = self.site_forecasts()
        return context


@require_POST
def retry_site(request, site_pk):
    """Make all deferred mail of one site due now."""
    site = site_for_change(request.user, site_pk)
    count = retry_deferred_of(site)
    messages.success(
        request,
        ngettext(
            "%(count)s deferred message is due now.",
            "%(count)s deferred messages are due now.",
            count,
        )
        % {"count": count},
    )
    return redirect(outbox_table.outbox_url(site.pk))


# -- deleting old sent mail -------------------------------------------------------------------


class DeleteSentForm(forms.Form):
    site = forms.ModelChoiceField(
        label=pgettext_lazy("own smtp: a Wagtail site", "Site"),
        queryset=Site.objects.none(),
        required=False,
        empty_label=gettext_lazy("All sites you manage"),
        help_text=gettext_lazy("Whose sent messages to delete."),
    )
    older_than_days = forms.IntegerField(
        label=gettext_lazy("Sent more than this many days ago"),
        min_value=1,
        max_value=3650,
        initial=30,
        help_text=gettext_lazy(
            "Only sent messages are deleted; queued, deferred, failed and cancelled ones stay."
        ),
    )

    def __init__(self, *args, sites, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = sites.order_by("hostname", "port")


class DeleteSentView(WagtailAdminTemplateMixin, FormView):
    template_name = "wagtail_own_smtp/outbox/delete_sent.html"
    form_class = DeleteSentForm
    header_icon = "bin"

    def dispatch(self, request, *args, **kwargs):
        if not may_use_outbox(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Delete old sent messages")

    def get_breadcrumbs_items(self):
        return [
            *self.breadcrumbs_items,
            {"url": outbox_table.outbox_url(), "label": _("Outbox")},
            {"url": "", "label": self.get_page_title()},
        ]

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "sites": outbox_sites(self.request.user)}

    def form_valid(self, form):
        site = form.cleaned_data["site"]
        sites = [site] if site else outbox_sites(self.request.user)
        days = form.cleaned_data["older_than_days"]
        count = delete_sent(sites, timedelta(days=days))
        messages.success(
            self.request,
            ngettext(
                "Deleted %(count)s sent message older than %(days)s days.",
                "Deleted %(count)s sent messages older than %(days)s days.",
                count,
            )
            % {"count": count, "days": days},
        )
        return redirect("wagtail_own_smtp_admin:outbox")


urlpatterns = [
    path("outbox/", OutboxView.as_view(), name="outbox"),
    path("outbox/results/", OutboxView.as_view(results_only=True), name="outbox_results"),
    path("outbox/<int:pk>/", outbox_message.MessageView.as_view(), name="outbox_message"),
    path("outbox/<int:pk>/retry/", outbox_message.retry_message, name="outbox_retry"),
    path("outbox/<int:pk>/cancel/", outbox_message.cancel_message, name="outbox_cancel"),
    path("outbox/site/<int:site_pk>/retry-deferred/", retry_site, name="outbox_retry_site"),
    path(
        "outbox/site/<int:site_pk>/cancel-bulk/",
        outbox_bulk.CancelBulkView.as_view(),
        name="outbox_cancel_bulk",
    ),
    path("outbox/delete-sent/", DeleteSentView.as_view(), name="outbox_delete_sent"),
]
