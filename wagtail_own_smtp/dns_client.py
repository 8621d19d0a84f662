"""Bounded DNS queries for the sender-domain check.

Every query goes to the resolvers of ``WAGTAIL_OWN_SMTP_DNS_RESOLVERS`` (the system's when unset)
and nowhere else, ends within ``DNS_TIMEOUT`` seconds, and none starts after the check's deadline
(``DOMAIN_CHECK_DEADLINE``). Names and records come from the editor's DNS: a name that cannot
exist answers as a missing name, never as an exception of the DNS library.
"""

import ipaddress
import time

import dns.exception
import dns.name
import dns.nameserver
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename
import spf
from django.core.exceptions import ImproperlyConfigured

from . import conf


class DnsUnavailable(Exception):
    """No answer: ``kind`` is "timeout" (none in time, or the deadline passed) or "failure" (the
    resolvers answered SERVFAIL or refused). The library's words stay out: they name the
    platform's resolvers."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


def parse_resolvers(entries):
    """``["192.0.2.53", "127.0.0.1:5353", "[2001:db8::53]:53", "2001:db8::53"]`` as
    ``[(address, port)]``; ImproperlyConfigured for anything else (a host name would need a
    resolver of its own)."""
    if isinstance(entries, str):
        entries = [entries]
    servers = []
    for entry in entries or ():
        text, port = str(entry).strip(), 53
        if text.startswith("["):
            text, bracket, rest = text[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                text = ""  # not an address: refused below
            elif rest:
                port = _port(entry, rest[1:])
        elif text.count(":") == 1:
            text, port = text.split(":")[0], _port(entry, text.split(":")[1])
        try:
            address = str(ipaddress.ip_address(text))
        except ValueError:
            raise ImproperlyConfigured(
                f"WAGTAIL_OWN_SMTP_DNS_RESOLVERS: {entry!r} is not an IP address "
                '("address" or "address:port")'
            ) from None
        servers.append((address, port))
    return servers


def _port(entry, text):
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ImproperlyConfigured(f"WAGTAIL_OWN_SMTP_DNS_RESOLVERS: bad port in {entry!r}")
    return int(text)


class BoundedResolver(dns.resolver.Resolver):
    """A dnspython resolver that asks only the given servers and stops at a deadline.

    Whoever calls it (this module, or the SPF library through ``spf_check.ConfinedQuery``), each
    query's lifetime is the per-query timeout or what is left of the deadline, whichever is
    shorter, and no search domain is ever appended to a name.
    """

    def __init__(self, servers, timeout, deadline):
        try:
            super().__init__(configure=not servers)  # no setting: the system's resolver
        except dns.resolver.NoResolverConfiguration:
            super().__init__(configure=False)  # none to ask: every query fails, "could not check"
        if servers:
            self.nameservers = [dns.nameserver.Do53Nameserver(a, port) for a, port in servers]
        self.search = []
        self.domain = dns.name.root
        self.use_search_by_default = False
        self.query_timeout = timeout
        self.timeout = timeout
        self.deadline = deadline
        self.asked = []  # (name, type) in order: what the check looked at
        self.timed_out = False  # a query found no answer in time

    def remaining(self):
        return self.deadline - time.monotonic()

    def resolve(
        self,
        qname,
        rdtype=dns.rdatatype.A,
        rdclass=dns.rdataclass.IN,
        tcp=False,
        source=None,
        raise_on_no_answer=True,
        source_port=0,
        lifetime=None,
        search=None,
    ):
        remaining = self.remaining()
        if remaining <= 0:
            self.timed_out = True
            raise dns.exception.Timeout(timeout=0)
        try:
            name = dns.name.from_text(str(qname)) if isinstance(qname, str) else qname
        except (dns.exception.DNSException, UnicodeError, ValueError):
            # A name that cannot exist (an empty or over-long label, bad IDNA) is a missing name.
            raise dns.resolver.NXDOMAIN(qnames=[dns.name.root]) from None
        kind = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))
        self.asked.append((name.to_text(omit_final_dot=True).lower(), kind))
        try:
            return super().resolve(
                name,
                rdtype,
                rdclass,
                tcp,
                source,
                raise_on_no_answer,
                source_port,
                lifetime=min(self.query_timeout, remaining),
                search=False,
            )
        except dns.exception.Timeout:
            self.timed_out = True
            raise


class DnsClient:
    """The queries of one check: TXT records, addresses, blocklist lookups."""

    def __init__(self, resolver):
        self.resolver = resolver

    @classmethod
    def from_settings(cls, deadline=None):
        """A client for the configured resolvers; its deadline ``DOMAIN_CHECK_DEADLINE`` seconds
        from now unless given (a monotonic moment)."""
        servers = parse_resolvers(conf.get("DNS_RESOLVERS"))
        if deadline is None:
            deadline = time.monotonic() + float(conf.get("DOMAIN_CHECK_DEADLINE"))
        return cls(BoundedResolver(servers, float(conf.get("DNS_TIMEOUT")), deadline))

    @property
    def asked(self):
        return self.resolver.asked

    @property
    def timeout(self):
        return self.resolver.query_timeout

    def unavailable(self):
        """Why a query the SPF library made found no answer."""
        return DnsUnavailable("timeout" if self.resolver.timed_out else "failure")

    def _answer(self, name, rdtype):
        """The records of ``name`` (``[]`` when the name or the type does not exist)."""
        try:
            return list(self.resolver.resolve(name, rdtype))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise DnsUnavailable("timeout") from None
        except (dns.exception.DNSException, OSError):  # OSError: a resolver unreachable from here
            raise DnsUnavailable("failure") from None

    def spf_answers(self, name, qtype):
        """What pyspf's own lookup returns for ``name``: ``[((name, qtype), value), ...]``,
        TXT values as their strings (bytes), raising pyspf's TempError when DNS does not answer."""
        try:
            records = self._answer(name, qtype)
        except DnsUnavailable as error:
            raise spf.TempError(f"DNS {error.kind}") from None
        if qtype in ("A", "AAAA"):
            return [((name, qtype), record.address) for record in records]
        if qtype == "MX":
            return [((name, qtype), (record.preference, record.exchange)) for record in records]
        if qtype == "PTR":
            return [((name, qtype), record.target.to_text(True)) for record in records]
        return [((name, qtype), record.strings) for record in records]

    def txt(self, name):
        """Each TXT record of ``name`` as one text (its strings joined), undecodable bytes
        replaced."""
        return [
            b"".join(record.strings).decode("utf-8", "replace")
            for record in self._answer(name, "TXT")
        ]

    def addresses(self, host):
        """The IPv4 and IPv6 addresses of ``host`` (itself when it is an address literal)."""
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        return [record.address for kind in ("A", "AAAA") for record in self._answer(host, kind)]

    def blocklist_entry(self, address, zone):
        """``(codes, reasons)`` when ``address`` is listed in the DNS blocklist ``zone``, else
        ``None``: the A records (127.0.0.x) and the TXT reasons the zone gives."""
        reverse = dns.reversename.from_address(address)
        suffix = dns.reversename.ipv4_reverse_domain
        if ipaddress.ip_address(address).version == 6:
            suffix = dns.reversename.ipv6_reverse_domain
        name = f"{reverse.relativize(suffix).to_text()}.{zone.strip('.')}"
        codes = [record.address for record in self._answer(name, "A")]
        if not codes:
            return None
        return codes, self.txt(name)
