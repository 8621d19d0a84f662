"""Helpers for the sender-domain tests: a domain's zones and a site with a verified server."""

from django.utils import timezone

from wagtail_own_smtp.models import SmtpSettings

HOST = "mail.example.test"  # the site's own SMTP server, resolved by the test's DNS server
ADDRESS = "192.0.2.10"
DOMAIN = "example.test"
SENDER = f"surveys@{DOMAIN}"
DKIM_KEY = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAs3xUsurvey"


def good_zones(**changes):
    """A domain set up right for its own server: SPF authorises it (through an ``a:`` lookup),
    DMARC ``reject``, a DKIM key for the selector "mail". ``changes`` replace names (keyword
    ``spf``, ``dmarc``, ``dkim`` for the usual ones); None removes a name."""
    zones = {
        HOST: [("A", ADDRESS)],
        DOMAIN: [("TXT", "v=spf1 a:mail.example.test -all"), ("TXT", "site-verification=4f2a")],
        f"_dmarc.{DOMAIN}": [("TXT", "v=DMARC1; p=reject; rua=mailto:dmarc@example.test")],
        f"mail._domainkey.{DOMAIN}": [("TXT", DKIM_KEY)],
    }
    aliases = {"spf": DOMAIN, "dmarc": f"_dmarc.{DOMAIN}", "dkim": f"mail._domainkey.{DOMAIN}"}
    for name, records in changes.items():
        zones[aliases.get(name, name)] = records
    return {name: records for name, records in zones.items() if records is not None}


def spf(record):
    """The sender domain's TXT records with ``record`` as its SPF record."""
    return [("TXT", record), ("TXT", "site-verification=4f2a")]


def verified_server(site, host=HOST, sender=SENDER, selector="mail", auth_method="password"):
    """The site sends exclusively through ``host`` as ``sender``, confirmed by link."""
    smtp_settings, _created = SmtpSettings.objects.get_or_create(site=site)
    smtp_settings.delivery_mode = "own"
    smtp_settings.host = smtp_settings.verified_host = host
    smtp_settings.from_email = smtp_settings.verified_from_email = sender
    smtp_settings.auth_method = smtp_settings.verified_auth_method = auth_method
    smtp_settings.verified_port = smtp_settings.port = 587
    smtp_settings.verified_security = "starttls"
    smtp_settings.dkim_selector = selector
    smtp_settings.verification_status = "verified"
    smtp_settings.verified_at = timezone.now()
    smtp_settings.save()
    return smtp_settings


def lines_of(check):
    """The stored lines of a DomainCheck by their check ("spf", "dmarc", "dkim", "blocklists")."""
    return {line["check"]: line for line in check.lines}


def statuses(check):
    return {line["check"]: line["status"] for line in check.lines}


def suggested(line):
    """The records a line asks to add, as ``(name, type, value)``."""
    return [(record["name"], record["type"], record["value"]) for record in line["records"]]
