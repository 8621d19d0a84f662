"""A real SMTP server on loopback (aiosmtpd) for the demo and the tests.

It speaks plain SMTP, STARTTLS or implicit TLS with a certificate from a throw-away CA, can require
AUTH (a password, or OAuth access tokens by AUTH XOAUTH2 checked against a
``local_identity.LocalIdentityProvider``), keeps what it receives (in memory and, for the demo
inbox, in a Maildir), and can be told to refuse recipients, answer DATA with an error, or never
answer at all.
"""

import asyncio
import base64
import binascii
import datetime
import email.utils
import ipaddress
import json
import mailbox
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_certificates(directory, hostnames=("localhost",), ca_name="wagtail-own-smtp demo CA"):
    """Write ca.pem, cert.pem and key.pem into directory and return their paths.

    The server certificate is signed by a fresh CA and valid for ``hostnames`` (names or IPs).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for name in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
    }
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list
    data: bytes
    arrived_at: float
    authenticated_as: str | None = None
    tls: bool = False
    auth_mechanism: str | None = None  # "PLAIN", "LOGIN" or "XOAUTH2"

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class Behaviour:
    """How the server misbehaves; change the attributes while it runs."""

    refuse_recipients: dict = field(default_factory=dict)  # address -> "550 5.1.1 No such user"
    data_reply: str | None = None  # e.g. "451 4.3.0 Try again later" for every DATA
    mail_reply: str | None = None  # e.g. "553 5.7.1 Sender not allowed" for every MAIL FROM
    auth_reply: str | None = None  # e.g. "535 5.7.139 Authentication unsuccessful" for every AUTH
    # Every RCPT TO refused with this reply (Postfix refuses a sender at RCPT TO), e.g.
    # "553 5.7.1 <a@b>: Sender address rejected: not owned by user a@b"
    rcpt_reply: str | None = None
    delay: float = 0.0  # seconds added before answering DATA
    quit_delay: float = 0.0  # seconds added before answering QUIT (a slow, distant server)
    pipelining: bool = False  # offer PIPELINING (RFC 2920), as Postfix and the big providers do
    # Probability of answering "421" to each MAIL, RCPT and DATA (the fault tests' flaky server);
    # drawn from ``rng``, seeded, so a run can be repeated.
    random_421: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(421))
    answered_421: int = 0

    def flaky_reply(self):
        """A 421 reply with probability ``random_421``, else None."""
        if self.random_421 and self.rng.random() < self.random_421:
            self.answered_421 += 1
            return "421 4.3.2 Service not available, closing transmission channel"
        return None


class _Handler:
    def __init__(self, server):
        self.server = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.server.sessions.add(id(server))
        if self.server.behaviour.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_QUIT(self, server, session, envelope):
        self.server.quit_sessions.add(id(server))
        await asyncio.sleep(self.server.behaviour.quit_delay)
        self.server.quit_answered_at = time.monotonic()
        return "221 Bye"

    async def handle_AUTH(self, server, session, envelope, args):
        return self.server.behaviour.auth_reply or MISSING

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.server.mail_commands += 1
        # The commands the client sent before this one's reply: RCPT TO and DATA when it pipelines.
        self.server.sent_with_mail.append(bytes(server._reader._buffer).count(b"\n"))
        reply = self.server.behaviour.mail_reply or self.server.behaviour.flaky_reply()
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = (
            self.server.behaviour.refuse_recipients.get(address.lower())
            or self.server.behaviour.rcpt_reply
            or self.server.behaviour.flaky_reply()
        )
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        behaviour = self.server.behaviour
        if behaviour.delay:
            # How many conversations wait for this reply at once: their clients go side by side.
            self.server.in_data += 1
            self.server.peak_in_data = max(self.server.peak_in_data, self.server.in_data)
            try:
                await asyncio.sleep(behaviour.delay)
            finally:
                self.server.in_data -= 1
        if behaviour.data_reply:
            return behaviour.data_reply
        if reply := behaviour.flaky_reply():
            return reply
        login = session.auth_data
        self.server.store(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=envelope.original_content or envelope.content,
                arrived_at=time.monotonic(),
                authenticated_as=login.decode() if isinstance(login, bytes) else login,
                tls=session.ssl is not None or self.server.security == "ssl",
                auth_mechanism=getattr(session, "auth_mechanism", None),
            )
        )
        return "250 2.0.0 Message accepted"


class _XOAuth2Handler(_Handler):
    """Adds AUTH XOAUTH2 (aiosmtpd offers every ``auth_<NAME>`` method of the handler)."""

    async def auth_XOAUTH2(self, server, args):
        if len(args) > 1:
            blob = args[1].encode()
            try:
                blob = base64.b64decode(blob, validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        user, token = _parse_xoauth2(blob)
        accepted = user is not None and self.server.xoauth2.bearer_valid(user, token)
        self.server.xoauth2_logins.append((user, accepted))
        if accepted:
            server.session.auth_mechanism = "XOAUTH2"
            return AuthResult(success=True, auth_data=user)
        # Like Gmail and Exchange Online: the refusal as a challenge, then the final reply.
        challenge = json.dumps(
            {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
        )
        if await server.challenge_auth(challenge) is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=self.server.xoauth2_refusal)


def _parse_xoauth2(blob):
    """(user, token) of ``user=<user>\x01auth=Bearer <token>\x01\x01``, or (None, None)."""
    try:
        text = blob.decode()
    except UnicodeDecodeError:
        return None, None
    if not text.endswith("\x01\x01"):
        return None, None
    fields = dict(part.partition("=")[::2] for part in text[:-2].split("\x01"))
    scheme, _space, token = fields.get("auth", "").partition(" ")
    if not fields.get("user") or scheme != "Bearer" or not token:
        return None, None
    return fields["user"], token


class LocalSmtpServer:
    """An aiosmtpd server on 127.0.0.1.

    ``security``: "none", "starttls" or "ssl". ``credentials``: (username, password) to require
    AUTH, or None. ``offer_starttls=False`` with security "none" stands for a server that does not
    offer STARTTLS at all. ``maildir``: also store messages there (the demo inbox reads it).
    ``xoauth2``: a ``LocalIdentityProvider``; AUTH XOAUTH2 is then offered and required, and a
    login succeeds with an access token that provider issued for the user and that is still live.
    ``xoauth2_refusal``: the final reply to a refused token (Exchange Online's by default).
    """

    def __init__(
        self,
        security="none",
        credentials=None,
        certificates=None,
        port=0,
        maildir=None,
        hostname="127.0.0.1",
        ident="wagtail-own-smtp test server",
        xoauth2=None,
        xoauth2_refusal="535 5.7.3 Authentication unsuccessful",
    ):
        self.security = security
        self.ident = ident
        self.credentials = credentials
        self.certificates = certificates
        self.hostname = hostname
        self.requested_port = port
        self.maildir = mailbox.Maildir(maildir, create=True) if maildir else None
        self.behaviour = Behaviour()
        self.received: list[Received] = []
        self.auth_attempts = 0
        self.mail_commands = 0  # MAIL FROM commands received, answered or refused
        self.sent_with_mail: list[int] = []  # per MAIL FROM, the commands that came with it
        # Connections that said EHLO, and those that ended with QUIT (ids of their protocol).
        self.sessions: set = set()
        self.quit_sessions: set = set()
        self.quit_answered_at = None  # time.monotonic() of the last "221 Bye"
        self.in_data = self.peak_in_data = 0
        self.xoauth2 = xoauth2
        self.xoauth2_refusal = xoauth2_refusal
        self.xoauth2_logins: list[tuple] = []  # (user, accepted) of each AUTH XOAUTH2
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.controller = None

    # -- lifecycle -------------------------------------------------------------------------
    def _server_context(self):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificates["cert"], self.certificates["key"])
        return context

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        self.auth_attempts += 1
        if isinstance(auth_data, LoginPassword) and self.credentials:
            username, password = self.credentials
            if auth_data.login.decode() == username and auth_data.password.decode() == password:
                session.auth_mechanism = mechanism
                return AuthResult(success=True, auth_data=auth_data.login)
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
        )

    def start(self):
        server_kwargs = {"ident": self.ident}
        if self.credentials or self.xoauth2 is not None:
            server_kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                # aiosmtpd only counts STARTTLS as TLS; implicit TLS is encrypted all along.
                auth_require_tls=self.security == "starttls",
            )
        ssl_context = None
        if self.security == "starttls":
            server_kwargs.update(tls_context=self._server_context(), require_starttls=True)
        elif self.security == "ssl":
            ssl_context = self._server_context()
        port = self.requested_port or _free_port()
        handler = _XOAuth2Handler(self) if self.xoauth2 is not None else _Handler(self)
        self.controller = Controller(
            handler,
            hostname=self.hostname,
            port=port,
            ssl_context=ssl_context,
            server_hostname="mail.localhost",
            ready_timeout=10,
            **server_kwargs,
        )
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self.controller.port

    # -- what arrived ----------------------------------------------------------------------
    def store(self, received):
        with self._arrived:
            self.received.append(received)
            if self.maildir is not None:
                self.maildir.add(self.delivery_headers(received) + received.data)
            self._arrived.notify_all()

    def delivery_headers(self, received):
        """Return-Path, Delivered-To and Received, as a mail server adds them on delivery.

        They tell the demo inbox the envelope and whether TLS and AUTH were used.
        """
        user = received.authenticated_as
        protocol = "ESMTP" + ("S" if received.tls else "") + ("A" if user else "")
        login = f" (authenticated as {user})" if user else ""
        when = email.utils.format_datetime(datetime.datetime.now(datetime.UTC))
        lines = [f"Return-Path: <{received.mail_from}>"]
        lines += [f"Delivered-To: {address}" for address in received.rcpt_tos]
        lines.append(
            f"Received: by {self.hostname} port {self.port} ({self.ident}) with {protocol}"
            f"{login}; {when}"
        )
        return ("\r\n".join(lines) + "\r\n").encode()

    def wait_for(self, count, timeout=10.0):
        """Block until at least ``count`` messages arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self.received)} of {count} messages arrived")
                self._arrived.wait(remaining)
            return list(self.received)


class SilentServer:
    """Accepts TCP connections and never says a word (or, with ``drop``, hangs up at once)."""

    def __init__(self, drop=False):
        self.drop = drop
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                conn, _address = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            if self.drop:
                conn.close()
            else:
                self.connections.append(conn)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stopped.set()
        self._thread.join(2)
        for conn in self.connections:
            conn.close()
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
