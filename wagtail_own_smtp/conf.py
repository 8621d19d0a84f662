"""App settings, read at call time so that ``override_settings`` works."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _

DEFAULTS = {
    "ENCRYPTION_KEYS": None,  # None: derived from SECRET_KEY (+ SECRET_KEY_FALLBACKS)
    "FALLBACK_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "ALLOW_PRIVATE_HOSTS": False,
    "CA_FILE": None,
    "TIMEOUT": 15,
    "VERIFICATION_MAX_AGE": 172800,
    "MAX_MESSAGE_SIZE": 25 * 1024 * 1024,
    "MAX_MESSAGE_AGE": 3 * 24 * 3600,
    "DISPATCH_BUDGET": 50,
    # SMTP conversations one dispatcher process keeps going at once, one per site (agents.py).
    "CONNECTIONS": 32,
    # Seconds a site waits after a server's throttle (a 4xx at MAIL FROM, 432 concurrent
    # connections); a daily quota waits until its rolling 24 hours can have room again.
    "THROTTLE_SECONDS": 60,
    # Percent of each hourly and daily cap that bulk mail leaves free for normal mail (0-100).
    "BULK_RESERVE": 10,
    "LEASE_SECONDS": 300,  # a dispatcher that dies frees its site and messages after this
    # Wrong confirmation links per client (IPv4 address, IPv6 /64) and window, then 429; None: off.
    # Counted in this Django cache: with several machines it must be a shared one (Redis, DB).
    "VERIFY_FAILURE_LIMIT": 10,
    "VERIFY_FAILURE_WINDOW": 600,
    "VERIFY_FAILURE_CACHE": "default",
    # Per provider ("microsoft", "google"), settings over oauth.DEFAULT_PROVIDERS: CLIENT_ID and
    # CLIENT_SECRET of the platform's app for signing in, AUTHORIZE_URL, TOKEN_URL, TENANT, SCOPE.
    "OAUTH_PROVIDERS": {},
    # Bounces: how often the sender mailboxes are read, how much one reading takes, and the soft
    # bounces (on different days within SOFT_BOUNCE_DAYS) that suppress an address.
    "BOUNCE_POLL_SECONDS": 300,
    "BOUNCES_PER_RUN": 200,
    "MAX_REPORT_SIZE": 2 * 1024 * 1024,
    "SOFT_BOUNCE_LIMIT": 3,
    "SOFT_BOUNCE_DAYS": 14,
    # The sender-domain check (domain_check.py): the resolvers it asks ("address" or
    # "address:port"; None: the system's), the blocklist zones, each query's timeout, the whole
    # check's deadline, and how long a result is reused for the same domain and server.
    "DNS_RESOLVERS": None,
    "DNSBL_ZONES": ["zen.spamhaus.org", "bl.spamcop.net"],
    "DNS_TIMEOUT": 3,
    "DOMAIN_CHECK_DEADLINE": 20,
    "DOMAIN_CHECK_REUSE_SECONDS": 3600,
}


def get(name):
    """Return ``WAGTAIL_OWN_SMTP_<name>`` or its default."""
    return getattr(settings, f"WAGTAIL_OWN_SMTP_{name}", DEFAULTS[name])


def bulk_reserve():
    """``BULK_RESERVE`` as a whole percentage from 0 to 100 (ImproperlyConfigured otherwise)."""
    value = get("BULK_RESERVE")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ImproperlyConfigured(
            _(
                "WAGTAIL_OWN_SMTP_BULK_RESERVE must be a whole percentage from 0 to 100, "
                "not %(value)s."
            )
            % {"value": repr(value)}
        )
    return value
