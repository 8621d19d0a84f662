"""The demo inbox: every message the two demo mail servers received, newest first.

Demo only: it shows all mail to anyone who can reach the site.
"""

import mailbox
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from .mailservers import SERVER_LABELS, maildirs

LIST_LIMIT = 300
MAILDIR_KEY_TIME = re.compile(r"(\d+)\.M(\d+)P")
HEADERS_SHOWN = [
    "From",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "Return-Path",
    "Delivered-To",
    "Received",
]


@dataclass
class Entry:
    server: str
    key: str
    message: object  # email.message.EmailMessage

    @property
    def server_label(self):
        return SERVER_LABELS[self.server]

    @property
    def received_at(self):
        """Delivery time, from the key Python's Maildir gives: "<seconds>.M<microseconds>P…"."""
        match = MAILDIR_KEY_TIME.match(self.key)
        if not match:
            return None
        seconds, microseconds = (int(group) for group in match.groups())
        return datetime.fromtimestamp(seconds + microseconds / 1e6, UTC)

    @property
    def sender(self):
        return str(self.message.get("From", ""))

    @property
    def to(self):
        return str(self.message.get("To", ""))

    @property
    def subject(self):
        return str(self.message.get("Subject", ""))


def _maildir(server):
    if server not in SERVER_LABELS:
        raise Http404
    return mailbox.Maildir(maildirs()[server], factory=None, create=True)


def _parse(data, headers_only=False):
    return BytesParser(policy=policy.default).parsebytes(data, headersonly=headers_only)


def _entry(server, key):
    try:
        data = _maildir(server).get_bytes(key)
    except KeyError:
        raise Http404 from None
    return Entry(server, key, _parse(data))


def inbox(request):
    entries = []
    counts = {}
    for server in SERVER_LABELS:
        box = _maildir(server)
        keys = list(box.keys())
        counts[server] = len(keys)
        entries += [
            Entry(server, key, _parse(box.get_bytes(key), headers_only=True)) for key in keys
        ]
    oldest = datetime.min.replace(tzinfo=UTC)
    entries.sort(key=lambda entry: entry.received_at or oldest, reverse=True)
    return TemplateResponse(
        request,
        "demo/inbox.html",
        {
            "entries": entries[:LIST_LIMIT],
            "total": len(entries),
            "counts": [(SERVER_LABELS[server], count) for server, count in counts.items()],
            "live": request.GET.get("live") == "1",
        },
    )


def message_detail(request, server, key):
    entry = _entry(server, key)
    message = entry.message
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    headers = [(name, str(value)) for name in HEADERS_SHOWN for value in message.get_all(name, [])]
    return TemplateResponse(
        request,
        "demo/message.html",
        {
            "entry": entry,
            "headers": headers,
            "text": text_part.get_content() if text_part else None,
            # Links in the sandboxed frame open in the whole window (the confirmation link).
            "html": '<base target="_top">' + html_part.get_content() if html_part else None,
            "attachments": [part.get_filename() or "" for part in message.iter_attachments()],
        },
    )


def message_source(request, server, key):
    try:
        data = _maildir(server).get_bytes(key)
    except KeyError:
        raise Http404 from None
    return HttpResponse(data, content_type="text/plain; charset=utf-8")


@require_POST
def clear(request):
    for server in SERVER_LABELS:
        _maildir(server).clear()
    return redirect("demo:inbox")
