"""The settings form's mailbox fields (bounces): what makes them valid."""

from django import forms
from django.utils.translation import gettext_lazy as _

from .choices import MailboxSecurity


class MailboxFieldsMixin:
    """For ``SmtpSettingsForm`` (its ``_host_field`` and ``_check_address``): IMAP host, port
    and folders, checked like the SMTP host.

    Only the host is needed, and only when bounces are read: the others have defaults.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("imap_port", "imap_security", "imap_folder"):
            if name in self.fields:
                self.fields[name].required = False

    def clean_imap_port(self):
        return self.cleaned_data.get("imap_port") or 993

    def clean_imap_security(self):
        return self.cleaned_data.get("imap_security") or MailboxSecurity.SSL

    def clean_imap_host(self):
        return self._host_field(
            "imap_host", _("Enter a host name such as imap.example.org, or an IP address.")
        )

    def clean_imap_folder(self):
        return self._folder("imap_folder") or "INBOX"

    def clean_imap_move_to(self):
        return self._folder("imap_move_to")

    def _folder(self, name):
        folder = self.cleaned_data.get(name, "").strip()
        # Folder names travel as IMAP quoted strings; modified UTF-7 is not spoken here.
        if folder and not (folder.isascii() and folder.isprintable()):
            raise forms.ValidationError(
                _("Enter the folder's name in plain ASCII letters, as your mail program shows it."),
                code="invalid_folder",
            )
        return folder

    def clean_mailbox(self, cleaned):
        """Reading bounces needs the mailbox's host; the SMTP login (password or OAuth) opens it."""
        if not cleaned.get("bounce_processing"):
            return
        if not cleaned.get("imap_host") and "imap_host" not in self.errors:
            self.add_error(
                "imap_host",
                forms.ValidationError(_("Required to read bounces."), code="required"),
            )
        host = cleaned.get("imap_host")
        if host and "imap_host" in self.changed_data and "imap_host" not in self.errors:
            self._check_address(host, cleaned.get("imap_port") or 993, field="imap_host")
