"""What the editor is told about a failure: a hint where the cause is known.

The server's words stay verbatim (``transport.SmtpFailure.text``); a hint adds what they imply,
from the reply itself (``hint_for_reply``, also for a stored reply) or from the moment of failure:
the port, the encryption, the stage, the TLS error (``hint_for``).
"""

import json
import re
import ssl

from django.conf import settings as django_settings
from django.utils import translation
from django.utils.functional import lazy
from django.utils.translation import gettext as _

from .choices import Security

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


def is_timeout(error):
    # smtplib turns a timeout while reading a reply into SMTPServerDisconnected.
    return isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError)


def _reply_hint(code, text):
    """The explanation a server's reply gives away by itself, or ""."""
    # Microsoft 365 answers 535 too, with its own enhanced codes: test those first.
    if "5.7.57" in text or "5.7.30" in text or "5.7.139" in text:
        return _(
            "Microsoft 365 has basic authentication (password login) for SMTP turned off "
            "for this mailbox or tenant: choose the login “Microsoft 365” and sign in instead."
        )
    if "5.7.705" in text or "5.7.708" in text:
        return _(
            "Microsoft 365 has blocked sending for the whole tenant (for example after "
            "suspicious activity). The tenant's administrator must ask Microsoft to lift it; "
            "then confirm the server again."
        )
    if "5.2.252" in text or "sendasdenied" in text.lower() or "5.7.60" in text:
        return _sender_hint()
    if re.search(r"\b5\.2\.25[1345]\b", text):
        return _(
            "Microsoft 365 stops a mailbox from sending after many errors in a row (refused "
            "sender, unknown recipients). Fix the cause the reply names, wait until Microsoft "
            "lifts the block (usually within 24 hours), then confirm the server again."
        )
    if "submissionquotaexceeded" in text.lower():
        return _(
            "The mailbox has reached Microsoft 365's limit of 10,000 recipients a day "
            "(a rolling 24 hours): the site waits until the window has room again."
        )
    if "5.2.2" in text and "submission" in text.lower():
        return _(
            "The sending mailbox is full (the server keeps a copy of each message in Sent "
            "Items): empty Sent Items and Deleted Items, then confirm the server again."
        )
    if code == 432 or "4.3.2 concurrent" in text.lower():
        return _(
            "The mailbox has too many connections open at once (Microsoft 365 allows 3, mail "
            "programs using the mailbox included): the site waits a moment and tries again."
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


def _sender_hint():
    return _(
        "The server does not let this login send as the sender address. Give the login the "
        "right to send as it (an alias, or “Send As” permission in Microsoft 365), or enter the "
        "address the login owns; then confirm the server again."
    )


_REPLY_CODE = re.compile(r"(?:^|: )([2-5]\d\d)[ -]")


def hint_for_reply(text):
    """The hint for a reply as stored (a message's last error), where the reply alone explains it.

    A stored reply has no connection left to look at, so only the reply's own words count: the
    port and TLS hints need ``hint_for`` at the moment of failure.
    """
    text = text or ""
    match = _REPLY_CODE.search(text)
    return _reply_hint(int(match.group(1)) if match else None, text)


def _hint_for(params, code=None, text="", stage=None, error=None, kind=None):
    """A short explanation where the cause of a failure is known.

    ``kind``: the reply's scope, if it has one: transport's ``THROTTLE`` ("throttle") or
    ``SERVER`` ("server"), spelled out here since transport imports this module.
    """
    port, security = params.port, params.security
    text = text or ""
    if params.token_source is not None and stage == "auth" and code and code >= 500:
        return _oauth_refusal_hint(params, text)
    if reply_hint := _reply_hint(code, text):
        return reply_hint
    if getattr(error, "after_starttls", False) and security == Security.NONE:
        return _("The server offers login only over an encrypted connection: choose STARTTLS.")
    if kind == "throttle":
        return _(
            "The server limits how fast this account may send. The site waits and tries "
            "again; a minimum interval or hourly limit that matches the provider's keeps it "
            "from happening."
        )
    if kind == "server" and stage in ("mail", "rcpt", "data"):
        return _sender_hint()
    if isinstance(error, ssl.SSLCertVerificationError):
        return _certificate_hint(error)
    if (
        stage == "tls"
        and security == Security.SSL
        and isinstance(error, ssl.SSLError)
        and error.reason in _NOT_TLS_REASONS
    ):
        return _(
            "The server answered in plain text, so this port does not expect SSL/TLS from "
            "the start. Choose STARTTLS (usually port 587) or no encryption (port 25)."
        )
    if stage == "greeting" and security != Security.SSL and error is not None and is_timeout(error):
        return _(
            "The server accepted the connection but sent no greeting. A port that expects "
            "SSL/TLS from the start (usually 465) behaves like this: choose SSL/TLS."
        )
    if port == 465 and security != Security.SSL:
        return _("Port 465 usually expects SSL/TLS, not %(security)s.") % {
            "security": _("STARTTLS") if security == Security.STARTTLS else _("no encryption")
        }
    if port in (25, 587) and security == Security.SSL:
        return _("Port %(port)s usually expects STARTTLS or no encryption, not SSL/TLS.") % {
            "port": port
        }
    return ""


# Worded when shown, not when the failure happens: each reader gets the hint in their language
# (the failure may happen in a worker, or while another editor saves).
hint_for = lazy(_hint_for, str)


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


def stored_hint(hint):
    """A failure's hint as stored: worded in every admin language, so each editor who looks at
    the failure later reads it in their own (``SmtpSettings.error_hint``)."""
    if not hint:
        return ""
    texts = {}
    for code, _name in django_settings.LANGUAGES:
        with translation.override(code):
            texts[code] = str(hint)
    return json.dumps(texts, ensure_ascii=False)
