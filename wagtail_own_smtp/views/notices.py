"""What the admin tells an editor about their server, on the settings screen the actions return to.

A server's reply is shown verbatim (the help page promises "the original error message of the
configured server"), with a hint on a line of its own where one is known.
"""

from django.contrib import messages as django_messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from wagtail.admin import messages

from ..models import SmtpSettings


def settings_edit_url(site_pk=None):
    """Wagtail's edit screen of the SMTP setting; without a site, the current site's."""
    meta = SmtpSettings._meta
    args = [meta.app_label, meta.model_name] + ([] if site_pk is None else [site_pk])
    return reverse("wagtailsettings:edit", args=args)


def error_with_hint(request, text, hint=""):
    """A red admin message; the hint, where one is known, on a line of its own below it."""
    detail = hint and format_html('<span class="w-block w-mt-1" data-own-smtp-hint>{}</span>', hint)
    django_messages.error(request, messages.render(text, None, detail=detail))


def add_failure_message(request, intro, failure):
    """The server's original reply, verbatim, and the hint where one is known."""
    text = _("%(intro)s The server answered: %(reply)s") % {"intro": intro, "reply": failure.text}
    error_with_hint(request, text, failure.hint)


def add_confirmation_messages(request, result):
    """Turn a ConfirmationResult into an admin message (red either way, as on the help page)."""
    if result.sent:
        messages.error(
            request,
            _(
                "A test message with a confirmation link was sent to %(address)s. The new "
                "settings take effect once you click the link in it."
            )
            % {"address": result.recipient},
        )
    else:
        add_failure_message(request, _("The test message could not be sent."), result.failure)
