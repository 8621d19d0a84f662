"""What a message in the sender's mailbox reports: a bounce, a complaint, or nothing at all.

Pure: bytes in, a ``Report`` (or ``None``) out; no database, no network. Reading the mailbox,
matching a report to a message of its site and suppressing addresses live elsewhere.

Recognised, in this order:

- a complaint: an RFC 5965 feedback report (``multipart/report; report-type=feedback-report``);
- a delivery status notification: RFC 3464 (``multipart/report; report-type=delivery-status``),
  per recipient with its ``Status`` and ``Diagnostic-Code``; ``Action: delayed``, ``relayed``,
  ``delivered`` and ``expanded`` are not failures;
- the other bounce layouts real servers send (Exim's plain text, older Exchange, qmail, …) as
  GNU Mailman's detectors (``flufl.bounce``) find them, but only in mail from a mail system
  (``MAILER-DAEMON``, ``postmaster``, Exim's ``X-Failed-Recipients``) that no vacation marker
  flags: RFC 3834 marks bounces and vacation notices alike (``Auto-Submitted: auto-replied``), so
  that header alone tells nothing, but a person's out-of-office reply never counts.

Everything else is not a report. The mailbox owner's (and anyone's) ordinary mail reaches this
module too, so a message that is not recognised must never lead to anything.
"""

import email
import email.policy
import email.utils
import re
from dataclasses import dataclass

from flufl.bounce import all_failures

from .smtp_client import clean_reply

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"

MAX_DIAGNOSTIC = 1000  # characters of a remote server's words kept per recipient
MAX_PARTS = 50  # a report has three parts; a bomb of nested parts is not read further
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_FAILED_ACTIONS = {"failed", ""}  # an absent Action in a DSN means it failed (RFC 3464 2.3.3)


@dataclass(frozen=True)
class Failure:
    """One recipient a report names: the address as the report gives it, in lower case."""

    recipient: str  # "" for a complaint whose provider redacted the complainer
    kind: str  # HARD, SOFT or COMPLAINT
    status: str = ""  # the enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""  # the remote server's words, cleaned


@dataclass(frozen=True)
class Report:
    """A recognised report: whom it names, and what identifies the message it is about."""

    failures: tuple
    original_message_id: str = ""  # Message-ID of the returned message, without <>
    original_headers: tuple = ()  # (name, value) of the returned header block, as found


def read_report(raw):
    """The ``Report`` in ``raw`` (one message's bytes), or ``None`` if it reports nothing.

    Malformed and hostile input (bad encodings, deep nesting, huge headers) gives ``None`` or a
    report of what could be read; it never raises. The caller bounds ``raw``'s size.
    """
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        return _read(message)
    except (RecursionError, MemoryError):
        return None
    except Exception:  # the email package raises odd errors on odd input
        return None


def _read(message):
    parts = _parts(message)
    if parts is None:
        return None
    report_type = message.get_param("report-type", "", header="content-type")
    is_report = message.get_content_type() == "multipart/report"
    if is_report and str(report_type).lower() == "feedback-report":
        return _complaint(parts)
    if is_report and str(report_type).lower() == "delivery-status":
        return _delivery_status(parts)
    if not from_mail_system(message) or is_vacation_notice(message):
        return None
    return _heuristic(message, parts)


def _parts(message):
    """The message's parts in order, or None when there are more than any report has."""
    parts = []
    for part in message.walk():
        parts.append(part)
        if len(parts) > MAX_PARTS:
            return None
    return parts


_MAIL_SYSTEMS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")


def from_mail_system(message):
    """True for mail a mail system wrote: bounces come from MAILER-DAEMON or postmaster."""
    if message.get("X-Failed-Recipients") is not None:
        return True
    _name, address = email.utils.parseaddr(str(message.get("From", "")))
    return address.partition("@")[0].lower() in _MAIL_SYSTEMS


def is_vacation_notice(message):
    """True for the markers vacation and out-of-office responders set (never on bounces)."""
    if any(message.get(name) is not None for name in ("X-Autoreply", "X-Autorespond")):
        return True
    return str(message.get("Precedence", "")).strip().lower() == "auto_reply"


def _delivery_status(parts):
    failures = []
    for part in parts:
        if part.get_content_type() != "message/delivery-status":
            continue
        for fields in _status_groups(part):
            failure = _dsn_failure(fields)
            if failure is not None:
                failures.append(failure)
    if not failures:
        return None
    return Report(tuple(failures), *_original(parts))


def _status_groups(part):
    """The field groups of a message/delivery-status part: per message, then per recipient."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parsed the groups as messages
        return [dict(_lower_items(group)) for group in payload]
    text = payload if isinstance(payload, str) else ""
    groups = []
    for block in re.split(r"\r?\n\s*\r?\n", text):
        parsed = email.message_from_string(block.strip() + "\n\n", policy=email.policy.compat32)
        if parsed.keys():
            groups.append(dict(_lower_items(parsed)))
    return groups


def _lower_items(fields):
    return [(name.lower(), str(value)) for name, value in fields.items()]


def _dsn_failure(fields):
    recipient = _address_of(fields.get("final-recipient") or fields.get("original-recipient"))
    action = fields.get("action", "").strip().lower()
    if not recipient or action not in _FAILED_ACTIONS:
        return None
    diagnostic = clean(fields.get("diagnostic-code", "").partition(";")[2] or "")
    status = _status_code(fields.get("status", "")) or _status_code(diagnostic)
    kind = SOFT if status.startswith("4") else HARD
    return Failure(recipient, kind, status, diagnostic)


def _complaint(parts):
    feedback = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if feedback is None:
        return None
    fields = {}
    for group in _status_groups(feedback):
        fields.update(group)
    message_id, headers = _original(parts)
    recipient = _address_of(fields.get("original-rcpt-to"))
    if not recipient:
        # Some providers redact the complainer (Microsoft's JMRP): "" lets the caller use the
        # returned message's only recipient, if it had one.
        recipient = _address_of(dict((n.lower(), v) for n, v in headers).get("to"))
    kind = clean(fields.get("feedback-type", "abuse"))
    return Report((Failure(recipient, COMPLAINT, "", kind),), message_id, headers)


def _heuristic(message, parts):
    temporary, permanent = all_failures(message)
    if not temporary and not permanent:
        return None
    text = _plain_text(parts)
    failures = []
    for addresses, kind in ((permanent, HARD), (temporary, SOFT)):
        for address in sorted(addresses):
            recipient = _address_of(address.decode("utf-8", "replace"))
            if recipient:
                diagnostic = _diagnostic_near(text, recipient)
                failures.append(Failure(recipient, kind, _status_code(diagnostic), diagnostic))
    if not failures:
        return None
    return Report(tuple(failures), *_original(parts))


def _plain_text(parts):
    for part in parts:
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            return payload[:200_000].decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def _diagnostic_near(text, recipient):
    """The line naming the recipient and the next few: where bounce texts give the reason."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if recipient in line.lower():
            return clean(" ".join(lines[index : index + 4]))
    return ""


def _original(parts):
    """(Message-ID, header fields) of the returned message or its returned headers."""
    original = _returned_message(parts)
    if original is None:
        return "", ()
    headers = tuple((name, clean(str(value))) for name, value in original.items()[:200])
    message_id = clean(str(original.get("Message-ID", ""))).strip().strip("<>").strip()
    return message_id, headers


_HEADER_BLOCK = re.compile(r"(?:^|\n\n)((?:[!-9;-~]+:[^\n]*\n(?:[ \t][^\n]*\n)*)+)")


def _returned_message(parts):
    """The returned message (at least its header block): a part of its own, or, as Exim and
    others send it, the first header block with a Message-ID in the text."""
    for part in parts:
        content_type = part.get_content_type()
        if content_type == "message/rfc822" and isinstance(part.get_payload(), list):
            original = part.get_payload()[0]
        elif content_type == "text/rfc822-headers":
            payload = part.get_payload(decode=True) or b""
            original = email.message_from_bytes(payload[:65536], policy=email.policy.compat32)
        else:
            continue
        return original
    text = _plain_text(parts).replace("\r\n", "\n")
    for block in _HEADER_BLOCK.finditer(text):
        original = email.message_from_string(block.group(1) + "\n", policy=email.policy.compat32)
        if original.get("Message-ID"):
            return original
    return None


def _address_of(value):
    """The address of ``rfc822; someone@example.org`` or ``<someone@example.org>``."""
    if not value:
        return ""
    value = str(value).partition(";")[2] or str(value)
    _name, address = email.utils.parseaddr(clean(value))
    return address.lower() if "@" in address else ""


def _status_code(text):
    found = _STATUS.search(text or "")
    return ".".join(found.groups()) if found else ""


def clean(text):
    """A remote server's words as they may be stored and shown: cleaned like any server reply
    (``smtp_client.clean_reply``), on one line, bounded."""
    return " ".join(clean_reply(str(text), limit=4 * MAX_DIAGNOSTIC).split())[:MAX_DIAGNOSTIC]
