"""The sender-domain check: will receivers take this site's mail from its server as genuine?

Four lines, computed from DNS alone (``dns_client``: only the configured resolvers, every query
bounded): SPF authorises the server (``spf_check``), DMARC's policy, DKIM keys published for the
selectors the server signs with, and the server's addresses in DNS blocklists. Nothing the DNS
answers ends the check early or breaks it: a line that finds no answer says "could not check".
"""

import ipaddress

from .choices import DomainCheckStatus as Status
from .dns_client import DnsUnavailable
from .sender_domain import GOOGLE, MICROSOFT, Line, clean, record, unresolved
from .spf_check import check_spf

REASON_CHARS = 300  # of a blocklist's reason text
DMARC_PARENTS = 4  # parents of the sender domain asked for a DMARC record (the DMARC tree walk)


def run_checks(sender, client):
    """Every line of the checklist. A line whose queries fail or outlast the deadline says
    "could not check"; nothing the DNS answers ends the check early."""
    try:
        addresses = client.addresses(sender.host)
    except DnsUnavailable:
        addresses = None
    lines = []
    for name, check in (
        ("spf", check_spf),
        ("dmarc", check_dmarc),
        ("dkim", check_dkim),
        ("blocklists", check_blocklists),
    ):
        try:
            line = check(client, sender, addresses)
        except DnsUnavailable as problem:
            line = Line(name, Status.UNKNOWN, "dns_unanswered", {"problem": problem.kind})
        if line is not None:
            lines.append(line)
    return lines


# -- DMARC -------------------------------------------------------------------------------------


def dmarc_tags(text):
    """``{"v": "DMARC1", "p": "reject", ...}`` of a DMARC record (names lower case)."""
    tags = {}
    for part in text.split(";"):
        name, equals, value = part.partition("=")
        if equals and name.strip():
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def dmarc_with(text, name, value):
    """The record with tag ``name`` set to ``value`` (added after ``v=`` when missing)."""
    parts = [part.strip() for part in text.split(";") if part.strip()]
    for index, part in enumerate(parts):
        if part.partition("=")[0].strip().lower() == name:
            parts[index] = f"{name}={value}"
            break
    else:
        parts.insert(1, f"{name}={value}")
    return "; ".join(parts)


def _dmarc_candidates(domain):
    """The sender domain, then its parents (not the top-level domain): where a policy may be."""
    labels = domain.split(".")
    return [".".join(labels[index:]) for index in range(len(labels) - 1)][: DMARC_PARENTS + 1]


def find_dmarc(client, domain):
    """``(name, records)``: the first of the domain and its parents with a DMARC record, or
    ``(None, [])``."""
    for name in _dmarc_candidates(domain):
        records = [t for t in client.txt(f"_dmarc.{name}") if t.lower().startswith("v=dmarc1")]
        if records:
            return name, records
    return None, []


def _dmarc_attention(reason, facts, name, value):
    return Line("dmarc", Status.ATTENTION, reason, facts, [record(f"_dmarc.{name}", "TXT", value)])


def check_dmarc(client, sender, addresses):
    domain = sender.domain
    facts = {"domain": domain}
    new_record = f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"
    name, records = find_dmarc(client, domain)
    if not records:
        return _dmarc_attention("dmarc_missing", facts, domain, new_record)
    facts.update(record_domain=name, current=clean(records[0]))
    if len(records) > 1:
        facts["current"] = [clean(text) for text in records[:5]]
        return _dmarc_attention("dmarc_two_records", facts, name, records[0])
    tags = dmarc_tags(records[0])
    # A policy found at a parent applies to its subdomains through "sp=" where it has one.
    tag = "sp" if name != domain and "sp" in tags else "p"
    policy = facts["policy"] = clean(tags.get(tag, "").lower(), 40)
    if policy not in ("none", "quarantine", "reject"):
        return _dmarc_attention("dmarc_invalid", facts, name, new_record)
    if policy == "none":
        value = dmarc_with(records[0], tag, "quarantine")
        return _dmarc_attention("dmarc_none", facts, name, value)
    return Line("dmarc", Status.PASS, "dmarc_enforced", facts)


# -- DKIM --------------------------------------------------------------------------------------


def dkim_key(text):
    """The public key (``p=``) of a DKIM key record, "" when revoked, None when not one."""
    tags = dmarc_tags(text)  # the same tag=value; syntax
    if "p" not in tags or tags.get("v", "DKIM1").upper() != "DKIM1":
        return None
    return tags["p"]


def _dkim_records(sender, selectors):
    """What to publish for each selector: Microsoft's CNAMEs, Google's or the server's key."""
    domain = sender.domain
    if sender.provider is MICROSOFT:
        dashed = domain.replace(".", "-")
        return [
            record(
                f"{selector}._domainkey.{domain}",
                "CNAME",
                f"{selector}-{dashed}._domainkey.",
                fill="microsoft_target",
            )
            for selector in selectors
        ]
    fill = "google_key" if sender.provider is GOOGLE else "server_key"
    return [
        record(f"{selector}._domainkey.{domain}", "TXT", "v=DKIM1; k=rsa; p=", fill=fill)
        for selector in selectors
    ]


def check_dkim(client, sender, addresses):
    if sender.provider:
        selectors = sender.provider.dkim_selectors
    else:
        selectors = (sender.dkim_selector,) if sender.dkim_selector else ()
    facts = {
        "domain": sender.domain,
        "selectors": list(selectors),
        "provider": sender.provider.name if sender.provider else "",
    }
    if not selectors:
        return Line("dkim", Status.UNKNOWN, "dkim_no_selector", facts)
    published, revoked = [], []
    for selector in selectors:
        keys = [dkim_key(t) for t in client.txt(f"{selector}._domainkey.{sender.domain}")]
        if any(keys):
            published.append(selector)
        elif "" in keys:
            revoked.append(selector)
    if published:
        facts["selectors"] = published
        return Line("dkim", Status.PASS, "dkim_published", facts)
    reason = "dkim_revoked" if revoked else "dkim_missing"
    return Line("dkim", Status.ATTENTION, reason, facts, _dkim_records(sender, selectors))


# -- DNS blocklists ----------------------------------------------------------------------------


def is_listing(code):
    """A blocklist's answer that lists the address: 127.0.0.0/8, except 127.255.255.0/24, which
    Spamhaus answers when it refuses the query (a public resolver, or over the free limit)."""
    try:
        address = ipaddress.ip_address(code)
    except ValueError:
        return False
    refused = ipaddress.ip_network("127.255.255.0/24")
    return address in ipaddress.ip_network("127.0.0.0/8") and address not in refused


def check_blocklists(client, sender, addresses):
    if not sender.zones:
        return None  # the platform looks up no blocklist
    if not addresses:
        return unresolved("blocklists", sender, addresses)
    listed, unanswered = [], []
    for address in addresses:
        for zone in sender.zones:
            try:
                entry = client.blocklist_entry(address, zone)
            except DnsUnavailable:
                entry = ([], [])
            if entry is None:
                continue
            codes, reasons = entry
            if not any(is_listing(code) for code in codes):
                unanswered.append(zone)
                continue
            reason = clean(" ".join(reasons), REASON_CHARS)
            listed.append({"address": address, "zone": zone, "reason": reason})
    facts = {"addresses": list(addresses), "zones": list(sender.zones)}
    if listed:
        return Line("blocklists", Status.ATTENTION, "blocklisted", {**facts, "listed": listed})
    if unanswered:
        facts["zones"] = sorted(set(unanswered))
        return Line("blocklists", Status.UNKNOWN, "blocklist_unanswered", facts)
    return Line("blocklists", Status.PASS, "not_listed", facts)
