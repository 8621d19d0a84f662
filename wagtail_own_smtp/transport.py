"""Opening a verified SMTP connection and classifying what the server answers.

Every failure becomes an ``SmtpFailure`` carrying the server's original reply and one of three
kinds: transient (try again later), permanent for this message, or a problem of the server's
configuration (pause the site until the editor fixes it).
"""

import base64
import ipaddress
import smtplib
import socket
import ssl
from dataclasses import dataclass, field

from django.core.mail.utils import DNS_NAME
from django.utils.translation import gettext as _

from . import conf

TRANSIENT = "transient"
MESSAGE = "message"
SERVER = "server"


@dataclass(frozen=True)
class ServerParams:
    host: str
    port: int
    security: str
    from_email: str
    username: str = ""
    password: str = field(default="", repr=False)


class SmtpFailure(Exception):
    """What went wrong, in the server's own words. Never contains the password."""

    def __init__(self, kind, text, code=None, hint=""):
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
    context = ssl.create_default_context()
    ca_file = conf.get("CA_FILE")
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class _PinnedSMTP(smtplib.SMTP):
    """Connects to the address that was checked, while TLS still verifies the host name."""

    pinned_address = None

    def _get_socket(self, host, port, timeout):
        return socket.create_connection((self.pinned_address or host, port), timeout)


class _PinnedSMTPSSL(smtplib.SMTP_SSL, _PinnedSMTP):
    pass


def open_connection(params: ServerParams, timeout=None) -> smtplib.SMTP:
    """Connect, secure, and log in. Returns an open ``smtplib.SMTP`` or raises SmtpFailure."""
    timeout = conf.get("TIMEOUT") if timeout is None else timeout
    try:
        address = resolve(params.host, params.port)
    except PrivateHostError as error:
        raise SmtpFailure(SERVER, str(error)) from None
    except OSError as error:
        raise SmtpFailure(TRANSIENT, _describe_os_error(error), hint=hint_for(params)) from None

    context = tls_context()
    if params.security == "ssl":
        connection = _PinnedSMTPSSL(
            local_hostname=DNS_NAME.get_fqdn(), timeout=timeout, context=context
        )
    else:
        connection = _PinnedSMTP(local_hostname=DNS_NAME.get_fqdn(), timeout=timeout)
    connection.pinned_address = address
    connection._host = params.host  # smtplib checks the TLS certificate against _host
    try:
        with _classified(params, stage="connect"):
            connection.connect(params.host, params.port)
            connection.ehlo()
            if params.security == "starttls":
                if not connection.has_extn("starttls"):
                    # Never fall back to plain text: the credentials would travel in clear.
                    raise SmtpFailure(
                        SERVER,
                        _("The server does not offer STARTTLS; nothing was sent."),
                        hint=hint_for(params),
                    )
                connection.starttls(context=context)
                connection.ehlo()
        if params.username:
            with _classified(params, stage="auth"):
                login(connection, params.username, params.password)
    except BaseException:
        close_quietly(connection)
        raise
    return connection


def login(connection, username, password):
    """AUTH PLAIN (or LOGIN) with UTF-8 credentials; smtplib's own login only takes ASCII."""
    if not connection.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError(_("The server does not offer SMTP AUTH."))
    mechanisms = connection.esmtp_features["auth"].upper().split()
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


def close_quietly(connection):
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        try:
            connection.close()
        except OSError:
            pass


def send(connection, params: ServerParams, envelope_from, recipients, raw_message: bytes):
    """Hand one message to the server. Returns the recipients the server refused (a dict)."""
    with _classified(params, stage="send"):
        return connection.sendmail(envelope_from, recipients, raw_message)


def test_connection(params: ServerParams, timeout=None):
    """Connect, TLS, AUTH, MAIL FROM and RCPT TO the sender, then RSET: nothing is sent."""
    connection = open_connection(params, timeout=timeout)
    try:
        with _classified(params, stage="send"):
            code, reply = connection.mail(params.from_email)
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

    def __init__(self, params, stage):
        self.params = params
        self.stage = stage

    def __enter__(self):
        return self

    def __exit__(self, exc_type, error, traceback):
        if error is None or isinstance(error, SmtpFailure):
            return False
        failure = classify(error, self.stage, self.params)
        if failure is None:
            return False
        raise failure from None


def _reply_text(code, reply):
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return f"{code} {reply}".strip() if code else str(reply)


def _describe_os_error(error):
    if isinstance(error, socket.gaierror):
        return _("The host name could not be resolved (%(error)s).") % {"error": error.strerror}
    if isinstance(error, TimeoutError | socket.timeout):
        return _("The server did not answer in time.")
    return error.strerror or str(error) or error.__class__.__name__


def classify(error, stage, params):
    """The SmtpFailure for an exception raised while talking to the server, or None."""
    hint = hint_for(params)
    if isinstance(error, smtplib.SMTPAuthenticationError | smtplib.SMTPNotSupportedError):
        code = getattr(error, "smtp_code", None)
        text = _reply_text(code, getattr(error, "smtp_error", str(error)))
        kind = TRANSIENT if code and 400 <= code < 500 else SERVER
        return SmtpFailure(kind, text, code, hint_for(params, code=code, text=text))
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = error.recipients.values()
        codes = [code for code, _reply in replies]
        text = "; ".join(
            f"{rcpt}: {_reply_text(code, reply)}"
            for rcpt, (code, reply) in error.recipients.items()
        )
        kind = TRANSIENT if any(400 <= c < 500 for c in codes) else MESSAGE
        return SmtpFailure(
            kind, text, codes[0] if codes else None, hint_for(params, codes[0], text)
        )
    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        text = _reply_text(code, error.smtp_error)
        if 400 <= code < 500:
            kind = TRANSIENT
        elif isinstance(error, smtplib.SMTPSenderRefused) or stage != "send":
            kind = SERVER
        else:
            kind = MESSAGE
        return SmtpFailure(kind, text, code, hint_for(params, code=code, text=text))
    if isinstance(error, ssl.SSLCertVerificationError):
        return SmtpFailure(
            SERVER,
            _("The server's certificate was not accepted: %(reason)s")
            % {"reason": error.verify_message or error.reason},
            hint=_(
                "The certificate does not match the host name or is not trusted. Use the "
                "host name the certificate was issued for."
            ),
        )
    if isinstance(error, ssl.SSLError):
        return SmtpFailure(
            SERVER, _("TLS failed: %(reason)s") % {"reason": error.reason or error}, hint=hint
        )
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return SmtpFailure(
            TRANSIENT, str(error) or _("The server closed the connection."), hint=hint
        )
    if isinstance(error, OSError):
        return SmtpFailure(TRANSIENT, _describe_os_error(error), hint=hint)
    if isinstance(error, smtplib.SMTPException):
        return SmtpFailure(TRANSIENT, str(error), hint=hint)
    return None


def hint_for(params, code=None, text=""):
    """A short explanation where the cause of a failure is known."""
    port, security = params.port, params.security
    text = text or ""
    if code == 535 or (code and "5.7.8" in text):
        return _("The server rejected the username or password.")
    if "5.7.57" in text or "5.7.30" in text or "5.7.139" in text:
        return _(
            "Microsoft 365 has basic authentication (password login) for SMTP turned off "
            "for this mailbox or tenant."
        )
    if "5.4.5" in text:
        return _("The sending quota of the account is used up; mail waits until it resets.")
    if port == 465 and security == "starttls":
        return _("Port 465 usually expects SSL/TLS, not STARTTLS.")
    if port in (25, 587) and security == "ssl":
        return _("Port %(port)s usually expects STARTTLS or no encryption, not SSL/TLS.") % {
            "port": port
        }
    return ""
