"""Reading the sender's mailbox over IMAP, where delivery reports come back.

The mailbox is the editor's server, as hostile as their SMTP server: the same address guard
(the connection goes to the address that was checked), certificate checks, a wall-clock deadline
per command and per connection attempt, caps on every line, on what one command may receive and
on a message's size. Nothing here decides what a message means (``bounce_reports``) or what it
changes (``bounces``).
"""

import imaplib
import re
import socket
import time
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from . import conf, transport
from .bounce_reports import clean
from .exceptions import MailboxFailure

MAX_LINE = 64 * 1024  # one response line; a literal announces its size instead
MAX_RESPONSE = 4 * 1024 * 1024  # all one command receives besides the message it fetches
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


@dataclass(frozen=True)
class MailboxParams:
    host: str
    port: int
    security: str  # "ssl" or "starttls": a mailbox login never travels in clear
    username: str
    password: str = field(default="", repr=False)
    folder: str = "INBOX"
    move_to: str = ""  # where recognised reports go; "" flags them as seen instead
    # An OAuth login (``oauth.TokenSource``): AUTHENTICATE XOAUTH2 instead of the password.
    token_source: object = field(default=None, repr=False, compare=False)


@dataclass
class Fetched:
    """What one reading found: messages by UID, and those left alone for their size.

    A reading cut short (``failure``) still returns what it had read, so nothing read is read
    again and nothing after it is skipped.
    """

    uidvalidity: int
    messages: list = field(default_factory=list)  # (uid, raw bytes)
    too_large: list = field(default_factory=list)  # UIDs over MAX_REPORT_SIZE
    last_uid: int = 0  # the highest UID looked at (read, or left alone)
    failure: object = None  # a MailboxFailure that ended the reading early


class _BoundedIMAP(imaplib.IMAP4):
    """imaplib's client, bounded: pinned address, deadlines, and caps on what is read."""

    def __init__(self, host, address, port, implicit_tls, timeout, max_message):
        self.pinned_address = address
        self.implicit_tls = implicit_tls
        self.step_seconds = timeout
        self.max_message = max_message
        self.deadline = time.monotonic() + timeout
        self.received = 0
        self.too_large = False
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.pinned_address, self.port), timeout)
        if self.implicit_tls:
            try:
                sock = transport.tls_context().wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        return sock

    def step(self, seconds=None):
        """Start the deadline and the byte budget of the next command."""
        self.deadline = time.monotonic() + (seconds or self.step_seconds)
        self.received = 0

    def _arm(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.abort("the mailbox server did not answer in time")
        self.sock.settimeout(left)

    def _count(self, size, limit):
        self.received += size
        if self.received > limit:
            raise self.abort("the mailbox server sent more than any answer needs")

    def readline(self):
        # One network read at a time, so a server dripping bytes meets the deadline.
        line = bytearray()
        while True:
            self._arm()
            data = self.file.peek(1)[:MAX_LINE]
            if not data:
                raise self.abort("the mailbox server closed the connection")
            end = data.find(b"\n")
            chunk = self.file.read(len(data) if end < 0 else end + 1)
            line += chunk
            self._count(len(chunk), MAX_RESPONSE + self.max_message)
            if end >= 0:
                return bytes(line)
            if len(line) > MAX_LINE:
                raise self.abort("a line of the mailbox server's answer is too long")

    def read(self, size):
        if size > self.max_message:
            # imaplib turns any abort into a plain one: the flag says why.
            self.too_large = True
            raise self.abort(f"a literal of {size} bytes")
        data = bytearray()
        while len(data) < size:
            self._arm()
            chunk = self.file.read1(min(size - len(data), 65536))
            if not chunk:
                raise self.abort("the mailbox server closed the connection")
            data += chunk
            self._count(len(chunk), MAX_RESPONSE + self.max_message)
        return bytes(data)


def quoted(folder):
    """An ASCII folder name as an IMAP quoted string."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Mailbox:
    """One session with the sender's mailbox: open, select, fetch new messages, file reports."""

    def __init__(self, params: MailboxParams, timeout=None):
        self.params = params
        self.timeout = conf.get("TIMEOUT") if timeout is None else timeout
        self.connection = None
        self.capabilities = set()

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def open(self):
        params = self.params
        try:
            address = transport.resolve(params.host, params.port)
        except transport.PrivateHostError as error:
            raise MailboxFailure(str(error)) from None
        except OSError as error:
            raise MailboxFailure(_("The mailbox server cannot be reached: %s") % error) from None
        try:
            # One deadline for connect, greeting, STARTTLS and login together.
            self.connection = _BoundedIMAP(
                params.host,
                address,
                params.port,
                params.security == "ssl",
                self.timeout,
                int(conf.get("MAX_REPORT_SIZE")),
            )
            if params.security == "starttls":
                self.connection.starttls(transport.tls_context())
            self._login()
        except (imaplib.IMAP4.error, OSError) as error:
            self.close()
            raise _failure(error) from None
        except transport.SmtpFailure as failure:
            # The sign-in service refused or could not be reached; its words, never a token.
            self.close()
            raise MailboxFailure(failure.text, failure.hint) from None
        except BaseException:
            self.close()
            raise

    def _login(self):
        connection, params = self.connection, self.params
        if params.token_source is not None:
            self._login_xoauth2()
        elif "AUTH=PLAIN" in connection.capabilities:
            # AUTHENTICATE PLAIN carries UTF-8; LOGIN takes only ASCII passwords.
            secret = f"\0{params.username}\0{params.password}".encode()
            connection.authenticate("PLAIN", lambda _challenge: secret)
        elif not (params.username + params.password).isascii():
            raise MailboxFailure(
                _(
                    "The mailbox server offers only a login that cannot carry non-ASCII "
                    "characters (LOGIN, not AUTHENTICATE PLAIN)."
                )
            )
        else:
            connection.login(params.username, params.password)
        # Servers announce MOVE and UIDPLUS only to a logged-in client.
        _status, data = connection.capability()
        self.capabilities = set((data[-1] or b"").decode("ascii", "replace").upper().split())

    def _login_xoauth2(self):
        """AUTHENTICATE XOAUTH2; a cached token the server refuses is renewed once (as for SMTP,
        ``transport.login_xoauth2``). A refusal's text never holds the token."""
        if "AUTH=XOAUTH2" not in self.connection.capabilities:
            raise MailboxFailure(_("The mailbox server does not offer OAuth login (XOAUTH2)."))
        source = self.params.token_source
        try:
            self._xoauth2(source())
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:
            if not getattr(source, "was_cached", False):
                raise
            self._xoauth2(source(refresh=True))

    def _xoauth2(self, token):
        sasl = f"user={self.params.username}\x01auth=Bearer {token}\x01\x01".encode()
        answers = iter([sasl])
        # The wait for the sign-in service does not count against the mailbox's deadline.
        self.connection.step()
        try:
            # A refusal comes as a challenge (base64 JSON): the empty answer gets the final NO.
            self.connection.authenticate("XOAUTH2", lambda _challenge: next(answers, b""))
        except imaplib.IMAP4.error as error:
            if token and token in str(error):  # a server echoing the token back
                raise type(error)(str(error).replace(token, "…")) from None
            raise

    def count(self):
        """How many messages the folder holds, opened read-only (EXAMINE)."""
        try:
            self.connection.step()
            status, data = self.connection.select(quoted(self.params.folder), readonly=True)
        except (imaplib.IMAP4.error, OSError) as error:
            raise _failure(error) from None
        if status != "OK":
            raise MailboxFailure(_("The folder %s cannot be opened.") % self.params.folder)
        return int(data[0])

    def fetch_new(self, known_uidvalidity, last_uid, limit):
        """Messages with a UID above ``last_uid`` (all of them when UIDVALIDITY changed), at most
        ``limit``, oldest first. ``BODY.PEEK`` leaves them unread."""
        connection = self.connection
        try:
            connection.step()
            status, _data = connection.select(quoted(self.params.folder))
            if status != "OK":
                raise MailboxFailure(_("The folder %s cannot be opened.") % self.params.folder)
            uidvalidity = int(connection.untagged_responses.get("UIDVALIDITY", [b"0"])[-1])
            if uidvalidity != known_uidvalidity:
                last_uid = 0  # the server numbered its messages anew
            connection.step()
            _status, data = connection.uid("SEARCH", f"UID {last_uid + 1}:*")
        except (imaplib.IMAP4.error, OSError) as error:
            raise _failure(error) from None
        # "n:*" always matches the highest UID, even one below n.
        uids = sorted(int(uid) for uid in (data[0] or b"").split() if int(uid) > last_uid)
        fetched = Fetched(uidvalidity, last_uid=last_uid)
        for uid in uids[:limit]:
            try:
                raw = self._fetch(uid)
            except (imaplib.IMAP4.error, OSError) as error:
                if connection.too_large:
                    # Announced small, sent large: left alone from now on, like any large one.
                    fetched.too_large.append(uid)
                    fetched.last_uid = uid
                fetched.failure = _failure(error)
                self.close()
                break
            if raw is None:
                fetched.too_large.append(uid)
            else:
                fetched.messages.append((uid, raw))
            fetched.last_uid = uid
        return fetched

    def _fetch(self, uid):
        connection = self.connection
        connection.step()
        _status, data = connection.uid("FETCH", str(uid), "(RFC822.SIZE)")
        size = _SIZE.search(data[0] if data and isinstance(data[0], bytes) else b"")
        if size is None or int(size.group(1)) > connection.max_message:
            return None
        connection.step()
        _status, data = connection.uid("FETCH", str(uid), "(BODY.PEEK[])")
        parts = [item[1] for item in data if isinstance(item, tuple)]
        return parts[0] if parts else None

    def file_report(self, uid):
        """A recognised report leaves the folder: moved, or flagged as seen."""
        connection = self.connection
        if connection is None:
            return
        connection.step()
        move_to = self.params.move_to
        if move_to and "MOVE" in self.capabilities:
            connection.uid("MOVE", str(uid), quoted(move_to))
        elif move_to and "UIDPLUS" in self.capabilities:
            connection.uid("COPY", str(uid), quoted(move_to))
            connection.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted \Seen)")
            connection.uid("EXPUNGE", str(uid))  # this message only, never others marked
        else:
            connection.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Seen)")

    def close(self):
        connection, self.connection = self.connection, None
        if connection is None:
            return
        try:
            connection.step(min(self.timeout, 5))
            connection.logout()
        except (imaplib.IMAP4.error, OSError):
            try:
                connection.shutdown()
            except OSError:
                pass  # already gone


def _failure(error):
    if isinstance(error, TimeoutError):
        return MailboxFailure(_("The mailbox server did not answer in time."))
    return MailboxFailure(clean(str(error)))
