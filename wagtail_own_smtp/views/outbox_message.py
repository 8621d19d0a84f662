"""One message of the outbox: its page (state, times, header fields, bounces), retry and cancel.

The page shows the stored message's header fields, never its body.
"""

from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin

from .. import hints, timeline
from ..choices import WAITING
from ..mailqueue import CANCELLABLE, RETRYABLE, cancel, retry_now
from ..message import message_headers
from ..models import OutboundMessage
from ..permissions import row_for_change
from .outbox_table import outbox_url

# -- the page and its buttons ----------------------------------------------------------------


def _message_for_change(user, pk):
    return row_for_change(OutboundMessage.objects, user, pk)


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
            {"url": outbox_url(), "label": _("Outbox")},
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
            outbox_url=outbox_url(message.site_id),
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
