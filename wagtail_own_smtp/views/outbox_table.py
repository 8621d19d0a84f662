"""What the outbox listing shows: its filters, columns, export fields, search, status counts, and
its address.

The listing never loads a message's raw bytes; its counts per status come from one aggregate
query.
"""

import json

import django_filters
from django import forms
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy, ngettext, pgettext_lazy
from wagtail.admin.filters import DateRangePickerWidget, WagtailFilterSet
from wagtail.admin.ui.tables import Column, Table, TitleColumn

from ..models import Lane, MessageStatus, OutboundMessage
from ..permissions import outbox_sites
from .reports import local_datetime, site_name


def outbox_url(site_pk=None):
    """The outbox listing's address; with a site, filtered to that site's mail."""
    url = reverse("wagtail_own_smtp_admin:outbox")
    return url if site_pk is None else f"{url}?{urlencode({'site': site_pk})}"


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
    lane = django_filters.ChoiceFilter(
        label=gettext_lazy("Lane"),
        choices=Lane.choices,
        empty_label=gettext_lazy("Both lanes"),
    )
    created_at = django_filters.DateFromToRangeFilter(
        label=gettext_lazy("Queued at"),
        widget=DateRangePickerWidget,
    )

    class Meta:
        model = OutboundMessage
        fields = []


def search_filter(term):
    """Subject or recipient contains ``term`` (recipients: the JSON text of the list)."""
    condition = Q(subject__icontains=term) | Q(recipients__icontains=term)
    escaped = json.dumps(term)[1:-1]
    if escaped != term:
        # SQLite keeps the JSON text with \\u escapes for non-ASCII characters.
        condition |= Q(recipients__icontains=escaped)
    return condition


def status_counts(messages_qs):
    """Messages per status, in one aggregate query."""
    return messages_qs.order_by().aggregate(
        **{status: Count("pk", filter=Q(status=status)) for status in MessageStatus.values}
    )


def recipients_shown(message):
    """The first three recipients, and how many more."""
    shown = ", ".join(message.recipients[:3])
    more = len(message.recipients) - 3
    if more > 0:
        shown += " " + ngettext("and %(count)s more", "and %(count)s more", more) % {"count": more}
    return shown


def sent_or_expected(message):
    """When a sent message went, or when a waiting one is expected to go."""
    if message.status == MessageStatus.SENT:
        return local_datetime(message.sent_at)
    # When the site's limits let it go (OutboxView.decorate_paginated_queryset); none while the
    # site does not send (the forecast says why).
    return local_datetime(getattr(message, "expected_at", None))


def neutralise_formula(value):
    """A text cell starting like a formula gets a leading ' (OWASP's advice on CSV injection)."""
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


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
        attrs["data-own-smtp-message-lane"] = instance.lane
        return attrs


COLUMNS = [
    TitleColumn(
        "subject",
        label=gettext_lazy("Subject"),
        accessor=str,
        url_name="wagtail_own_smtp_admin:outbox_message",
    ),
    Column("recipients", label=gettext_lazy("Recipients"), accessor=recipients_shown),
    Column("site", label=pgettext_lazy("own smtp: a Wagtail site", "Site"), accessor=site_name),
    StatusColumn("status", label=gettext_lazy("Status")),
    Column("lane", label=gettext_lazy("Lane"), accessor="get_lane_display"),
    Column(
        "created_at",
        label=gettext_lazy("Queued at"),
        accessor=lambda message: local_datetime(message.created_at),
        sort_key="created_at",
    ),
    Column("attempts", label=gettext_lazy("Attempts")),
    Column("when", label=gettext_lazy("Sent / expected"), accessor=sent_or_expected),
]

EXPORT_FIELDS = [
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
    "get_lane_display",
]

EXPORT_HEADINGS = {
    "pk": gettext_lazy("ID"),
    "site": pgettext_lazy("own smtp: a Wagtail site", "Site"),
    "get_status_display": gettext_lazy("Status"),
    "get_lane_display": gettext_lazy("Lane"),
    "subject": gettext_lazy("Subject"),
    "recipients": gettext_lazy("Recipients"),
    "created_at": gettext_lazy("Queued at"),
    "attempts": gettext_lazy("Attempts"),
    "last_attempt_at": gettext_lazy("Last attempt"),
    "sent_at": gettext_lazy("Sent at"),
    "last_error": gettext_lazy("Last server reply"),
}
