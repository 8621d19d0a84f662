"""The SMTP client that talks to an editor's server, which may be hostile.

It connects to the address that was checked (no DNS rebinding) while TLS verifies the host name;
every command, its reply and each TLS handshake finish by a wall-clock deadline (a reply dripped a
byte at a time is cut off too); a reply longer than ``REPLY_LINES`` lines or ``REPLY_BYTES`` bytes
ends the connection; and every reply is cleaned once, where it is read (``clean_reply``).
"""

import re
import select
import smtplib
import socket
import ssl
import time

from django.core.mail.utils import DNS_NAME
from django.utils.translation import gettext as _

# What a server's reply may make us read and keep (a hostile server answers without end).
REPLY_LINE_BYTES = 8192  # smtplib's own limit for one line
REPLY_LINES = 100  # a real EHLO reply has about 15
REPLY_BYTES = 64 * 1024
STORED_REPLY_CHARS = 2048  # what is kept of a reply: stored, shown, logged

# C0 controls but the newline between reply lines, DEL and C1 controls (0x9b starts an ANSI
# sequence too).
_CONTROLS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_LOG_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


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


class ReplyTooLong(smtplib.SMTPException):
    """The server's reply went past REPLY_LINES or REPLY_BYTES; the connection was closed."""


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


class PinnedSMTP(smtplib.SMTP):
    """Connects to the address that was checked, while TLS verifies the host name; reads every
    reply under a deadline and a size cap, and cleans it.

    ``stage`` names the step in progress, so a failure can be explained (see ``hint_for``).
    ``deadline`` (a ``time.monotonic()`` moment, or None) bounds every exchange; each command has
    ``timeout`` seconds besides. ``before_reply_to`` lets a caller work while the server does
    (see ``transport.send``).
    """

    def __init__(self, host, address, context, implicit_tls, timeout, deadline=None):
        self.pinned_address = address
        self.tls_context = context
        self.implicit_tls = implicit_tls
        self.stage = "connect"
        self.command_timeout = timeout
        self.deadline = deadline
        self._before_reply = self._last_command = None
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

    def before_reply_to(self, command, work):
        """Call ``work`` once, right before the reply to the next ``command`` (e.g. ``"data"``)
        is read (``work`` None: nothing)."""
        self._before_reply = None if work is None else (command, work)

    def putcmd(self, cmd, args=""):
        self._last_command = cmd.lower()
        super().putcmd(cmd, args)

    def sendmail_pipelined(self, from_addr, to_addrs, msg, mail_options=()):
        """smtplib's ``sendmail`` with PIPELINING (RFC 2920), for a server that offers it:
        ``MAIL FROM``, every ``RCPT TO`` and ``DATA`` go out together and their replies are read
        after, so a message costs two round trips instead of two plus one per recipient. Same
        result, same exceptions, and ``before_reply_to("data", ...)`` runs where it would."""
        options = [f"SIZE={len(msg)}", *mail_options] if self.has_extn("size") else mail_options
        if any(option.lower() == "smtputf8" for option in options):
            self.command_encoding = "utf-8"  # the caller checked that the server offers it
        group = [_command("MAIL", f"FROM:{smtplib.quoteaddr(from_addr)}", options)]
        group += [_command("RCPT", f"TO:{smtplib.quoteaddr(address)}") for address in to_addrs]
        self.send("".join([*group, "DATA\r\n"]))
        self._last_command = "mail"
        mail_reply = self._group_reply(smtplib.SMTPSenderRefused, from_addr)
        refused = {}
        self._last_command = "rcpt"
        for address in to_addrs:
            code, reply = self.getreply()
            if code not in (250, 251):
                refused[address] = (code, reply)
            if code == 421:
                self.close()
                raise smtplib.SMTPRecipientsRefused(refused)
        accepted = mail_reply[0] == 250 and len(refused) < len(to_addrs)
        self._last_command = "data" if accepted else "refused"  # no work for a refused message
        data_reply = self._group_reply(smtplib.SMTPDataError)
        if not accepted:
            if data_reply[0] == 354:
                self.send(".\r\n")  # it took DATA without a recipient: end the empty message
                self._group_reply(smtplib.SMTPDataError)
            self._rset()
            if mail_reply[0] != 250:
                raise smtplib.SMTPSenderRefused(*mail_reply, from_addr)
            raise smtplib.SMTPRecipientsRefused(refused)
        if data_reply[0] != 354:
            self._rset()
            raise smtplib.SMTPDataError(*data_reply)
        self.send(_dot_stuffed(msg))
        code, reply = self._group_reply(smtplib.SMTPDataError)
        if code != 250:
            self._rset()
            raise smtplib.SMTPDataError(code, reply)
        return refused

    def _group_reply(self, error, *details):
        """The next reply of a pipelined group; a 421 closes the connection and raises
        ``error`` as smtplib's ``sendmail`` would for that step."""
        code, reply = self.getreply()
        if code == 421:
            self.close()
            raise error(code, reply, *details)
        return code, reply

    def getreply(self):
        """smtplib's reply reader, under the command's deadline and the reply caps, cleaned."""
        if self._before_reply is not None and self._before_reply[0] == self._last_command:
            (_command, work), self._before_reply = self._before_reply, None
            work()
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


def _command(verb, argument, options=()):
    """One command line; smtplib's ``putcmd`` check: no line break in what the server reads."""
    line = " ".join([f"{verb} {argument}", *options])
    if "\r" in line or "\n" in line:
        raise ValueError("command and arguments contain prohibited newline characters")
    return line + "\r\n"


def _dot_stuffed(msg):
    """The message's data as ``DATA`` sends them: leading dots doubled, CRLF, the final dot."""
    data = re.sub(rb"(?m)^\.", b"..", msg)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _reply_too_long():
    return ReplyTooLong(
        _(
            "The server's reply was too long (more than %(lines)s lines or %(size)s bytes); "
            "the connection was closed."
        )
        % {"lines": REPLY_LINES, "size": REPLY_BYTES}
    )
