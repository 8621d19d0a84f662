"""Opening a verified SMTP connection and classifying what the server answers.

Every failure becomes an ``SmtpFailure`` carrying the server's original reply and one of three
kinds: transient (try again later), permanent for this message, or a problem of the server's
configuration (pause the site until the editor fixes it).

The server is the editor's, and may be hostile: every reply is cleaned once, where it is read
(``_PinnedSMTP.getreply``), every command and connection attempt has a wall-clock deadline, and a
reply longer than ``REPLY_LINES`` lines or ``REPLY_BYTES`` bytes ends the connection.
"""

import base64
import ipaddress
import re
import select
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field

from django.core.mail.utils import DNS_NAME
from django.utils.translation import gettext as _

from . import conf

TRANSIENT = "transient"
MESSAGE = "message"
SERVER = "server"

# What a server's reply may make us read and keep (a hostile server answers without end).
REPLY_LINE_BYTES = 8192  # smtplib's own limit for one line
REPLY_LINES = 100  # a real EHLO reply has about 15
REPLY_BYTES = 64 * 1024
STORED_REPLY_CHARS = 2048  # what is kept of a reply: stored, shown, logged
CONNECT_TIMEOUTS = 2  # a connection attempt (connect, greeting, EHLO, TLS, AUTH): 2 × TIMEOUT
REQUEST_TIMEOUTS = 2  # the admin's test / confirmation, from connect to QUIT: 2 × TIMEOUT

# C0 controls but the newline between reply lines, DEL and C1 controls (0x9b starts an ANSI
# sequence too).
_CONTROLS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_LOG_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")

# OpenSSL's reasons when the peer does not speak TLS (it sent a plain-text SMTP greeting).
_NOT_TLS_REASONS = {
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "UNKNOWN_PROTOCOL",
    "HTTP_REQUEST",
}
# OpenSSL verify codes: host name mismatch, expired, and the untrusted-issuer family.
_HOSTNAME_MISMATCH = 62
_EXPIRED = 10
_UNTRUSTED = {18, 19, 20, 21}


@dataclass(frozen=True)
class ServerParams:
    host: str
    port: int
    security: str
    from_email: str
    username: str = ""
    password: str = field(default="", repr=False)
    # OAuth: a callable ``(refresh=False) -> access token`` (see oauth.TokenSource); the login
    # is then AUTH XOAUTH2 for ``username``, and ``password`` is unused.
    token_source: object = field(default=None, repr=False, compare=False)


def clean_reply(reply, limit=STORED_REPLY_CHARS):
    """A server's words as text fit to store, show and log: valid UTF-8, no NUL or other control
    character (the newline between reply lines stays), at most ``limit`` characters."""
    if isinstance(reply, bytes | bytearray):
        reply = bytes(reply).decode("utf-8", "replace")
    reply = _CONTROLS.sub("", str(reply))
    return reply[:limit]


def for_log(text):
    """``text`` on one log line: newlines, other controls and backslashes escaped."""
    return _LOG_UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


def request_seconds():
    """The longest the admin's connection test or confirmation message holds a request."""
    return REQUEST_TIMEOUTS * conf.get("TIMEOUT")


class ReplyTooLong(smtplib.SMTPException):
    """The server's reply went past REPLY_LINES or REPLY_BYTES; the connection was closed."""


class SmtpFailure(Exception):
    """What went wrong, in the server's own words. Never contains the password."""

    def __init__(self, kind, text, code=None, hint=""):
        text = clean_reply(text)  # a reply combined from several (refused recipients): capped
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.code = code
        self.hint = hint

    def __str__(self):
        return self.text


class PrivateHostError(ValueError):
    """The host resolves to an address this app refuses to connect to."""


def _is_refused_address(ip):
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and (ip.sixtofour or ip.teredo):
        # Tunnels to an IPv4 address (6to4, Teredo): no mail server lives there, and the IPv4
        # address inside may be a private one. Python < 3.12 counts 2002::/16 as global.
        return True
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
    )


def resolve(host, port):
    """Resolve host once and return the address to connect to.

    Raises PrivateHostError when any address is loopback, private, link-local, multicast or
    reserved (unless allowed), and OSError when the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [info[4][0] for info in infos]
    if not conf.get("ALLOW_PRIVATE_HOSTS"):
        for address in addresses:
            if _is_refused_address(ipaddress.ip_address(address.split("%")[0])):
                raise PrivateHostError(
                    _("%(host)s resolves to a private or reserved address; this is not allowed.")
                    % {"host": host}
                )
    return addresses[0]


def tls_context():
    """Certificate and host-name verification on; WAGTAIL_OWN_SMTP_CA_FILE trusted as well."""
    context = ssl.create_default_context()
    ca_file = conf.get("CA_FILE")
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _remaining(until):
    """Seconds left until the monotonic moment ``until``; TimeoutError when none are."""
    left = until - time.monotonic()
    if left <= 0:
        raise TimeoutError("The deadline passed.")
    return left


def _tls_handshake(context, sock, host, until):
    """TLS over ``sock``, done by ``until``: a handshake dripped byte by byte is cut off too.

    A socket timeout bounds each read only, so the handshake runs non-blocking under the deadline.
    """
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            select.select([tls], [], [], _remaining(until))
        except ssl.SSLWantWriteError:
            select.select([], [tls], [], _remaining(until))
        _remaining(until)
    tls.settimeout(_remaining(until))
    return tls


class _PinnedSMTP(smtplib.SMTP):
    """Connects to the address that was checked, while TLS verifies the host name; reads every
    reply under a deadline and a size cap, and cleans it.

    ``stage`` names the step in progress, so a failure can be explained (see ``hint_for``).
    ``deadline`` (a ``time.monotonic()`` moment, or None) bounds every exchange; each command has
    ``timeout`` seconds besides. ``before_reply``, when set, is called before each reply is read
    (the dispatcher writes an outcome while the server works, see ``dispatch._Outcome``).
    """

    def __init__(self, host, address, context, implicit_tls, timeout, deadline=None):
        self.pinned_address = address
        self.tls_context = context
        self.implicit_tls = implicit_tls
        self.stage = "connect"
        self.command_timeout = timeout
        self.deadline = deadline
        self.before_reply = None
        self._reply_until = None
        self._buffer, self._buffered_sock = b"", None
        super().__init__(local_hostname=DNS_NAME.get_fqdn(), timeout=timeout)
        self._host = host  # smtplib's starttls() verifies the certificate against _host

    def _command_until(self):
        until = time.monotonic() + self.command_timeout
        return until if self.deadline is None else min(until, self.deadline)

    def _get_socket(self, host, port, timeout):
        self.stage = "connect"
        self._reply_until = until = self._command_until()
        sock = socket.create_connection((self.pinned_address, port), _remaining(until))
        if self.implicit_tls:
            self.stage = "tls"
            try:
                sock = _tls_handshake(self.tls_context, sock, host, until)
            except BaseException:
                sock.close()
                raise
        self.stage = "greeting"
        return sock

    def starttls(self, *, context=None):
        """smtplib's STARTTLS, with the handshake under the command's deadline."""
        code, reply = self.docmd("STARTTLS")
        if code != 220:
            raise smtplib.SMTPResponseException(code, reply)
        self.sock = _tls_handshake(
            context or self.tls_context, self.sock, self._host, self._reply_until
        )
        self.file = None
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        return code, reply

    def send(self, s):
        # A command starts: it and its reply must be done by the command's deadline.
        self._reply_until = self._command_until()
        if self.sock is not None:
            try:
                self.sock.settimeout(_remaining(self._reply_until))
            except TimeoutError:
                self.close()
                raise
        super().send(s)

    def getreply(self):
        """smtplib's reply reader, under the command's deadline and the reply caps, cleaned."""
        if self.before_reply is not None:
            self.before_reply()
        until = self._reply_until or self._command_until()
        code, lines, size = -1, [], 0
        while True:
            try:
                line = self._read_line(until)
            except (ReplyTooLong, TimeoutError):
                self.close()
                raise
            except OSError as error:
                self.close()
                raise smtplib.SMTPServerDisconnected(
                    f"Connection unexpectedly closed: {error}"
                ) from error
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            size += len(line)
            if len(lines) >= REPLY_LINES or size > REPLY_BYTES:
                self.close()
                raise _reply_too_long()
            lines.append(clean_reply(line[4:].strip(b" \t\r\n"), limit=None))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        return code, "\n".join(lines).encode()

    def _read_line(self, until):
        if self._buffered_sock is not self.sock:
            # A new socket (after STARTTLS): nothing the server sent before it counts.
            self._buffer, self._buffered_sock = b"", self.sock
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                return line
            if len(self._buffer) > REPLY_LINE_BYTES:
                raise _reply_too_long()
            if self.sock is None:
                raise smtplib.SMTPServerDisconnected("please run connect() first")
            self.sock.settimeout(_remaining(until))
            chunk = self.sock.recv(4096)
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += chunk


def _reply_too_long():
    return ReplyTooLong(
        _(
            "The server's reply was too long (more than %(lines)s lines or %(size)s bytes); "
            "the connection was closed."
        )
        % {"lines": REPLY_LINES, "size": REPLY_BYTES}
    )


def open_connection(params: ServerParams, timeout=None, deadline=None) -> smtplib.SMTP:
    """Connect, secure, and log in. Returns an open ``smtplib.SMTP`` or raises SmtpFailure.

    ``timeout`` (default WAGTAIL_OWN_SMTP_TIMEOUT) bounds each command, the connect and the TLS
    handshake included; the whole attempt (connect, greeting, EHLO, TLS, AUTH) has
    ``CONNECT_TIMEOUTS`` × ``timeout``. ``deadline`` (a ``time.monotonic()`` moment) bounds the
    attempt and every later exchange on the connection.
    """
    timeout = conf.get("TIMEOUT") if timeout is None else timeout
    try:
        address = resolve(params.host, params.port)
    except PrivateHostError as error:
        raise SmtpFailure(SERVER, str(error)) from None
    except OSError as error:
        raise SmtpFailure(TRANSIENT, _describe_os_error(error, params)) from None

    context = _platform_tls_context() if params.security != "none" else None
    attempt_until = time.monotonic() + CONNECT_TIMEOUTS * timeout
    connection = _PinnedSMTP(
        params.host,
        address,
        context,
        params.security == "ssl",
        timeout,
        attempt_until if deadline is None else min(attempt_until, deadline),
    )
    try:
        with _classified(params, connection):
            connection.connect(params.host, params.port)
            connection.stage = "ehlo"
            connection.ehlo_or_helo_if_needed()
            if params.security == "starttls":
                if not connection.has_extn("starttls"):
                    # Never fall back to plain text: the credentials would travel in clear.
                    raise SmtpFailure(
                        SERVER,
                        _("The server does not offer STARTTLS; nothing was sent."),
                        hint=hint_for(params)
                        or _(
                            "Ask your mail provider which port offers STARTTLS (usually 587) "
                            "or SSL/TLS (usually 465)."
                        ),
                    )
                connection.stage = "tls"
                connection.starttls(context=context)
                connection.stage = "ehlo"
                connection.ehlo()
            if params.token_source is not None:
                connection.stage = "auth"
                login_xoauth2(connection, params.username, params.token_source)
            elif params.username:
                connection.stage = "auth"
                login(connection, params.username, params.password)
    except BaseException:
        # No QUIT: after a TLS or timeout failure the dialogue is not in a state to end politely.
        connection.close()
        raise
    connection.stage = "send"
    connection.deadline = deadline
    return connection


def _platform_tls_context():
    try:
        return tls_context()
    except (OSError, ssl.SSLError):
        # The platform's configuration, not the editor's: mail waits until it is fixed.
        raise SmtpFailure(
            TRANSIENT,
            _("The platform's list of trusted certificate authorities cannot be read."),
            hint=_(
                "Please tell the platform's administrator: WAGTAIL_OWN_SMTP_CA_FILE is not "
                "a readable PEM file."
            ),
        ) from None


def login(connection, username, password):
    """AUTH PLAIN (or LOGIN) with UTF-8 credentials; smtplib's own login only takes ASCII."""
    mechanisms = _auth_mechanisms(connection)
    if "PLAIN" in mechanisms:
        token = b"\0" + username.encode() + b"\0" + password.encode()
        code, reply = connection.docmd("AUTH", "PLAIN " + base64.b64encode(token).decode())
    elif "LOGIN" in mechanisms:
        code, reply = connection.docmd(
            "AUTH", "LOGIN " + base64.b64encode(username.encode()).decode()
        )
        if code == 334:
            code, reply = connection.docmd(base64.b64encode(password.encode()).decode())
    else:
        raise smtplib.SMTPNotSupportedError(
            _("The server offers no login method this app supports (%(methods)s).")
            % {"methods": " ".join(mechanisms)}
        )
    if code not in (235, 503):
        raise smtplib.SMTPAuthenticationError(code, reply)


def _auth_mechanisms(connection):
    if not connection.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError(_("The server does not offer SMTP AUTH."))
    return connection.esmtp_features["auth"].upper().split()


def login_xoauth2(connection, user, token_source):
    """AUTH XOAUTH2 with an access token; a cached token the server refuses is renewed once.

    The token may have been revoked, or have expired by the server's clock before ours.
    """
    if "XOAUTH2" not in _auth_mechanisms(connection):
        raise smtplib.SMTPNotSupportedError(
            _("The server does not offer OAuth login (AUTH XOAUTH2).")
        )
    code, reply = _xoauth2(connection, user, token_source())
    if code not in (235, 503) and getattr(token_source, "was_cached", False):
        code, reply = _xoauth2(connection, user, token_source(refresh=True))
    if code not in (235, 503):
        raise smtplib.SMTPAuthenticationError(code, reply)


def _xoauth2(connection, user, access_token):
    credentials = f"user={user}\x01auth=Bearer {access_token}\x01\x01".encode()
    code, reply = connection.docmd("AUTH", "XOAUTH2 " + base64.b64encode(credentials).decode())
    if code == 334:
        # The refusal comes as a challenge (base64 JSON); an empty line gets the final reply.
        code, reply = connection.docmd("")
    return code, reply


def close_quietly(connection):
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        try:
            connection.close()
        except OSError:
            pass


def _envelope_options(connection, addresses):
    """SMTPUTF8 when an envelope address is not ASCII; a MESSAGE failure if the server lacks it."""
    if all(address.isascii() for address in addresses):
        return []
    if not connection.has_extn("smtputf8"):
        raise SmtpFailure(
            MESSAGE,
            _("The server does not accept addresses with non-ASCII characters (no SMTPUTF8)."),
        )
    return ["SMTPUTF8"]


def send(connection, params: ServerParams, envelope_from, recipients, raw_message: bytes):
    """Hand one message to the server. Returns the recipients the server refused (a dict)."""
    connection.stage = "send"
    options = _envelope_options(connection, [envelope_from, *recipients])
    with _classified(params, connection):
        return connection.sendmail(envelope_from, recipients, raw_message, mail_options=options)


def test_connection(params: ServerParams, timeout=None):
    """Connect, TLS, AUTH, MAIL FROM and RCPT TO the sender, then RSET: nothing is sent.

    All of it, QUIT included, within ``request_seconds()``: an admin request waits no longer.
    """
    deadline = time.monotonic() + request_seconds()
    connection = open_connection(params, timeout=timeout, deadline=deadline)
    try:
        options = _envelope_options(connection, [params.from_email])
        with _classified(params, connection):
            code, reply = connection.mail(params.from_email, options)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, params.from_email)
            code, reply = connection.rcpt(params.from_email)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({params.from_email: (code, reply)})
            connection.rset()
    finally:
        close_quietly(connection)


class _classified:
    """Turn smtplib, ssl and socket errors raised inside into SmtpFailure."""

    def __init__(self, params, connection):
        self.params = params
        self.connection = connection

    def __enter__(self):
        return self

    def __exit__(self, exc_type, error, traceback):
        if error is None or isinstance(error, SmtpFailure):
            return False
        failure = classify(error, getattr(self.connection, "stage", "send"), self.params)
        if failure is None:
            return False
        raise failure from None


def _reply_text(code, reply):
    reply = clean_reply(reply)
    return f"{code} {reply}".strip() if code else reply


def _is_timeout(error):
    # smtplib turns a timeout while reading a reply into SMTPServerDisconnected.
    return isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError)


def _describe_os_error(error, params):
    if isinstance(error, socket.gaierror):
        return _("The host name could not be resolved (%(error)s).") % {"error": error.strerror}
    if _is_timeout(error):
        return _("The server did not answer in time.")
    if isinstance(error, ConnectionRefusedError):
        return _("%(host)s refused the connection on port %(port)s.") % {
            "host": params.host,
            "port": params.port,
        }
    if isinstance(error, smtplib.SMTPServerDisconnected | ConnectionResetError | BrokenPipeError):
        return _("The server closed the connection.")
    return error.strerror or str(error) or error.__class__.__name__


# "550 5.4.5 Daily user sending quota exceeded" (Gmail): permanent in form, but the account's
# quota resets, so the message waits and retries instead of failing or pausing the site.
QUOTA = "5.4.5"


def classify(error, stage, params):
    """The SmtpFailure for an exception raised while talking to the server, or None.

    ``stage``: "connect", "tls", "greeting", "ehlo", "auth" or "send".
    """
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _reply in error.recipients.values()]
        text = "; ".join(
            f"{rcpt}: {_reply_text(code, reply)}"
            for rcpt, (code, reply) in error.recipients.items()
        )
        kind = TRANSIENT if any(400 <= c < 500 for c in codes) or QUOTA in text else MESSAGE
        code = codes[0] if codes else None
        return SmtpFailure(kind, text, code, hint_for(params, code, text, stage))
    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        text = _reply_text(code, error.smtp_error)
        return SmtpFailure(
            _reply_kind(error, code, text, stage), text, code, hint_for(params, code, text, stage)
        )
    if isinstance(error, smtplib.SMTPNotSupportedError):
        # Raised by this module (no AUTH offered) or smtplib: the server lacks a feature.
        return SmtpFailure(SERVER, str(error), hint=hint_for(params, stage=stage))
    if isinstance(error, ssl.SSLCertVerificationError):
        return SmtpFailure(
            SERVER,
            _("The server's certificate was not accepted: %(reason)s")
            % {"reason": error.verify_message or error.reason},
            hint=hint_for(params, stage=stage, error=error),
        )
    if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return SmtpFailure(
            TRANSIENT, _("The server closed the connection."), hint=hint_for(params, stage=stage)
        )
    if isinstance(error, ssl.SSLError):
        return SmtpFailure(
            SERVER,
            _("TLS failed: %(reason)s") % {"reason": error.reason or error},
            hint=hint_for(params, stage=stage, error=error),
        )
    if isinstance(error, OSError | smtplib.SMTPServerDisconnected):
        return SmtpFailure(
            TRANSIENT,
            _describe_os_error(error, params),
            hint=hint_for(params, stage=stage, error=error),
        )
    if isinstance(error, smtplib.SMTPException):
        return SmtpFailure(TRANSIENT, str(error), hint=hint_for(params, stage=stage))
    return None


def _reply_kind(error, code, text, stage):
    if 400 <= code < 500 or QUOTA in text:
        return TRANSIENT
    if stage != "send":
        return SERVER  # greeting, EHLO, STARTTLS, AUTH: the server or its settings
    if isinstance(error, smtplib.SMTPSenderRefused):
        # A size refusal at MAIL FROM is about this message; anything else about the sender.
        return MESSAGE if code == 552 or "5.3.4" in text else SERVER
    return MESSAGE


def _reply_hint(code, text):
    """The explanation a server's reply gives away by itself, or ""."""
    # Microsoft 365 answers 535 too, with its own enhanced codes: test those first.
    if "5.7.57" in text or "5.7.30" in text or "5.7.139" in text:
        return _(
            "Microsoft 365 has basic authentication (password login) for SMTP turned off "
            "for this mailbox or tenant."
        )
    if code == 534 and "5.7.9" in text:
        return _(
            "Google asks for an app password: the account uses 2-step verification. Create an "
            "app password in the Google account and enter it as the password."
        )
    if code == 534 and "5.7.14" in text:
        return _(
            "Google blocked the sign-in. Sign in to the account once in a web browser, or use "
            "an app password."
        )
    if code == 535 or (code and "5.7.8" in text):
        return _("The server rejected the username or password.")
    if code == 530 and "starttls" in text.lower():
        return _("The server accepts mail only over an encrypted connection: choose STARTTLS.")
    # Gmail's "5.4.5", IONOS's "Mail send limit exceeded".
    if "5.4.5" in text or "send limit exceeded" in text.lower():
        return _(
            "The sending quota of the account is used up; the server accepts mail again once "
            "it resets."
        )
    return ""


_REPLY_CODE = re.compile(r"(?:^|: )([2-5]\d\d)[ -]")


def hint_for_reply(text):
    """The hint for a reply as stored (a message's last error), where the reply alone explains it.

    A stored reply has no connection left to look at, so only the reply's own words count: the
    port and TLS hints need ``hint_for`` at the moment of failure.
    """
    text = text or ""
    match = _REPLY_CODE.search(text)
    return _reply_hint(int(match.group(1)) if match else None, text)


def hint_for(params, code=None, text="", stage=None, error=None):
    """A short explanation where the cause of a failure is known."""
    port, security = params.port, params.security
    text = text or ""
    if params.token_source is not None and stage == "auth" and code and code >= 500:
        return _oauth_refusal_hint(params, text)
    if reply_hint := _reply_hint(code, text):
        return reply_hint
    if isinstance(error, ssl.SSLCertVerificationError):
        return _certificate_hint(error)
    if (
        stage == "tls"
        and security == "ssl"
        and isinstance(error, ssl.SSLError)
        and error.reason in _NOT_TLS_REASONS
    ):
        return _(
            "The server answered in plain text, so this port does not expect SSL/TLS from "
            "the start. Choose STARTTLS (usually port 587) or no encryption (port 25)."
        )
    if stage == "greeting" and security != "ssl" and error is not None and _is_timeout(error):
        return _(
            "The server accepted the connection but sent no greeting. A port that expects "
            "SSL/TLS from the start (usually 465) behaves like this: choose SSL/TLS."
        )
    if port == 465 and security != "ssl":
        return _("Port 465 usually expects SSL/TLS, not %(security)s.") % {
            "security": _("STARTTLS") if security == "starttls" else _("no encryption")
        }
    if port in (25, 587) and security == "ssl":
        return _("Port %(port)s usually expects STARTTLS or no encryption, not SSL/TLS.") % {
            "port": port
        }
    return ""


def _oauth_refusal_hint(params, text):
    if "5.7.139" in text or "SmtpClientAuthentication" in text:
        return _(
            "SMTP AUTH is turned off for this mailbox or tenant. An Exchange administrator turns "
            "it on for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false)."
        )
    return _(
        "The server did not accept the OAuth access token for %(user)s. Microsoft 365: the app "
        "needs the SMTP.SendAsApp permission with admin consent and an Exchange service "
        "principal with rights on this mailbox. Google: sign in with the account of this "
        "address."
    ) % {"user": params.username}


def _certificate_hint(error):
    if error.verify_code == _HOSTNAME_MISMATCH:
        return _(
            "The certificate was issued for another host name. Enter the host name it was "
            "issued for; your mail provider's documentation names it."
        )
    if error.verify_code == _EXPIRED:
        return _("The server's certificate has expired; the mail provider must renew it.")
    if error.verify_code in _UNTRUSTED:
        return _(
            "The certificate is not signed by a trusted certificate authority (self-signed or "
            "a private CA). Use your provider's official host name, or ask the platform's "
            "administrator to trust that CA."
        )
    return _("The certificate does not match the host name or is not trusted.")
