"""What a server's reply means: one classification, by stage, code, enhanced code and whom it names.

Every failure of a conversation becomes an ``SmtpFailure`` carrying the server's original reply
and its kind, in one of three scopes (docs/server-replies.md has the table): this message
(TRANSIENT: retry it later; MESSAGE: it failed), this site for a while (THROTTLE: end the session,
keep every message queued without spending an attempt, back the site off for ``failure.window``),
and this site until the editor acts (SERVER: pause, keep the mail queued, show the reply and a
hint). ``reply_scope`` classifies every reply, once; ``classify`` every exception.
"""

import re
import smtplib
import socket
import ssl

from django.utils.translation import gettext as _

from . import conf
from .exceptions import SmtpFailure
from .hints import hint_for, is_timeout
from .smtp_client import clean_reply

TRANSIENT = "transient"
MESSAGE = "message"
SERVER = "server"
THROTTLE = "throttle"


def reply_text(code, reply):
    """A reply as stored and shown: its code and its cleaned words."""
    reply = clean_reply(reply)
    return f"{code} {reply}".strip() if code else reply


def describe_os_error(error, params):
    """A connection's failure (no reply to quote) in words an editor can act on."""
    if isinstance(error, socket.gaierror):
        return _("The host name could not be resolved (%(error)s).") % {"error": error.strerror}
    if is_timeout(error):
        return _("The server did not answer in time.")
    if isinstance(error, ConnectionRefusedError):
        return _("%(host)s refused the connection on port %(port)s.") % {
            "host": params.host,
            "port": params.port,
        }
    if isinstance(error, smtplib.SMTPServerDisconnected | ConnectionResetError | BrokenPipeError):
        return _("The server closed the connection.")
    return error.strerror or str(error) or error.__class__.__name__


# Quotas of the account that free as their rolling window moves on: Gmail's "550 5.4.5 Daily
# user sending limit exceeded", Microsoft 365's "554 5.2.0 ...SubmissionQuotaExceededException",
# IONOS's "Mail send limit exceeded".
_DAILY_QUOTA = re.compile(r"\b5\.4\.5\b|SubmissionQuotaExceeded|send limit exceeded", re.I)
# The account itself refused, whatever the stage: basic authentication off (5.7.139, 5.7.30,
# 5.7.57), tenant blocked (5.7.705, 5.7.708), not allowed to send as the sender (5.7.60,
# 5.2.252 SendAsDenied), throttled for continuous errors (5.2.251-5.2.255).
_ACCOUNT_REFUSED = re.compile(
    r"\b5\.7\.(?:139|30|57|60|705|708)\b|\b5\.2\.25[1-5]\b|SendAsDenied", re.I
)
# A reply about the envelope sender: RFC 3463's sender codes, or words naming it.
_SENDER_CODE = re.compile(r"\b5\.1\.[78]\b")
_SENDER_WORDS = re.compile(r"\bsender\b", re.I)
_ENHANCED_CODE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
DAY = 24 * 3600


def reply_scope(stage, code, text, sender=""):
    """``(kind, window)`` of a server's reply: what it is about, and for THROTTLE how long the
    site waits at least (seconds; ``DAY`` for a rolling daily quota, else THROTTLE_SECONDS).

    ``stage``: "greeting", "ehlo", "tls", "auth", "mail" (MAIL FROM), "rcpt" (RCPT TO), "data"
    (DATA and after) or "send" (elsewhere in a message); ``sender``: the envelope sender.
    """
    code = code or 0
    if _DAILY_QUOTA.search(text):
        return THROTTLE, DAY
    if code == 432:  # Microsoft 365: "432 4.3.2 Concurrent connections limit exceeded"
        return THROTTLE, conf.get("THROTTLE_SECONDS")
    if code >= 500 and _ACCOUNT_REFUSED.search(text):
        return SERVER, None
    if 400 <= code < 500:
        if stage == "mail" and code != 421:
            # "450 4.7.1 Error: too much mail from ..." (Postfix's rate limit): every later
            # MAIL FROM of the session would get the same, and count as one more error.
            return THROTTLE, conf.get("THROTTLE_SECONDS")
        return TRANSIENT, None
    if stage not in ("mail", "rcpt", "data", "send"):
        return SERVER, None  # greeting, EHLO, STARTTLS, AUTH: the server or its settings
    if stage == "mail":
        # A size refusal at MAIL FROM is about this message; anything else about the sender.
        return (MESSAGE if code == 552 or "5.3.4" in text else SERVER), None
    if stage == "rcpt" and _names_sender(text, sender):
        # Postfix, with its default smtpd_delay_reject, refuses the sender at RCPT TO.
        return SERVER, None
    if stage == "data" and "5.2.2" in _ENHANCED_CODE.findall(text):
        if code == 554 or "submission" in text.lower():
            # Microsoft 365: "554 5.2.2 mailbox full; STOREDRV.Submission...": the SENDING
            # mailbox (its Sent Items keep a copy); a recipient's would be 552 at RCPT TO.
            return SERVER, None
    return MESSAGE, None


def _names_sender(text, sender):
    if sender and sender.lower() in text.lower():
        return True
    return bool(_SENDER_CODE.search(text) or _SENDER_WORDS.search(text))


def classify(error, stage, params):
    """The SmtpFailure for an exception raised while talking to the server, or None.

    ``stage``: "connect", "tls", "greeting", "ehlo", "auth" or "send"; within "send", the
    exception tells MAIL FROM, RCPT TO and DATA apart.
    """
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        # Every recipient refused (some refused and the message sent: only a note).
        text = refused_text(error.recipients)
        scopes = [
            (*reply_scope("rcpt", code, reply_text(code, reply), params.from_email), code)
            for code, reply in error.recipients.values()
        ]
        # The reply that reaches furthest decides: the account over the message.
        kind, window, code = min(scopes, key=lambda scope: _REACH.index(scope[0]))
        return _failure(kind, window, text, code, params, "rcpt")
    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        text = reply_text(code, error.smtp_error)
        if isinstance(error, smtplib.SMTPSenderRefused):
            stage = "mail"
        elif isinstance(error, smtplib.SMTPDataError):
            stage = "data"
        kind, window = reply_scope(stage, code, text, params.from_email)
        return _failure(kind, window, text, code, params, stage)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        # Raised by this module (no AUTH offered) or smtplib: the server lacks a feature.
        failure = SmtpFailure(SERVER, str(error), hint=hint_for(params, stage=stage, error=error))
        failure.server_listens = True
        return failure
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
            describe_os_error(error, params),
            hint=hint_for(params, stage=stage, error=error),
        )
    if isinstance(error, smtplib.SMTPException):
        return SmtpFailure(TRANSIENT, str(error), hint=hint_for(params, stage=stage))
    return None


_REACH = [SERVER, THROTTLE, TRANSIENT, MESSAGE]


def _failure(kind, window, text, code, params, stage):
    failure = SmtpFailure(kind, text, code, hint_for(params, code, text, stage, kind=kind))
    failure.window = window
    # The server answered, so it still listens: the session can end with QUIT (not after 421).
    failure.server_listens = code != 421
    return failure


def refused_text(refused):
    """The replies to refused recipients, ``{recipient: (code, reply)}``, as one stored text:
    the failure when every recipient was refused, the message's note when some were."""
    return clean_reply(
        "; ".join(f"{rcpt}: {reply_text(code, reply)}" for rcpt, (code, reply) in refused.items())
    )
