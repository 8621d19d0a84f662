"""SPF of the sender domain: does it authorise the server?

Evaluated by pyspf, the reference implementation of RFC 7208 (the 10-lookup limit, void lookups,
``~all`` against ``-all``, a missing record, two records), asking only the check's resolvers:
its one DNS method is answered by the check's client (``ConfinedQuery``), never by dnspython's
process-wide default resolver.
"""

import ipaddress
from dataclasses import dataclass

import spf

from .choices import DomainCheckStatus as Status
from .sender_domain import Line, clean, record, unresolved

# Reserved (240.0.0.0/4): no server sends from it, so an SPF record that lets it pass lets anyone
# pass, and its evaluation walks every include (which counts the lookups).
PROBE_ADDRESS = "240.0.0.1"


def _is_spf(text):
    return text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")


def _is_all(term):
    return term.lower().lstrip("+-~?") == "all"


def _server_terms(sender, addresses):
    """The SPF terms that authorise the server: the provider's include, or its addresses."""
    if sender.provider:
        return [f"include:{sender.provider.spf_include}"]
    return [f"ip{ipaddress.ip_address(address).version}:{address}" for address in addresses or ()]


def spf_with(records, terms, all_term=None):
    """One SPF record: the mechanisms of ``records`` plus ``terms`` before the ``all`` (or the
    ``redirect``) that ends it; ``all_term`` replaces that ending."""
    kept, endings = [], []
    for text in records:
        for term in text.split()[1:]:
            ending = _is_all(term) or term.lower().startswith("redirect=")
            bucket = endings if ending else kept
            if term.lower() not in (t.lower() for t in bucket):
                bucket.append(term)
    kept += [term for term in terms if term.lower() not in (t.lower() for t in kept)]
    alls = [term for term in endings if _is_all(term)]
    ending = [all_term] if all_term else alls[:1] or endings[:1] or ["~all"]
    return " ".join(["v=spf1", *kept, *ending])


@dataclass
class SpfOutcome:
    result: str  # pass, fail, softfail, neutral, none, permerror, temperror
    explanation: str
    lookups: int
    void_lookups: int
    asked: list


class ConfinedQuery(spf.query):
    """pyspf's evaluation with its lookups asked through one check's ``DnsClient``.

    Replaces ``spf.query.dns`` (a subclass, no patch): pyspf's own lookup asks dnspython's default
    resolver. Kept from it: answers cached per query, names DNS cannot carry answer nothing, and
    the void-lookup limit. dnspython follows CNAMEs itself, so no CNAME chain is walked here.
    """

    def __init__(self, client, **kwargs):
        super().__init__(**kwargs)
        self.client = client

    def dns(self, name, qtype, cnames=None, ignore_void=False):
        name = str(name).lower().removesuffix(".")
        if not name or not all(0 < len(label) < 64 for label in name.split(".")):
            return []
        result = self.cache.get((name, qtype), [])
        if not result:
            for key, value in self.client.spf_answers(name, qtype):
                self.cache.setdefault(key, []).append(value)
            result = self.cache.get((name, qtype), [])
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result


def evaluate_spf(client, address, sender):
    """pyspf's verdict for mail from ``sender`` sent by ``address``, asking only ``client``."""
    start = len(client.asked)
    query = ConfinedQuery(
        client, i=address, s=sender.address, h=sender.host, timeout=client.timeout
    )
    try:
        result, _code, explanation = query.check()
    except Exception as error:  # pyspf's own faults on a hostile record are a broken record
        result, explanation = "permerror", str(error)
    return SpfOutcome(result, explanation, query.lookups, query.void_lookups, client.asked[start:])


_WORST_FIRST = ("fail", "softfail", "neutral", "none")
# How a server that is not authorised fares: "-all" refuses, "~all" marks as suspicious.
_NOT_AUTHORISED = {"fail": "spf_fail", "softfail": "spf_softfail"}


def _attention(reason, facts, value):
    return Line("spf", Status.ATTENTION, reason, facts, [record(facts["domain"], "TXT", value)])


def _spf_broken(outcome, facts, current, terms):
    """A record receivers treat as an error: too many lookups, void lookups, bad syntax."""
    if outcome.lookups > spf.MAX_LOOKUP:
        reason = "spf_too_many_lookups"
    elif outcome.void_lookups > spf.MAX_VOID_LOOKUPS:
        reason = "spf_void_lookups"
    else:
        reason = "spf_invalid"
        facts["problem"] = clean(outcome.explanation.removeprefix("SPF Permanent Error: "), 300)
    return _attention(reason, facts, spf_with([current], terms))


def check_spf(client, sender, addresses):
    facts = {"domain": sender.domain, "provider": sender.provider.name if sender.provider else ""}
    if not sender.provider and not addresses:
        return unresolved("spf", sender, addresses)
    terms = _server_terms(sender, addresses)
    records = [text for text in client.txt(sender.domain) if _is_spf(text)]
    if not records:
        return _attention("spf_missing", facts, spf_with([], terms))
    if len(records) > 1:
        facts["current"] = [clean(text) for text in records[:5]]
        return _attention("spf_two_records", facts, spf_with(records, terms))
    current = records[0]
    facts["current"] = clean(current)
    # An address no record names: a pass means anyone passes, and the walk counts every lookup.
    probe = evaluate_spf(client, PROBE_ADDRESS, sender)
    if probe.result == "temperror":
        raise client.unavailable()
    if probe.result == "permerror":
        return _spf_broken(probe, facts, current, terms)
    if probe.result == "pass":
        return _attention("spf_allows_all", facts, spf_with([current], terms, all_term="~all"))
    if sender.provider:
        if (sender.provider.spf_include, "TXT") in probe.asked:
            return Line("spf", Status.PASS, "spf_provider_included", facts)
        return _attention("spf_provider_missing", facts, spf_with([current], terms))
    return _server_line(client, sender, addresses, facts, current)


def _server_line(client, sender, addresses, facts, current):
    """Whether the record lets each of the server's addresses pass."""
    outcomes = {address: evaluate_spf(client, address, sender) for address in addresses}
    for outcome in outcomes.values():
        if outcome.result == "temperror":
            raise client.unavailable()
        if outcome.result == "permerror":
            return _spf_broken(outcome, facts, current, _server_terms(sender, addresses))
    failing = [address for address, outcome in outcomes.items() if outcome.result != "pass"]
    facts["addresses"] = failing or list(addresses)
    if not failing:
        return Line("spf", Status.PASS, "spf_authorises", facts)
    worst = min(
        (outcomes[address].result for address in failing),
        key=lambda result: _WORST_FIRST.index(result) if result in _WORST_FIRST else 2,
    )
    value = spf_with([current], _server_terms(sender, failing))
    return _attention(_NOT_AUTHORISED.get(worst, "spf_neutral"), facts, value)
