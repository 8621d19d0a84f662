"""Provider presets for the settings form: server parameters, the login method and the limits
providers publish.

Choosing a preset fills the form in the browser (``static/wagtail_own_smtp/js/presets.js``); the
choice itself is not stored and the editor can change every value afterwards. The caps count
recipients, as this app does; where a provider publishes messages, one message per recipient is
assumed (survey invitations have one recipient each), so the figure stays on the safe side.

Sources: the figures are the providers' own, as published on the pages named here. Providers
change them; the page is the authority.

- Google Workspace: "Gmail sending limits in Google Workspace" (Google Workspace Admin Help,
  support.google.com/a/answer/166852): 2,000 messages a day per user (500 during a trial),
  10,000 recipients a day, 3,000 external recipients a day. Preset: 2,000 a day.
- Gmail (free account): "Gmail sending limits" / "Limits for sending & getting mail" (Gmail Help,
  support.google.com/mail/answer/22839): 500 a day. Preset: 500 a day.
- Both Google presets sign in with Google (OAuth): Google accepts no account password from apps,
  only an app password (with 2-step verification) or OAuth ("Sign in with app passwords",
  support.google.com/accounts/answer/185833; "Transition from less secure apps to OAuth",
  support.google.com/a/answer/14114704).
- Microsoft 365 (Exchange Online): "Exchange Online limits", section "Sending limits"
  (learn.microsoft.com, Exchange Online service description): recipient rate limit 10,000
  recipients a day, message rate limit 30 messages a minute. Preset: 10,000 a day and one
  message every 2 seconds. Two presets, the same server: signing in with Microsoft, or the
  organisation's own app registration (client credentials, SMTP.SendAsApp). Microsoft ends
  password login (basic auth) for SMTP AUTH client submission: as announced ("Exchange Online to
  retire Basic auth for Client Submission (SMTP AUTH)", Exchange Team Blog, updated January
  2026), it is off by default for existing tenants from the end of December 2026; the server
  then answers 550 5.7.30 or 535 5.7.3.
- IONOS (Mail Basic / Mail Business): "What are the mass mailing limits?" (IONOS Help,
  ionos.com/help/email/general-topics/what-are-the-mass-mailing-limits), as published: 50 an
  hour in a contract's first week, 100 in the second, 400 up to day 30, then 500 an hour. (The
  German page "Welche Beschränkungen gibt es beim Versand von Massenmails" gives 5,000 recipients
  an hour after 30 days.) Preset: 500 an hour, the lower of the two published figures; new
  contracts need less.
- STRATO: smtp.strato.de with SSL/TLS on port 465, the server STRATO's help pages give for mail
  programs. We found no sending rate published by STRATO that we could confirm, so the preset
  leaves the limits as they are: ask STRATO for the figure of your package.
- IONOS and STRATO log in with a password.
- Other provider: port 587 with STARTTLS, the usual submission port; nothing else changes.
"""

import json
from dataclasses import dataclass, field

from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .choices import AuthMethod, MailboxSecurity, Security

# The form fields a preset may fill; a field a preset leaves out keeps its value.
SERVER_FIELDS = ("host", "port", "security", "auth_method")
LIMIT_FIELDS = ("min_interval", "max_per_hour", "max_per_day")
# Where the provider's mailbox is read for bounces (IMAP over TLS).
MAILBOX_FIELDS = ("imap_host", "imap_port", "imap_security")


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    values: dict = field(default_factory=dict)
    note: str = ""

    def as_data(self):
        """What the browser fills in: field name -> value ("" empties a limit = unlimited)."""
        return {
            name: "" if value is None else str(value)
            for name, value in self.values.items()
            if name in SERVER_FIELDS + LIMIT_FIELDS + MAILBOX_FIELDS
        }


_MICROSOFT_LIMITS = _(
    "Limits as published by Microsoft (Exchange Online limits): 10,000 recipients a day and 30 "
    "messages a minute. SMTP AUTH must be enabled for the mailbox."
)
_MICROSOFT_PASSWORDS_END = _(
    "Microsoft ends password login for SMTP AUTH: from the end of December 2026 it is off by "
    "default for existing tenants, and the server answers 550 5.7.30 or 535 5.7.3."
)
_GOOGLE_LOGIN = _(
    "Google accepts only app passwords or OAuth, not the account password: sign in with Google, "
    "or choose “Password” and enter an app password."
)


def _mailbox(host):
    """The sender's mailbox for reading bounces: IMAP over SSL/TLS, as these providers offer."""
    return {"imap_host": host, "imap_port": 993, "imap_security": MailboxSecurity.SSL}


# Exchange Online's submission server and published limits, whichever OAuth login is chosen.
_MICROSOFT_SERVER = {
    "host": "smtp.office365.com",
    "port": 587,
    "security": Security.STARTTLS,
    "min_interval": 2,
    "max_per_hour": None,
    "max_per_day": 10000,
    **_mailbox("outlook.office365.com"),
}
_GOOGLE_MAILBOX = _mailbox("imap.gmail.com")

PRESETS = (
    Preset(
        "google_workspace",
        _("Google Workspace"),
        {
            "host": "smtp.gmail.com",
            "port": 587,
            "security": Security.STARTTLS,
            "auth_method": AuthMethod.GOOGLE,
            "min_interval": 0,
            "max_per_hour": None,
            "max_per_day": 2000,
            **_GOOGLE_MAILBOX,
        },
        format_lazy(
            "{} {}",
            _(
                "Limits as published by Google (Gmail sending limits in Google Workspace): "
                "2,000 messages a day per user."
            ),
            _GOOGLE_LOGIN,
        ),
    ),
    Preset(
        "gmail",
        _("Gmail (free account)"),
        {
            "host": "smtp.gmail.com",
            "port": 587,
            "security": Security.STARTTLS,
            "auth_method": AuthMethod.GOOGLE,
            "min_interval": 0,
            "max_per_hour": None,
            "max_per_day": 500,
            **_GOOGLE_MAILBOX,
        },
        format_lazy(
            "{} {}",
            _("Limits as published by Google (Gmail sending limits): 500 a day."),
            _GOOGLE_LOGIN,
        ),
    ),
    Preset(
        "microsoft365",
        _("Microsoft 365"),
        {**_MICROSOFT_SERVER, "auth_method": AuthMethod.MICROSOFT},
        format_lazy(
            "{} {} {}",
            _MICROSOFT_LIMITS,
            _("Save, then click “Connect account” and sign in with the mailbox's account."),
            _MICROSOFT_PASSWORDS_END,
        ),
    ),
    Preset(
        "microsoft365_app",
        _("Microsoft 365 (app registration)"),
        {**_MICROSOFT_SERVER, "auth_method": AuthMethod.MICROSOFT_APP},
        format_lazy(
            "{} {} {}",
            _MICROSOFT_LIMITS,
            _(
                "Enter the tenant ID, client ID and client secret of your organisation's app "
                "registration (permission SMTP.SendAsApp)."
            ),
            _MICROSOFT_PASSWORDS_END,
        ),
    ),
    Preset(
        "ionos",
        _("IONOS"),
        {
            "host": "smtp.ionos.de",
            "port": 587,
            "security": Security.STARTTLS,
            "auth_method": AuthMethod.PASSWORD,
            "min_interval": 0,
            "max_per_hour": 500,
            "max_per_day": None,
            **_mailbox("imap.ionos.de"),
        },
        _(
            "Limits as published by IONOS (What are the mass mailing limits?): 500 an hour for "
            "contracts older than 30 days; fewer in the first month (50, 100, then 400 an hour)."
        ),
    ),
    Preset(
        "strato",
        _("STRATO"),
        {
            "host": "smtp.strato.de",
            "port": 465,
            "security": Security.SSL,
            "auth_method": AuthMethod.PASSWORD,
            **_mailbox("imap.strato.de"),
        },
        _(
            "No sending limit published by STRATO could be confirmed: ask STRATO for your "
            "package's limit. The limits stay as they are."
        ),
    ),
    Preset(
        "generic",
        _("Other provider"),
        {"port": 587, "security": Security.STARTTLS},
        _(
            "Port 587 with STARTTLS is the usual choice; your provider's documentation names "
            "the host."
        ),
    ),
)

BY_KEY = {preset.key: preset for preset in PRESETS}


def choices():
    return [("", _("Choose a provider…"))] + [(p.key, p.label) for p in PRESETS]


def as_json():
    """The presets for the browser: key -> {"values": {...}, "note": "..."}."""
    return json.dumps(
        {p.key: {"values": p.as_data(), "note": str(p.note)} for p in PRESETS},
        ensure_ascii=False,
    )
