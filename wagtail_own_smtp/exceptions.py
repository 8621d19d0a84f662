"""The app's failures, one hierarchy: ``except OwnSmtpError`` catches every one of them.

Each says what went wrong in words an editor can act on and never holds a password.
"""

from django.utils.translation import gettext as _

from .smtp_client import clean_reply


class OwnSmtpError(Exception):
    """Base of every failure this app raises on purpose."""


class SmtpFailure(OwnSmtpError):
    """What went wrong, in the server's own words. Never contains the password."""

    def __init__(self, kind, text, code=None, hint=""):
        text = clean_reply(text)  # a reply combined from several (refused recipients): capped
        super().__init__(text)
        self.kind = kind
        self.window = None  # THROTTLE: seconds the site waits at least
        self.server_listens = False  # whether the session may still end with QUIT
        self.text = text
        self.code = code
        self.hint = hint

    def __str__(self):
        return self.text


class LeaseLost(OwnSmtpError):
    """Another dispatcher took over the site's lease (this one stalled past it): stop sending."""


class OutcomeNotWritten(OwnSmtpError):
    """A sent message's outcome could not be written while the next message was under way;
    ``__cause__`` is why. That next message is incomplete: its connection must be dropped."""


class PrivateHostError(OwnSmtpError, ValueError):
    """The host resolves to an address this app refuses to connect to."""


class MessageTooLarge(OwnSmtpError, ValueError):
    """A message is larger than ``WAGTAIL_OWN_SMTP_MAX_MESSAGE_SIZE``; nothing was queued."""


class UndecryptablePassword(OwnSmtpError):
    """No configured key decrypts the stored password (a key was removed or SECRET_KEY changed)."""

    def __init__(self):
        super().__init__(_("The stored SMTP password cannot be decrypted with any configured key."))


class MailboxFailure(OwnSmtpError):
    """The mailbox cannot be read now, in words an editor can act on. Never holds the password."""

    def __init__(self, text, hint=""):
        super().__init__(text)
        self.text = text
        self.hint = hint


class InvalidLink(OwnSmtpError):
    """A confirmation link that cannot be used; ``reason`` is one of the constants below."""

    UNKNOWN = "unknown"  # never issued, already used, or replaced by a newer one
    EXPIRED = "expired"
    CHANGED = "changed"  # the parameters changed after the link was sent

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason
