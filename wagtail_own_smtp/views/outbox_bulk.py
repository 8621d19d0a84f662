"""Stopping a wave: cancel the waiting bulk mail of one site from the outbox.

A confirmation page says how many messages it cancels; only a user who may change the site's
setting reaches it (``permissions``), and the cancellation is logged in Wagtail's history. It
cancels exactly the site's queued and deferred bulk messages (``mailqueue.CANCELLABLE``): one
being sent right now goes on, normal mail and other sites' mail are untouched.
"""

from django.db import transaction
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.log_actions import LogFormatter, log

from ..mailqueue import cancel_bulk, waiting_bulk
from ..models import SmtpSettings
from ..permissions import site_for_change
from .outbox_table import outbox_url

CANCEL_BULK_ACTION = "wagtail_own_smtp.cancel_bulk"


class CancelBulkFormatter(LogFormatter):
    """The history's words for a cancelled wave, with its count."""

    label = gettext_lazy("Cancel the waiting bulk mail")

    def format_message(self, log_entry):
        count = (log_entry.data or {}).get("count", 0)
        return ngettext(
            "Cancelled %(count)s waiting bulk message",
            "Cancelled %(count)s waiting bulk messages",
            count,
        ) % {"count": count}


class CancelBulkView(WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_own_smtp/outbox/cancel_bulk.html"
    header_icon = "mail"

    def dispatch(self, request, *args, **kwargs):
        self.site = site_for_change(request.user, kwargs["site_pk"])
        return super().dispatch(request, *args, **kwargs)

    def site_label(self):
        return self.site.site_name or self.site.hostname

    def get_page_title(self):
        return _("Cancel the waiting bulk mail of this site")

    def get_page_subtitle(self):
        return self.site_label()

    def get_breadcrumbs_items(self):
        return [
            *self.breadcrumbs_items,
            {"url": outbox_url(self.site.pk), "label": _("Outbox")},
            {"url": "", "label": self.get_page_title()},
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            site=self.site,
            site_label=self.site_label(),
            count=waiting_bulk(self.site).count(),
            outbox_url=outbox_url(self.site.pk),
        )
        return context

    def post(self, request, *args, **kwargs):
        with transaction.atomic():
            count = cancel_bulk(self.site)
            log(
                instance=SmtpSettings.for_site(self.site),
                action=CANCEL_BULK_ACTION,
                user=request.user,
                data={"count": count, "site": self.site.pk},
            )
        messages.success(
            request,
            ngettext(
                "Cancelled %(count)s waiting bulk message of %(site)s; normal mail goes on.",
                "Cancelled %(count)s waiting bulk messages of %(site)s; normal mail goes on.",
                count,
            )
            % {"count": count, "site": self.site_label()},
        )
        return redirect(outbox_url(self.site.pk))
