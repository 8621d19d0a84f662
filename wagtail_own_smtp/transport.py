"""Opening a verified SMTP connection and handing a message to it.

The address is checked before connecting (no private hosts unless allowed, no DNS rebinding),
TLS verifies the host name, every exchange has a deadline, and the login is AUTH PLAIN, LOGIN or
XOAUTH2. Every failure becomes an ``SmtpFailure`` of the kind ``replies`` gives it.

The server is the editor's, and may be hostile: ``smtp_client`` reads it under deadlines and
caps and cleans every reply; a connection attempt has ``CONNECT_TIMEOUTS`` × TIMEOUT in all.
"""

import base64
import ipaddress
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from . import conf
from .exceptions import PrivateHostError, SmtpFailure
from .hints import hint_for
from .replies import MESSAGE, SERVER, TRANSIENT, classify, describe_os_error
from .smtp_client import PinnedSMTP

CONNECT_TIMEOUTS = 2  # a connection attempt (connect, greeting, EHLO, TLS, AUTH): 2 × TIMEOUT
REQUEST_TIMEOUTS = 2  # the admin's test / confirmation, from connect to QUIT: 2 × TIMEOUT


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


def request_seconds():
    """The longest the admin's connection test or confirmation message holds a request."""
    return REQUEST_TIMEOUTS * conf.get("TIMEOUT")


_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


def _is_refused_address(ip):
    """True unless ``ip`` is a global unicast address (for IPv6: in 2000::/3 as well)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and (ip.sixtofour or ip.teredo):
        # Tunnels to an IPv4 address (6to4, Teredo): no mail server lives there, and the IPv4
        # address inside may be a private one. Python < 3.12 counts 2002::/16 as global.
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6:
        return True  # e.g. site-local fec0::/10, which Python counts as global
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
        raise SmtpFailure(TRANSIENT, describe_os_error(error, params)) from None

    context = _platform_tls_context() if params.security != "none" else None
    attempt_until = time.monotonic() + CONNECT_TIMEOUTS * timeout
    connection = PinnedSMTP(
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
                    failure = SmtpFailure(
                        SERVER,
                        _("The server does not offer STARTTLS; nothing was sent."),
                        hint=hint_for(params)
                        or _(
                            "Ask your mail provider which port offers STARTTLS (usually 587) "
                            "or SSL/TLS (usually 465)."
                        ),
                    )
                    failure.server_listens = True
                    raise failure
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
    except BaseException as error:
        if getattr(error, "server_listens", False):
            close_quietly(connection)  # a refusal: the server waits for QUIT
        else:
            # After a TLS or timeout failure the dialogue is not in a state to end politely.
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


class NoLoginOffered(smtplib.SMTPNotSupportedError):
    """The server offers no AUTH; ``after_starttls``: it offers STARTTLS, and login after it."""

    def __init__(self, message, after_starttls=False):
        super().__init__(message)
        self.after_starttls = after_starttls


def _auth_mechanisms(connection):
    if not connection.has_extn("auth"):
        # Postfix with smtpd_tls_auth_only offers AUTH only once the connection is encrypted.
        after_starttls = connection.has_extn("starttls") and not isinstance(
            connection.sock, ssl.SSLSocket
        )
        raise NoLoginOffered(_("The server does not offer SMTP AUTH."), after_starttls)
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


def send(
    connection,
    params: ServerParams,
    envelope_from,
    recipients,
    raw_message: bytes,
    *,
    meanwhile=None,
):
    """Hand one message to the server. Returns the recipients the server refused (a dict).

    ``meanwhile``: called once, after ``DATA`` went out and before its reply is read, so the
    caller's own work (the dispatcher writes the previous message's outcome) overlaps the
    server's answers to MAIL, RCPT and DATA, and ends before the message's data go out: the
    server cannot have accepted it yet. What it raises ends the call unchanged, the message
    incomplete: the caller then drops the connection, and the server the message. A message
    refused before its data never calls it.
    """
    connection.stage = "send"
    options = _envelope_options(connection, [envelope_from, *recipients])
    connection.before_reply_to("data", meanwhile)
    # Over a server that offers it, the envelope goes in one round trip (RFC 2920).
    sendmail = (
        connection.sendmail_pipelined if connection.has_extn("pipelining") else connection.sendmail
    )
    try:
        with _classified(params, connection):
            return sendmail(envelope_from, recipients, raw_message, mail_options=options)
    finally:
        connection.before_reply_to("data", None)  # not called: the caller still has it to do


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
