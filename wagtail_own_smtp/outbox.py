"""The outbox in the Wagtail admin: each site's messages, their state, and what an editor may do.

Everything is per site: an editor sees and acts on the messages of the sites whose "Own SMTP
server" setting they may change (that setting's site permission policy), and nothing else.
The listing is a Wagtail report (filters, search, pagination); it never loads a message's raw
bytes, and its counts per status come from one aggregate query.
"""

import json
from datetime import timedelta

import django_filters
from django import forms
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext_lazy
from django.views.decorators.http import require_POST
from django.views.generic import FormView, TemplateView
from wagtail.admin import messages
from wagtail.admin.filters import DateRangePickerWidget, WagtailFilterSet
from wagtail.admin.menu import MenuItem
from wagtail.admin.ui.components import Component
from wagtail.admin.ui.tables import Column, Table, TitleColumn
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.views.reports import ReportView
from wagtail.admin.widgets.button import HeaderButton
from wagtail.models import Site

from . import forecast, hints, mailqueue, timeline
from .bounces import bounce_rate
from .choices import WAITING
from .mailqueue import dispatch_after_commit
from .message import message_headers
from .models import Bounce, MessageStatus, OutboundMessage, SmtpSettings

RETRYABLE = (MessageStatus.DEFERRED, MessageStatus.FAILED)
CANCELLABLE = (MessageStatus.QUEUED, MessageStatus.DEFERRED)
FORECAST_SITES = 10  # sites forecast on one page; the site filter narrows to one


# -- who sees what ----------------------------------------------------------------------------


def settings_permission_policy():
    """The SMTP setting's permission policy: per site (Wagtail 7.4 and 8)."""
    return SmtpSettings.get_permission_policy()


def outbox_sites(user):
    """The sites whose outbox the user may see and act on."""
    return settings_permission_policy().sites_user_has_permission_for(user, "change")


def may_use_outbox(user):
    return settings_permission_policy().user_has_permission(user, "change")


def visible_messages(user):
    if user.is_active and user.is_superuser:
        return OutboundMessage.objects.all()
    return OutboundMessage.objects.filter(site__in=outbox_sites(user))


def _site_for_change(user, site_pk):
    site = get_object_or_404(Site, pk=site_pk)
    if not settings_permission_policy().user_has_permission_for_instance(user, "change", site):
        raise PermissionDenied
    return site


def _message_for_change(user, pk):
    message = get_object_or_404(OutboundMessage.objects.select_related("site"), pk=pk)
    if not settings_permission_policy().user_has_permission_for_instance(
        user, "change", message.site
    ):
        raise PermissionDenied
    return message


# -- what the editor can do -------------------------------------------------------------------


def retry_now(messages_qs):
    """Make deferred and failed messages due now; returns how many."""
    count = messages_qs.filter(status__in=RETRYABLE).update(
        status=MessageStatus.DEFERRED, next_attempt_at=timezone.now()
    )
    if count:
        dispatch_after_commit()
    return count


def cancel(messages_qs):
    """Cancel queued and deferred messages (one being sent right now goes on); how many."""
    return messages_qs.filter(status__in=CANCELLABLE).update(status=MessageStatus.CANCELLED)


def delete_sent(sites, older_than, now=None):
    """Delete the sent messages of ``sites`` sent longer than ``older_than`` ago; how many."""
    cutoff = (now or timezone.now()) - older_than
    deleted, _by_model = OutboundMessage.objects.filter(
        site__in=sites, status=MessageStatus.SENT, sent_at__lt=cutoff
    ).delete()
    return deleted


def status_counts(messages_qs):
    """Messages per status, in one aggregate query."""
    return messages_qs.order_by().aggregate(
        **{status: Count("pk", filter=Q(status=status)) for status in MessageStatus.values}
    )


def search_filter(term):
    """Subject or recipient contains ``term`` (recipients: the JSON text of the list)."""
    condition = Q(subject__icontains=term) | Q(recipients__icontains=term)
    escaped = json.dumps(term)[1:-1]
    if escaped != term:
        # SQLite keeps the JSON text with \\u escapes for non-ASCII characters.
        condition |= Q(recipients__icontains=escaped)
    return condition


def local_datetime(value):
    # The format of the status panel and the forecast, so one page shows one kind of date.
    if not value:
        return ""
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


# -- the listing ------------------------------------------------------------------------------


class OutboxFilterSet(WagtailFilterSet):
    site = django_filters.ModelChoiceFilter(
        label=pgettext_lazy("own smtp: a Wagtail site", "Site"),
        queryset=lambda request: outbox_sites(request.user).order_by("hostname", "port"),
        empty_label=gettext_lazy("All sites"),
    )
    status = django_filters.MultipleChoiceFilter(
        label=gettext_lazy("Status"),
        choices=MessageStatus.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    created_at = django_filters.DateFromToRangeFilter(
        label=gettext_lazy("Queued at"),
        widget=DateRangePickerWidget,
    )

    class Meta:
        model = OutboundMessage
        fields = []


def _recipients(message):
    shown = ", ".join(message.recipients[:3])
    more = len(message.recipients) - 3
    if more > 0:
        shown += " " + ngettext("and %(count)s more", "and %(count)s more", more) % {"count": more}
    return shown


def _site_name(message):
    return message.site.site_name or message.site.hostname


def _sent_or_expected(message):
    if message.status == MessageStatus.SENT:
        return local_datetime(message.sent_at)
    # When the site's limits let it go (OutboxView.decorate_paginated_queryset); none while the
    # site does not send (the forecast says why).
    return local_datetime(getattr(message, "expected_at", None))


class StatusColumn(Column):
    cell_template_name = "wagtail_own_smtp/outbox/status_cell.html"

    def get_cell_context_data(self, instance, parent_context):
        context = super().get_cell_context_data(instance, parent_context)
        context["status"] = instance.status
        context["label"] = instance.get_status_display()
        context["bounced"] = getattr(instance, "bounced", False)
        return context


class OutboxTable(Table):
    def get_row_attrs(self, instance):
        attrs = super().get_row_attrs(instance)
        attrs["data-own-smtp-message"] = instance.pk
        attrs["data-own-smtp-message-status"] = instance.status
        return attrs


def _neutralise_formula(value):
    """A text cell starting like a formula gets a leading ' (OWASP's advice on CSV injection)."""
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


class OutboxView(ReportView):
    page_title = gettext_lazy("Outbox")
    header_icon = "mail"
    template_name = "wagtail_own_smtp/outbox/index.html"
    results_template_name = "wagtail_own_smtp/outbox/index_results.html"
    index_url_name = "wagtail_own_smtp_admin:outbox"
    index_results_url_name = "wagtail_own_smtp_admin:outbox_results"
    model = OutboundMessage
    filterset_class = OutboxFilterSet
    is_searchable = True
    search_fields = ["subject", "recipients"]
    paginate_by = 50
    default_ordering = "-created_at"
    permission_required = "change"
    table_class = OutboxTable
    table_classname = "listing own-smtp-outbox"
    list_export = [
        "pk",
        "site",
        "get_status_display",
        "subject",
        "recipients",
        "created_at",
        "attempts",
        "last_attempt_at",
        "sent_at",
        "last_error",
    ]
    export_headings = {
        "pk": gettext_lazy("ID"),
        "site": pgettext_lazy("own smtp: a Wagtail site", "Site"),
        "get_status_display": gettext_lazy("Status"),
        "subject": gettext_lazy("Subject"),
        "recipients": gettext_lazy("Recipients"),
        "created_at": gettext_lazy("Queued at"),
        "attempts": gettext_lazy("Attempts"),
        "last_attempt_at": gettext_lazy("Last attempt"),
        "sent_at": gettext_lazy("Sent at"),
        "last_error": gettext_lazy("Last server reply"),
    }
    columns = [
        TitleColumn(
            "subject",
            label=gettext_lazy("Subject"),
            accessor=str,
            url_name="wagtail_own_smtp_admin:outbox_message",
        ),
        Column("recipients", label=gettext_lazy("Recipients"), accessor=_recipients),
        Column(
            "site", label=pgettext_lazy("own smtp: a Wagtail site", "Site"), accessor=_site_name
        ),
        StatusColumn("status", label=gettext_lazy("Status")),
        Column(
            "created_at",
            label=gettext_lazy("Queued at"),
            accessor=lambda message: local_datetime(message.created_at),
            sort_key="created_at",
        ),
        Column("attempts", label=gettext_lazy("Attempts")),
        Column("when", label=gettext_lazy("Sent / expected"), accessor=_sent_or_expected),
    ]

    @cached_property
    def permission_policy(self):
        return settings_permission_policy()

    def get_filename(self):
        return f"outbox-{timezone.localdate().isoformat()}"

    def write_csv_row(self, writer, row_dict):
        # Subjects, recipients and server replies are written by others; a spreadsheet would run
        # a cell such as =HYPERLINK(...) as a formula (Wagtail neutralises XLSX only).
        return writer.writerow(
            {
                field: _neutralise_formula(
                    self.preprocess_field_value(field, value, self.FORMAT_CSV)
                )
                for field, value in row_dict.items()
            }
        )

    def get_base_queryset(self):
        # The raw bytes (up to the size limit each) are never needed in the listing.
        return (
            visible_messages(self.request.user)
            .select_related("site")
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
        return queryset.filter(search_filter(self.search_query))

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
        counts = status_counts(self._unfiltered_by_status())
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
        in_use = forecast.sites_in_use(sites)
        shown = list(in_use[: FORECAST_SITES + 1])
        forecasts = timeline.add_charts(forecast.forecasts(shown[:FORECAST_SITES]))
        return forecasts, len(shown) > FORECAST_SITES

    def get_context_data(self, *args, **kwargs):
        context = super().get_context_data(*args, **kwargs)
        if self.is_export:
            return context
        context["status_links"] = self.status_links()
        if not self.results_only:
            # Work for the whole queue: once per page, not on each filter change or keystroke.
            context["forecasts"], context["more_forecasts"] = self.site_forecasts()
        return context


# -- one message ------------------------------------------------------------------------------


class MessageView(WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_own_smtp/outbox/message.html"
    header_icon = "mail"

    def dispatch(self, request, *args, **kwargs):
        self.message = _message_for_change(request.user, kwargs["pk"])
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Message")

    def get_page_subtitle(self):
        return str(self.message)

    def get_breadcrumbs_items(self):
        return [
            *self.breadcrumbs_items,
            {"url": reverse("wagtail_own_smtp_admin:outbox"), "label": _("Outbox")},
            {"url": "", "label": str(self.message)},
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        message = self.message
        expected_at = None
        if message.status in WAITING:
            expected_at = timeline.expected_times([message.site_id]).get(message.pk)
        context.update(
            message=message,
            bounces=message.bounces.order_by("received_at"),
            status_label=message.get_status_display(),
            headers=message_headers(message.raw_message),
            hint=hints.hint_for_reply(message.last_error),
            can_retry=message.status in RETRYABLE,
            can_cancel=message.status in CANCELLABLE,
            retry_url=reverse("wagtail_own_smtp_admin:outbox_retry", args=[message.pk]),
            cancel_url=reverse("wagtail_own_smtp_admin:outbox_cancel", args=[message.pk]),
            outbox_url=reverse("wagtail_own_smtp_admin:outbox")
            + "?"
            + urlencode({"site": message.site_id}),
            times=[
                ("queued-at", _("Queued at"), message.created_at),
                ("expected-at", _("Expected to go"), expected_at),
                ("last-attempt", _("Last attempt"), message.last_attempt_at),
                ("sent-at", _("Sent at"), message.sent_at),
            ],
        )
        return context


@require_POST
def retry_message(request, pk):
    message = _message_for_change(request.user, pk)
    if retry_now(OutboundMessage.objects.filter(pk=message.pk)):
        messages.success(request, _("The message is due now and goes out with the next slot."))
    else:
        messages.error(request, _("Only deferred or failed messages can be retried."))
    return redirect("wagtail_own_smtp_admin:outbox_message", pk=message.pk)


@require_POST
def cancel_message(request, pk):
    message = _message_for_change(request.user, pk)
    if cancel(OutboundMessage.objects.filter(pk=message.pk)):
        messages.success(request, _("The message was cancelled; it will not be sent."))
    else:
        messages.error(
            request,
            _("Only queued or deferred messages can be cancelled; this one is %(status)s.")
            % {"status": OutboundMessage.objects.get(pk=message.pk).get_status_display()},
        )
    return redirect("wagtail_own_smtp_admin:outbox_message", pk=message.pk)


@require_POST
def retry_site(request, site_pk):
    """Make all deferred mail of one site due now."""
    site = _site_for_change(request.user, site_pk)
    count = mailqueue.retry_deferred([site.pk])
    if count:
        dispatch_after_commit()
    messages.success(
        request,
        ngettext(
            "%(count)s deferred message is due now.",
            "%(count)s deferred messages are due now.",
            count,
        )
        % {"count": count},
    )
    return redirect(reverse("wagtail_own_smtp_admin:outbox") + "?" + urlencode({"site": site.pk}))


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
            {"url": reverse("wagtail_own_smtp_admin:outbox"), "label": _("Outbox")},
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


# -- the dashboard panel and the menu item ---------------------------------------------------


class OutboxPanel(Component):
    """The dashboard's view of the sites an editor manages: mode, verification, queue, forecast."""

    name = "own_smtp_outbox"
    order = 150
    template_name = "wagtail_own_smtp/dashboard_panel.html"

    def __init__(self, request):
        self.request = request

    def get_context_data(self, parent_context):
        in_use = forecast.sites_in_use(outbox_sites(self.request.user))
        shown = list(in_use[: FORECAST_SITES + 1])
        items = forecast.forecasts(shown[:FORECAST_SITES])
        for item in items:
            # (bounced, sent) recipients of the last 7 days, for the sites that read bounces
            reads = item.settings is not None and item.settings.bounce_processing
            item.bounces = bounce_rate(item.site.pk) if reads else None
        return {
            "forecasts": items,
            "reads_bounces": any(item.bounces is not None for item in items),
            "more_sites": len(shown) > FORECAST_SITES,
            "outbox_url": reverse("wagtail_own_smtp_admin:outbox"),
            # Wagtail's settings URL without a site opens the setting of the current site.
            "settings_url": reverse(
                "wagtailsettings:edit", args=["wagtail_own_smtp", "smtpsettings"]
            ),
            "request": self.request,
        }


class OutboxMenuItem(MenuItem):
    def is_shown(self, request):
        return may_use_outbox(request.user)


urlpatterns = [
    path("outbox/", OutboxView.as_view(), name="outbox"),
    path("outbox/results/", OutboxView.as_view(results_only=True), name="outbox_results"),
    path("outbox/<int:pk>/", MessageView.as_view(), name="outbox_message"),
    path("outbox/<int:pk>/retry/", retry_message, name="outbox_retry"),
    path("outbox/<int:pk>/cancel/", cancel_message, name="outbox_cancel"),
    path("outbox/site/<int:site_pk>/retry-deferred/", retry_site, name="outbox_retry_site"),
    path("outbox/delete-sent/", DeleteSentView.as_view(), name="outbox_delete_sent"),
]
