"""The email backend: find each message's site, then queue it for the own server or hand it on.

Django 5.2 / 6.0::

    EMAIL_BACKEND = "wagtail_own_smtp.backends.EmailBackend"
    WAGTAIL_OWN_SMTP_FALLBACK_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

Django 6.1+ (``MAILERS``): the fallback is another mailer alias::

    MAILERS = {
        "default": {
            "BACKEND": "wagtail_own_smtp.backends.EmailBackend",
            "OPTIONS": {"fallback": "platform"},
        },
        "platform": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": {}},
    }
"""

import django
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from . import conf
from .exceptions import MessageTooLarge
from .message import envelope_address, raw_message
from .middleware import current_bulk, current_site

# Connection options Django's get_connection() may pass (Wagtail's mail helper passes
# username=None, password=None). This backend has no connection of its own: None means absent,
# other values are handed to the fallback backend on Django < 6.1.
_CONNECTION_OPTIONS = (
    "host",
    "port",
    "username",
    "password",
    "use_tls",
    "use_ssl",
    "timeout",
    "ssl_keyfile",
    "ssl_certfile",
)

_HAS_MAILERS = django.VERSION >= (6, 1)
# A large batch is committed in chunks, so the dispatcher starts on the first while the rest is
# built: a small first chunk for a quick start, then each twice the one before (storing is more
# than twice as fast as sending, so a run never finds the queue empty half way), up to CHUNK.
FIRST_CHUNK = 50
CHUNK = 500


def is_report_to_staff(message):
    """True for Django's ``mail_admins`` / ``mail_managers`` (error reports, broken links): mail
    to exactly ``ADMINS`` or ``MANAGERS`` under ``EMAIL_SUBJECT_PREFIX``. It carries tracebacks
    and requests, so it goes to the platform even from inside a site's context."""
    from django.conf import settings

    if not str(message.subject).startswith(settings.EMAIL_SUBJECT_PREFIX):
        return False
    recipients = set(message.recipients())
    for staff in (settings.ADMINS, settings.MANAGERS):
        # Django 6.0+ also takes plain addresses instead of (name, address) pairs.
        addresses = {entry if isinstance(entry, str) else entry[1] for entry in staff}
        if addresses and recipients == addresses:
            return True
    return False


class EmailBackend(BaseEmailBackend):
    """Routes a site's mail: its own, verified SMTP server (queued) or the platform's service.

    Options: ``site`` (send as this site's mail), ``bulk`` (queue it in the site's bulk lane),
    ``fallback`` (Django 6.1+: the mailer alias of the platform's service; before: a backend
    path, default ``WAGTAIL_OWN_SMTP_FALLBACK_BACKEND``).
    """

    def __init__(self, *, site=None, bulk=False, fallback=None, **kwargs):
        self.site = site
        self.bulk = bool(bulk)
        self._fallback_options = {}
        for name in _CONNECTION_OPTIONS:
            if name in kwargs and kwargs[name] is None:
                del kwargs[name]  # treat as absent
            elif name in kwargs and not _HAS_MAILERS:
                self._fallback_options[name] = kwargs.pop(name)
        super().__init__(**kwargs)
        # The fallback gets the same fail_silently; keep our own attribute (6.1 deprecates the
        # base class's).
        self.fail_silently = bool(kwargs.get("fail_silently", False))
        self._fallback_alias, self._fallback_path = self._resolve_fallback(fallback)
        self._fallback = None
        self._opened = False

    def _resolve_fallback(self, fallback):
        """(mailer alias, backend path) of the fallback; refuses a loop back to this backend."""
        if _HAS_MAILERS and fallback is not None:
            from django.conf import settings

            mailers = getattr(settings, "MAILERS", {})
            if fallback not in mailers or fallback == getattr(self, "alias", None):
                raise ImproperlyConfigured(
                    _("The fallback mailer %(alias)r is not another alias in MAILERS.")
                    % {"alias": fallback}
                )
            path = mailers[fallback].get("BACKEND", "django.core.mail.backends.smtp.EmailBackend")
            self._refuse_loop(path)
            return fallback, path
        path = fallback or conf.get("FALLBACK_BACKEND")
        self._refuse_loop(path)
        return None, path

    @staticmethod
    def _refuse_loop(path):
        backend_class = import_string(path) if isinstance(path, str) else path
        if isinstance(backend_class, type) and issubclass(backend_class, EmailBackend):
            raise ImproperlyConfigured(
                _(
                    "The fallback of wagtail_own_smtp's EmailBackend is that backend itself; "
                    "set it to the platform's mail service (e.g. Django's SMTP backend)."
                )
            )

    # -- the platform's service ------------------------------------------------------------
    def fallback_backend(self):
        if self._fallback is None:
            if self._fallback_alias is not None:
                from django.core.mail import mailers

                self._fallback = mailers[self._fallback_alias]
            else:
                backend_class = import_string(self._fallback_path)
                self._fallback = backend_class(
                    fail_silently=self.fail_silently, **self._fallback_options
                )
            if self._opened:
                self._fallback.open()
        return self._fallback

    def open(self):
        # Connections to the platform's service open when first needed; queued mail needs none.
        self._opened = True

    def close(self):
        self._opened = False
        if self._fallback is not None:
            try:
                self._fallback.close()
            finally:
                self._fallback = None

    # -- routing ---------------------------------------------------------------------------
    def send_messages(self, email_messages):
        email_messages = list(email_messages)
        if not email_messages:
            return 0
        from .models import SmtpSettings

        # Only a site's own mail goes to its server (middleware.current_site); anything else,
        # and reports to the platform's staff, is the platform's.
        site = current_site(self.site)
        smtp_settings = SmtpSettings.objects.filter(site=site).first() if site else None
        if smtp_settings is None or not smtp_settings.sends_own:
            return self.fallback_backend().send_messages(email_messages)
        own, to_staff = [], []
        for message in email_messages:
            (to_staff if is_report_to_staff(message) else own).append(message)
        sent = (self.fallback_backend().send_messages(to_staff) or 0) if to_staff else 0
        return sent + (self.enqueue(site, own, current_bulk(self.site, self.bulk)) if own else 0)

    def enqueue(self, site, email_messages, bulk=False):
        """Store the messages for the site's own server; a dispatch run starts on each commit.

        A large batch is stored in chunks, each committed on its own (outside a caller's
        transaction), so its first messages go out while the rest is still being built and
        stored. As with Django's SMTP backend, a message that is refused (too large, a header
        injection) raises, and the messages before it stay queued.

        Mail waits in the queue even while the site has no verified server: it never goes out
        through the platform once the editor chose the own server.
        """
        from .models import Lane

        own_transaction = not transaction.get_connection().in_atomic_block
        limit, now = conf.get("MAX_MESSAGE_SIZE"), timezone.now()
        stored, rows, chunk = 0, [], FIRST_CHUNK
        for message in email_messages:
            row = self._row(site, message, Lane.BULK if bulk else Lane.NORMAL, now, limit)
            if row is not None:
                rows.append(row)
            if own_transaction and len(rows) >= chunk:
                stored += _store(rows)
                rows, chunk = [], min(2 * chunk, CHUNK)
        return stored + _store(rows)

    def _row(self, site, message, lane, now, limit):
        """The queue row of one message, or None for one without recipients (or refused,
        with ``fail_silently``); ``limit``: the largest size allowed in bytes (0: any)."""
        from .models import OutboundMessage

        if not message.recipients():
            return None
        try:
            raw = raw_message(message)
            if limit and len(raw) > limit:
                raise MessageTooLarge(
                    _(
                        "The message is %(size)s bytes, larger than the %(limit)s bytes "
                        "this site may send."
                    )
                    % {"size": len(raw), "limit": limit}
                )
            recipients = [envelope_address(a) for a in message.recipients()]
            sender = envelope_address(message.from_email)
        except ValueError:
            if self.fail_silently:
                return None
            raise
        return OutboundMessage(
            site=site,
            lane=lane,
            subject=str(message.subject).replace("\x00", "")[:255],  # PostgreSQL text holds no NUL
            envelope_from=sender,
            recipients=recipients,
            recipient_count=len(recipients),
            raw_message=raw,
            size=len(raw),
            next_attempt_at=now,
        )


def _store(rows):
    """Store queue rows in one transaction (the caller's, if any); a dispatch run is queued
    once it commits."""
    from .mailqueue import dispatch_after_commit
    from .models import OutboundMessage

    if not rows:
        return 0
    with transaction.atomic():
        if len(rows) == 1:
            rows[0].save()
        else:
            OutboundMessage.objects.bulk_create(rows)
        dispatch_after_commit()
    return len(rows)
