"""DNS servers on loopback for the sender-domain check: an authoritative one answering from given
zones (dnslib), for the tests and the demo, and one that reads every query and never answers."""

import socket
import threading

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

_RDATA = {"A": A, "AAAA": AAAA, "CNAME": CNAME}


def _txt(value):
    """A TXT record's strings: a long value is split into strings of 255 bytes, as DNS needs."""
    data = value if isinstance(value, bytes) else value.encode()
    return TXT([data[start : start + 255] for start in range(0, len(data), 255)] or [b""])


class ZoneResolver(BaseResolver):
    """Answers from ``zones``: ``{name: [(type, value), ...]}`` (TXT values may be bytes).

    A name that is not there is NXDOMAIN, a name without the asked type an empty answer, and a
    CNAME is followed within the zones, as a recursive resolver would.
    """

    def __init__(self, zones):
        self.zones = {}
        self.asked = []  # (name, type) in the order they came
        self.replace(zones)

    def replace(self, zones):
        self.zones = {name.lower().rstrip("."): list(records) for name, records in zones.items()}

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        kind = QTYPE[request.q.qtype]
        self.asked.append((name, kind))
        for _hop in range(8):
            records = self.zones.get(name)
            if records is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            target = next((value for rtype, value in records if rtype == "CNAME"), None)
            if target is None or kind == "CNAME":
                break
            reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(target), ttl=60))
            name = target.lower().rstrip(".")
        for rtype, value in records:
            if rtype == kind:
                rdata = _txt(value) if rtype == "TXT" else _RDATA[rtype](value)
                reply.add_answer(RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=60))
        return reply


class LocalDnsServer:
    """An authoritative-style DNS server on 127.0.0.1 (UDP) with the given zones."""

    def __init__(self, zones=None, port=0):
        self.resolver = ZoneResolver(zones or {})
        logger = DNSLogger("-request,-reply,-truncated")
        self.server = DNSServer(self.resolver, port=port, address="127.0.0.1", logger=logger)
        self.port = self.server.server.server_address[1]

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def asked(self):
        return self.resolver.asked

    def replace(self, zones):
        self.resolver.replace(zones)

    def start(self):
        self.server.start_thread()
        return self

    def stop(self):
        self.server.stop()
        self.server.server.server_close()


class DeafDnsServer:
    """A UDP socket on 127.0.0.1 that reads every query and never answers."""

    def __init__(self):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.queries = 0
        self._running = True
        self._thread = threading.Thread(target=self._read, daemon=True)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _read(self):
        while self._running:
            try:
                self.socket.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._running = False
        self._thread.join(timeout=2)
        self.socket.close()
