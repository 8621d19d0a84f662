"""The sender-domain check in words: each line's title, why it matters, what was found and the
record to add, for the status panel's checklist and the summary line of ``own_smtp_status``.

Results are stored as reason codes with facts (``domain_check.Line``), so every editor reads them
in their own language. The facts hold text from the editor's DNS: they are plain strings here,
which templates escape.
"""

from django.urls import reverse
from django.utils import formats
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from .choices import DomainCheckStatus as Status
from .sender_domain import GOOGLE, MICROSOFT, sender_of

TITLES = {
    "spf": gettext_lazy("SPF: does your domain authorise the server?"),
    "dmarc": gettext_lazy("DMARC: your domain's policy"),
    "dkim": gettext_lazy("DKIM: your domain's signing key"),
    "blocklists": gettext_lazy("Blocklists: is the server listed?"),
}

WHY = {
    "spf": gettext_lazy(
        "Receivers compare the server that delivers a message with the servers your domain "
        "lists in SPF; Gmail, Yahoo and Microsoft junk or refuse mail from a server not listed."
    ),
    "dmarc": gettext_lazy(
        "DMARC tells receivers what to do with mail in your domain's name that fails SPF and "
        "DKIM; Gmail and Yahoo require a DMARC record of senders of bulk mail."
    ),
    "dkim": gettext_lazy(
        "A DKIM signature proves that a message comes unaltered from your domain, and unlike SPF "
        "it still passes when the message is forwarded."
    ),
    "blocklists": gettext_lazy(
        "Many receivers refuse or junk all mail from a server on a DNS blocklist, whatever it says."
    ),
}

REASONS = {
    "spf_authorises": gettext_lazy(
        "The SPF record of %(domain)s authorises the server (%(addresses)s)."
    ),
    "spf_provider_included": gettext_lazy(
        "The SPF record of %(domain)s includes the servers of %(provider)s."
    ),
    "spf_missing": gettext_lazy("%(domain)s has no SPF record. Add this TXT record:"),
    "spf_two_records": gettext_lazy(
        "%(domain)s has more than one SPF record; receivers treat that as an error and ignore "
        "them all. Replace them with this one:"
    ),
    "spf_too_many_lookups": gettext_lazy(
        "The SPF record of %(domain)s needs more than 10 DNS lookups (include, a, mx, exists, "
        "redirect), which receivers treat as an error. Remove includes you no longer need or "
        "replace them with the addresses they stand for, keeping the server in it:"
    ),
    "spf_void_lookups": gettext_lazy(
        "The SPF record of %(domain)s names more than two domains that do not exist, which "
        "receivers treat as an error. Remove them, keeping the server in it:"
    ),
    "spf_invalid": gettext_lazy(
        "Receivers cannot read the SPF record of %(domain)s (%(problem)s). Correct it:"
    ),
    "spf_allows_all": gettext_lazy(
        "The SPF record of %(domain)s lets every server in the world send in your domain's name, "
        "so it proves nothing. Change it to:"
    ),
    "spf_provider_missing": gettext_lazy(
        "The SPF record of %(domain)s does not include the servers of %(provider)s. Change it to:"
    ),
    "spf_fail": gettext_lazy(
        "The SPF record of %(domain)s does not list the server (%(addresses)s) and ends with "
        "-all: receivers refuse its mail. Change it to:"
    ),
    "spf_softfail": gettext_lazy(
        "The SPF record of %(domain)s does not list the server (%(addresses)s) and ends with "
        "~all: receivers take its mail as suspicious, often junk it, and DMARC counts it as "
        "failed. Change it to:"
    ),
    "spf_neutral": gettext_lazy(
        "The SPF record of %(domain)s does not list the server (%(addresses)s), so its mail "
        "does not pass SPF. Change it to:"
    ),
    "dmarc_missing": gettext_lazy(
        "%(domain)s has no DMARC record. Add this one: at first it only asks receivers for "
        "reports (use a mailbox you read for them):"
    ),
    "dmarc_two_records": gettext_lazy(
        "%(record_domain)s has more than one DMARC record; receivers ignore them all. Keep only "
        "one, for example:"
    ),
    "dmarc_invalid": gettext_lazy(
        "The DMARC record of %(record_domain)s has no valid policy (p=none, quarantine or "
        "reject), so receivers ignore it. Replace it:"
    ),
    "dmarc_none": gettext_lazy(
        "The DMARC policy of %(domain)s is “none”: receivers only report mail that fails, and "
        "anyone can still send in your domain's name. Once the reports show that all your mail "
        "passes, change it to:"
    ),
    "dmarc_enforced": gettext_lazy(
        "The DMARC policy of %(domain)s is “%(policy)s”: receivers junk or refuse mail in its "
        "name that fails."
    ),
    "dkim_published": gettext_lazy("A DKIM key is published for the selector %(selectors)s."),
    "dkim_revoked": gettext_lazy(
        "The DKIM key of the selector %(selectors)s is revoked (empty p=). Publish the key your "
        "server signs with:"
    ),
    "dkim_no_selector": gettext_lazy(
        "Enter the selector your server signs with in the field “DKIM selector” to have its key "
        "checked; your provider or server administrator knows it."
    ),
    "blocklisted": gettext_lazy(
        "The server is listed. Find and end the cause (a hacked account or form sending spam), "
        "then ask the blocklist to remove it:"
    ),
    "not_listed": gettext_lazy("The server (%(addresses)s) is not listed on %(zones)s."),
    "blocklist_unanswered": gettext_lazy(
        "%(zones)s did not answer. Some blocklists refuse queries from public DNS resolvers; the "
        "platform's administrator can name other resolvers (WAGTAIL_OWN_SMTP_DNS_RESOLVERS)."
    ),
    "host_unresolved": gettext_lazy("The server's name %(host)s has no address in DNS."),
    "host_unanswered": gettext_lazy(
        "The server's name %(host)s could not be looked up: DNS did not answer in time."
    ),
}

_DKIM_MISSING = {
    MICROSOFT.key: gettext_lazy(
        "No DKIM key is published for selector1 or selector2. Turn on DKIM signing for "
        "%(domain)s in the Microsoft Defender portal (Email authentication settings, DKIM) and "
        "add the two CNAME records it shows:"
    ),
    GOOGLE.key: gettext_lazy(
        "No DKIM key is published for the selector “google”. Generate the key in the Google "
        "Admin console (Apps, Google Workspace, Gmail, Authenticate email), add this TXT "
        "record and start signing there:"
    ),
    "": gettext_lazy(
        "No DKIM key is published for the selector %(selectors)s. Add the public key your "
        "server signs with:"
    ),
}

_DNS_PROBLEMS = {
    "timeout": gettext_lazy(
        "DNS did not answer in time. The check runs again tomorrow, or click “Check again”."
    ),
    "failure": gettext_lazy(
        "DNS answered with an error (the domain's name servers failed). The check runs again "
        "tomorrow, or click “Check again”."
    ),
}

_FILLS = {
    "microsoft_target": gettext_lazy("the rest as the Defender portal shows it"),
    "google_key": gettext_lazy("the key from the Admin console"),
    "server_key": gettext_lazy("your server's public key"),
}

_RELAY_NOTE = gettext_lazy(
    "If your server passes its mail on to another host (a relay or smarthost), that host's "
    "addresses belong in SPF instead."
)
_ALIGNMENT = gettext_lazy(
    "For this site, DMARC passes when SPF authorises the server for %(domain)s (your sender "
    "address is also the envelope sender) or when the mail carries a DKIM signature of "
    "%(domain)s."
)


class _Facts(dict):
    """A line's facts for ``%`` formatting: lists joined, missing ones empty (a stored result of
    another version must never break the page)."""

    def __getitem__(self, key):
        value = self.get(key, "")
        if isinstance(value, list | tuple):
            return ", ".join(str(item) for item in value)
        return value


def _reason_text(line):
    facts = _Facts(line.get("facts") or {})
    reason = line.get("reason")
    if reason == "dns_unanswered":
        template = _DNS_PROBLEMS.get(facts.get("problem"), _DNS_PROBLEMS["failure"])
    elif reason == "dkim_missing":
        template = _DKIM_MISSING.get(_provider_key(facts), _DKIM_MISSING[""])
    else:
        template = REASONS.get(reason, "")
    try:
        return str(template) % facts
    except (TypeError, ValueError):
        return str(template)


def _provider_key(facts):
    for provider in (MICROSOFT, GOOGLE):
        if facts.get("provider") == provider.name:
            return provider.key
    return ""


def _notes(line):
    facts = line.get("facts") or {}
    notes = []
    if line.get("check") == "spf" and line.get("status") != Status.PASS:
        if not facts.get("provider"):
            notes.append(str(_RELAY_NOTE))
    if line.get("check") == "dmarc" and facts.get("domain"):
        notes.append(str(_ALIGNMENT) % {"domain": facts["domain"]})
    return notes


def worded(line):
    """One stored line as the panel shows it."""
    status = line.get("status")
    if status not in Status.values:
        status = Status.UNKNOWN
    facts = line.get("facts") or {}
    return {
        "check": line.get("check", ""),
        "status": status,
        "status_label": Status(status).label,
        "title": TITLES.get(line.get("check"), ""),
        "why": WHY.get(line.get("check"), ""),
        "text": _reason_text(line),
        "notes": _notes(line),
        "records": [
            {**record, "fill_label": _FILLS.get(record.get("fill"), "")}
            for record in line.get("records") or []
            if isinstance(record, dict)
        ],
        "listed": [item for item in facts.get("listed") or [] if isinstance(item, dict)],
    }


def counts(lines):
    """How many lines passed, need attention, could not be checked."""
    statuses = [line.get("status") for line in lines]
    return {status: statuses.count(status) for status in Status.values}


def summary(check):
    """ "example.org, checked 2 Dec 2026 10:00: 2 pass, 1 needs attention, 1 not checked"."""
    tally = counts(check.lines)
    parts = [
        ngettext("%(count)s passes", "%(count)s pass", tally[Status.PASS])
        % {"count": tally[Status.PASS]},
        ngettext("%(count)s needs attention", "%(count)s need attention", tally[Status.ATTENTION])
        % {"count": tally[Status.ATTENTION]},
        ngettext(
            "%(count)s could not be checked",
            "%(count)s could not be checked",
            tally[Status.UNKNOWN],
        )
        % {"count": tally[Status.UNKNOWN]},
    ]
    return _("%(domain)s, checked %(when)s: %(counts)s") % {
        "domain": check.domain,
        "when": formats.date_format(check.checked_at, "SHORT_DATETIME_FORMAT"),
        "counts": ", ".join(parts),
    }


def checklist(smtp_settings, check):
    """The status panel's checklist: None when the site has no verified server to check."""
    sender = sender_of(smtp_settings)
    if sender is None:
        return None
    current = check is not None and check.sender_key == sender.key
    return {
        "domain": sender.domain,
        "check": check if current else None,
        "lines": [worded(line) for line in check.lines] if current else [],
        "counts": counts(check.lines) if current else None,
        "check_url": reverse("wagtail_own_smtp_admin:check_domain", args=[smtp_settings.site_id]),
    }
