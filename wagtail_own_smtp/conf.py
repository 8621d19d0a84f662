"""App settings, read at call time so that ``override_settings`` works."""

from django.conf import settings

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
    "LEASE_SECONDS": 300,  # a dispatcher that dies frees its site and messages after this
}


def get(name):
    """Return ``WAGTAIL_OWN_SMTP_<name>`` or its default."""
    return getattr(settings, f"WAGTAIL_OWN_SMTP_{name}", DEFAULTS[name])
