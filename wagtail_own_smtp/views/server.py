"""The status panel's buttons: test the connection, send the confirmation again, test the mailbox.

Each acts on one site the editor may change, answers with an admin message (the server's reply
verbatim where it failed) and returns to that site's settings screen.
"""

from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from wagtail.admin import messages

from .. import bounces, crypto, servers, transport, verification
from ..mailbox import MailboxFailure
from ..permissions import settings_for_change
from .notices import add_confirmation_messages, add_failure_message, settings_edit_url


def _incomplete_message(request, smtp_settings):
    if smtp_settings.uses_sign_in and not smtp_settings.has_password:
        messages.error(request, _("Click “Connect account” and sign in first."))
    else:
        messages.error(request, _("Enter and save the SMTP host and the sender address first."))


@require_POST
def resend_confirmation(request, site_pk):
    smtp_settings = settings_for_change(request.user, site_pk)
    if not verification.is_complete(smtp_settings):
        _incomplete_message(request, smtp_settings)
    else:
        add_confirmation_messages(
            request, verification.send_confirmation(smtp_settings, request=request)
        )
    return redirect(settings_edit_url(site_pk))


@require_POST
def test_connection(request, site_pk):
    """Connect, TLS, AUTH, MAIL FROM / RCPT TO, RSET: nothing is sent, nothing is counted."""
    smtp_settings = settings_for_change(request.user, site_pk)
    if not verification.is_complete(smtp_settings):
        _incomplete_message(request, smtp_settings)
        return redirect(settings_edit_url(site_pk))
    try:
        transport.test_connection(servers.current_params(smtp_settings))
    except crypto.UndecryptablePassword:
        messages.error(
            request,
            _("The stored password cannot be decrypted with the configured keys. Enter it again."),
        )
    except transport.SmtpFailure as failure:
        add_failure_message(request, _("The connection test failed."), failure)
    else:
        messages.success(
            request,
            _(
                "The connection to %(host)s:%(port)s works: the server accepted the login and "
                "the sender address. Nothing was sent."
            )
            % {"host": smtp_settings.host, "port": smtp_settings.port},
        )
    return redirect(settings_edit_url(site_pk))


@require_POST
def test_mailbox(request, site_pk):
    """Log in to the saved mailbox and open its folder read-only; nothing changes."""
    smtp_settings = settings_for_change(request.user, site_pk)
    settings_url = settings_edit_url(smtp_settings.site_id)
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
