"""RFC 5322 message bytes: building them, rewriting the sender, reading their header fields.

The one place the app turns an email into bytes, changes header lines of those bytes, or reads
them back, and the one IDNA helper (``ascii_domain``) for every domain the app writes: the SMTP
envelope, a Message-ID, the host and sender fields of the settings.

The sender is rewritten at send time, not when the message is queued: the verified sender can
change (an editor confirms a new server) while mail waits, and the mail must leave with the
sender of the server it actually goes through.
"""

import functools
import hashlib
import inspect
import re
from email import policy
from email.errors import MessageError
from email.headerregistry import Address, AddressHeader
from email.parser import BytesHeaderParser
from email.utils import make_msgid

import idna
from django.utils.translation import gettext as _

_LOCAL_DOMAINS = ("localhost", ".local", ".localdomain", ".internal", ".lan", ".home.arpa")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# A plain ASCII address (dot-atom local part, host name): its addr-spec is itself, unparsed.
_PLAIN_ADDRESS = re.compile(_DOT_ATOM.pattern + r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
_PARSED_FROM_CACHE = 256  # distinct From values a rewrite remembers (bulk mail repeats one)


# -- domains and envelope addresses ------------------------------------------------------------


def ascii_domain(domain):
    """A domain as SMTP and DNS carry it: an ASCII name unchanged, an internationalised one in
    IDNA form (UTS #46 mapping, IDNA 2008: as browsers and registries map it, "straße.de" is
    "xn--strae-oqa.de"). Raises UnicodeError (a ValueError) for a name DNS cannot carry (an
    empty label or one over 63 characters) or IDNA cannot encode."""
    if domain.isascii():
        labels = domain.split(".")
        if any(not 0 < len(label) < 64 for label in labels[:-1]) or len(labels[-1]) > 63:
            raise UnicodeError("label empty or too long")  # a trailing dot is fine
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise UnicodeError(str(error)) from None


def envelope_address(address):
    """The addr-spec of an address for the SMTP envelope (IDNA domain).

    A local part that needs quotes keeps them: ``"a@evil.example>"@legit.example`` is one
    mailbox at legit.example, never ``<a@evil.example>``.
    """
    return _envelope_address(str(address))


@functools.lru_cache(maxsize=4096)  # a site's sender comes again with every message it queues
def _envelope_address(address):
    if "\r" in address or "\n" in address:
        raise ValueError(_("Invalid address; address parts cannot contain newlines."))
    if _PLAIN_ADDRESS.fullmatch(address):  # most recipients: the header parser costs 60 µs
        local, _at, domain = address.rpartition("@")
        return f"{local}@{ascii_domain(domain)}"
    parsed = AddressHeader.value_parser(address)
    mailboxes = parsed.all_mailboxes
    if len(mailboxes) != 1 or not mailboxes[0].local_part or not mailboxes[0].domain:
        raise ValueError(_("Invalid address: %(address)s") % {"address": address})
    domain = ascii_domain(mailboxes[0].domain)
    return Address(username=mailboxes[0].local_part, domain=domain).addr_spec


def envelope_sender(address):
    """The verified sender (already a checked address) as an envelope address (IDNA domain)."""
    local, _at, domain = address.rpartition("@")
    return f"{local}@{ascii_domain(domain)}"


# -- building ----------------------------------------------------------------------------------


def raw_message(message):
    """The RFC 5322 bytes of a Django EmailMessage, with CRLF line ends as sent over SMTP.

    Building them raises Django's own errors for bad headers (e.g. a newline in the subject),
    before anything is stored; the email package's own (e.g. a newline in an attachment's file
    name) become a ValueError too.
    """
    try:
        if _takes_policy(type(message)):
            # Django 6.0+: Python's modern email API; the SMTP policy writes CRLF.
            return message.message(policy=policy.SMTP).as_bytes()
        return message.message().as_bytes(linesep="\r\n")
    except MessageError as error:
        raise ValueError(str(error)) from error


@functools.lru_cache(maxsize=64)
def _takes_policy(message_class):
    """Whether the class's ``message()`` takes a ``policy`` (Django 6.0+), asked once a class."""
    return "policy" in inspect.signature(message_class.message).parameters


# -- reading -----------------------------------------------------------------------------------


def _fold(name, value):
    name, header = policy.SMTP.header_store_parse(name, value)
    return policy.SMTP.fold(name, header).encode("ascii")


def _header_fields(head):
    """Split a header block into raw fields (continuation lines kept with their field)."""
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif line:
            fields.append(line)
    return fields


def _field_name(field_bytes):
    return field_bytes.split(b":", 1)[0].strip().lower().decode("ascii", "replace")


def _field_value(field_bytes):
    value = field_bytes.split(b":", 1)[1] if b":" in field_bytes else b""
    return value.replace(b"\r\n", b"").strip().decode("utf-8", "surrogateescape")


def _addresses(value):
    """(the addresses of a From value, whether it parsed at all).

    The email package's parser raises odd errors on some odd input (Python 3.11 fails on the
    display name "." with an AttributeError): such a message must still go out.
    """
    try:
        header = policy.default.header_factory("From", value)
        return list(getattr(header, "addresses", ())), True
    except Exception:
        return [], False


def message_headers(raw):
    """``(name, value)`` of a stored message's header fields, decoded; never the body."""
    raw = bytes(raw)
    head, separator, _body = raw.partition(b"\r\n\r\n")
    if not separator:
        head = raw.partition(b"\n\n")[0]
    parsed = BytesHeaderParser(policy=policy.default).parsebytes(head + b"\r\n\r\n")
    headers = []
    for name, value in parsed.raw_items():
        try:
            text = str(policy.default.header_factory(name, value))
        except Exception:  # a malformed field is shown as stored
            text = str(value)
        headers.append((name, " ".join(text.split())))
    return headers


# -- rewriting ---------------------------------------------------------------------------------


def _valid_message_domain(domain):
    domain = domain.strip().lower().rstrip(">")
    return (
        "." in domain
        and not domain.startswith("[")
        and not any(domain == d.lstrip(".") or domain.endswith(d) for d in _LOCAL_DOMAINS)
    )


def _message_id_field(unique, raw, sender_domain):
    """A Message-ID field on the sender's domain with the original unique part, or, when that
    part is empty or malformed, one derived from the message: a retry carries the same id."""
    if not _DOT_ATOM.fullmatch(unique):
        unique = hashlib.sha256(raw).hexdigest()[:32]
    value = f"<{unique}@{ascii_domain(sender_domain)}>"
    if len(value) <= 64 and value.isascii():
        return f"Message-ID: {value}".encode("ascii")  # what folding gives a short ASCII id
    return _fold("Message-ID", value).rstrip(b"\r\n")


class SenderRewrite:
    """The sender rewrite of one site's session: the parts that depend only on the verified
    sender (its ``From`` field per display name, its domain) are built once, not per message.

    ``reference_header``: the name of a field of the platform's own (the bounce reference): a
    field of that name the message brought is dropped, and the given value added.
    """

    def __init__(self, sender, display_name="", reference_header=""):
        self.sender = sender
        self.display_name = display_name
        self.reference_header = reference_header
        self.domain = sender.rpartition("@")[2]
        self.id_domain = ascii_domain(self.domain)
        self._from_fields = {}  # display name -> folded From field
        self._parsed = {}  # original From value -> its addresses (bulk mail repeats one From)

    def from_field(self, name):
        if name not in self._from_fields:
            self._from_fields[name] = _fold("From", Address(name, addr_spec=self.sender))
        return self._from_fields[name]

    def _original_from(self, value):
        if value not in self._parsed:
            if len(self._parsed) > _PARSED_FROM_CACHE:
                self._parsed.clear()
            self._parsed[value] = _addresses(value)
        return self._parsed[value]

    def __call__(self, raw, reference=""):
        head, separator, body = raw.partition(b"\r\n\r\n")
        fields = _header_fields(head)
        if reference:
            # Only the platform's own reference may match a bounce (see bounces.py).
            own = self.reference_header.lower()
            fields = [f for f in fields if _field_name(f) != own]
        by_name = {}
        for index, field_bytes in enumerate(fields):
            by_name.setdefault(_field_name(field_bytes), index)

        original, parsed = [], True
        if "from" in by_name:
            original, parsed = self._original_from(_field_value(fields[by_name["from"]]))
        name = self.display_name or (original[0].display_name if original else "")
        new_from = self.from_field(name)

        replaced = {}
        if "from" in by_name:
            replaced[by_name["from"]] = new_from
        sender = self.sender.lower()
        # An original From that cannot be parsed is kept as Reply-To: it may well differ.
        differs = not parsed or any(address.addr_spec.lower() != sender for address in original)
        additions = [f"{self.reference_header}: {reference}".encode()] if reference else []
        if differs and "reply-to" not in by_name:
            # The original field's own bytes, so its encoding stays exactly as Django wrote it.
            from_field = fields[by_name["from"]]
            additions.append(b"Reply-To:" + from_field.split(b":", 1)[1])
        if "message-id" in by_name:
            message_id = _field_value(fields[by_name["message-id"]])
            unique, at, domain = message_id.strip().strip("<>").rpartition("@")
            if not at or not _valid_message_domain(domain):
                unique = unique or message_id.strip("<> ")
                replaced[by_name["message-id"]] = _message_id_field(unique, raw, self.domain)
        else:
            additions.append(_fold("Message-ID", make_msgid(domain=self.id_domain)).rstrip(b"\r\n"))

        lines = [replaced.get(i, f) for i, f in enumerate(fields)]
        if "from" not in by_name:
            additions.insert(0, new_from)
        lines = [line.rstrip(b"\r\n") for line in lines + additions]
        return b"\r\n".join(lines) + (separator or b"\r\n\r\n") + body


def rewrite_sender(raw, sender, display_name=""):
    """The message as it leaves through the own server: ``From`` is the verified sender.

    The display name is ``display_name`` if given, else the original one. An original ``From``
    with another address becomes ``Reply-To`` unless one is set. A ``Message-ID`` whose domain is
    not a public one (Django takes the machine's host name) gets the sender's domain, keeping its
    unique part, so retries carry the same id. Only these header lines change: every other byte,
    the body above all, stays as queued (no re-wrapping, no re-encoding). A session builds one
    ``SenderRewrite`` per site instead.
    """
    return SenderRewrite(sender, display_name)(raw)
