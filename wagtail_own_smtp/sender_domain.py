"""Who the sender-domain check looks at, and what its lines are made of.

A ``Sender`` is the verified sender address and server of a site (the check never looks at
parameters that await confirmation); a ``Line`` is one result as stored: a status, a reason code
with its facts (worded in ``domain_report``) and the DNS records to add or change. Text read from
DNS is the editor's: ``clean`` makes it fit to store and show, and templates escape it.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field

import dns.exception
import dns.name

from . import conf
from .choices import AuthMethod
from .choices import DomainCheckStatus as Status
from .presets import PRESETS
from .smtp_client import clean_reply

RECORD_CHARS = 1024  # of a record shown; real SPF and DMARC records are far shorter


@dataclass(frozen=True)
class Provider:
    """A provider whose servers sign and send for the domain: its documented SPF include and
    DKIM selectors."""

    key: str
    name: str
    spf_include: str
    dkim_selectors: tuple


MICROSOFT = Provider(
    "microsoft", "Microsoft 365", "spf.protection.outlook.com", ("selector1", "selector2")
)
GOOGLE = Provider("google", "Google Workspace", "_spf.google.com", ("google",))
_PROVIDER_OF_PRESET = {"microsoft365": MICROSOFT, "microsoft365_app": MICROSOFT}
_PROVIDER_OF_PRESET.update(google_workspace=GOOGLE, gmail=GOOGLE)


def provider_of(host, auth_method):
    """Microsoft 365 or Google when the server is theirs (by its login or its preset host)."""
    if auth_method in (AuthMethod.MICROSOFT, AuthMethod.MICROSOFT_APP):
        return MICROSOFT
    if auth_method == AuthMethod.GOOGLE:
        return GOOGLE
    host = host.lower().rstrip(".")
    for preset in PRESETS:
        if preset.values.get("host") == host and preset.key in _PROVIDER_OF_PRESET:
            return _PROVIDER_OF_PRESET[preset.key]
    return None


@dataclass(frozen=True)
class Sender:
    """What one check looks at: the verified sender's domain and the verified server."""

    address: str
    domain: str  # ASCII (IDNA) form, lower case
    host: str
    provider: Provider | None
    dkim_selector: str
    zones: tuple

    @property
    def key(self):
        """Equal for sites whose check would ask the same questions (the result is shared)."""
        provider = self.provider.key if self.provider else ""
        facts = [self.domain, self.host.lower(), provider, self.dkim_selector.lower(), self.zones]
        return hashlib.sha256(json.dumps(facts).encode()).hexdigest()


def ascii_domain(domain):
    """The domain as DNS knows it (IDNA), or "" when it cannot be a DNS name."""
    try:
        return dns.name.from_text(domain).to_text(omit_final_dot=True).lower()
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return ""


def sender_of(smtp_settings):
    """The sender the check looks at: the confirmed server and address (never parameters that
    await confirmation), or None when the site has no verified server."""
    address = smtp_settings.verified_from_email
    host = smtp_settings.verified_host
    domain = ascii_domain(address.rpartition("@")[2]) if address else ""
    if not (domain and host and smtp_settings.verified_at):
        return None
    return Sender(
        address=address,
        domain=domain,
        host=host,
        provider=provider_of(host, smtp_settings.verified_auth_method),
        dkim_selector=smtp_settings.dkim_selector or "",
        zones=tuple(str(zone).strip(".").lower() for zone in conf.get("DNSBL_ZONES") or ()),
    )


@dataclass
class Line:
    """One line of the checklist, as stored (JSON) and worded by ``domain_report``."""

    check: str  # "spf", "dmarc", "dkim", "blocklists"
    status: str  # DomainCheckStatus
    reason: str  # a key of domain_report.REASONS
    facts: dict = field(default_factory=dict)
    # [{"name", "type", "value", "fill"}]: "fill" names what the editor appends (a key, say).
    records: list = field(default_factory=list)

    def as_dict(self):
        return asdict(self)


def clean(text, limit=RECORD_CHARS):
    """Text from DNS fit to store and show: valid UTF-8, no control characters, capped."""
    return clean_reply(text, limit).replace("\n", " ")


def record(name, kind, value, fill=""):
    return {"name": name, "type": kind, "value": clean(value), "fill": fill}


def unresolved(name, sender, addresses):
    """The line for a check that needs the server's addresses when they are unknown."""
    reason = "host_unanswered" if addresses is None else "host_unresolved"
    return Line(name, Status.UNKNOWN, reason, {"host": sender.host})
