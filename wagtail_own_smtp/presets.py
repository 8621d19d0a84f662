"""Provider presets for the settings form: server parameters and the limits providers publish.

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
- Microsoft 365 (Exchange Online): "Exchange Online limits", section "Sending limits"
  (learn.microsoft.com, Exchange Online service description): recipient rate limit 10,000
  recipients a day, message rate limit 30 messages a minute. Preset: 10,000 a day and one
  message every 2 seconds.
- IONOS (Mail Basic / Mail Business): "What are the mass mailing limits?" (IONOS Help,
  ionos.com/help/email/general-topics/what-are-the-mass-mailing-limits), as published: 50 an
  hour in a contract's first week, 100 in the second, 400 up to day 30, then 500 an hour. (The
  German page "Welche Beschränkungen gibt es beim Versand von Massenmails" gives 5,000 recipients
  an hour after 30 days.) Preset: 500 an hour, the lower of the two published figures; new
  contracts need less.
- STRATO: smtp.strato.de with SSL/TLS on port 465, the server STRATO's help pages give for mail
  programs. We found no sending rate published by STRATO that we could confirm, so the preset
  leaves the limits as they are: ask STRATO for the figure of your package.
- Other provider: port 587 with STARTTLS, the usual submission port; nothing else changes.
"""

import json
from dataclasses import dataclass, field

from django.utils.translation import gettext_lazy as _

# The form fields a preset may fill; a limit a preset leaves out keeps its value.
SERVER_FIELDS = ("host", "port", "security")
LIMIT_FIELDS = ("min_interval", "max_per_hour", "max_per_day")


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
            if name in SERVER_FIELDS + LIMIT_FIELDS
        }


PRESETS = (
    Preset(
        "google_workspace",
        _("Google Workspace"),
        {
            "host": "smtp.gmail.com",
            "port": 587,
            "security": "starttls",
            "min_interval": 0,
            "max_per_hour": None,
            "max_per_day": 2000,
        },
        _(
            "Limits as published by Google (Gmail sending limits in Google Workspace): "
            "2,000 messages a day per user. With 2-step verification, use an app password."
        ),
    ),
    Preset(
        "gmail",
        _("Gmail (free account)"),
        {
            "host": "smtp.gmail.com",
            "port": 587,
            "security": "starttls",
            "min_interval": 0,
            "max_per_hour": None,
            "max_per_day": 500,
        },
        _(
            "Limits as published by Google (Gmail sending limits): 500 a day. With 2-step "
            "verification, use an app password."
        ),
    ),
    Preset(
        "microsoft365",
        _("Microsoft 365"),
        {
            "host": "smtp.office365.com",
            "port": 587,
            "security": "starttls",
            "min_interval": 2,
            "max_per_hour": None,
            "max_per_day": 10000,
        },
        _(
            "Limits as published by Microsoft (Exchange Online limits): 10,000 recipients a day "
            "and 30 messages a minute. SMTP AUTH must be enabled for the mailbox."
        ),
    ),
    Preset(
        "ionos",
        _("IONOS"),
        {
            "host": "smtp.ionos.de",
            "port": 587,
            "security": "starttls",
            "min_interval": 0,
            "max_per_hour": 500,
            "max_per_day": None,
        },
        _(
            "Limits as published by IONOS (What are the mass mailing limits?): 500 an hour for "
            "contracts older than 30 days; fewer in the first month (50, 100, then 400 an hour)."
        ),
    ),
    Preset(
        "strato",
        _("STRATO"),
        {"host": "smtp.strato.de", "port": 465, "security": "ssl"},
        _(
            "No sending limit published by STRATO could be confirmed: ask STRATO for your "
            "package's limit. The limits stay as they are."
        ),
    ),
    Preset(
        "generic",
        _("Other provider"),
        {"port": 587, "security": "starttls"},
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
