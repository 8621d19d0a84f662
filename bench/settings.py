"""Django settings for the benchmarks: the README's wiring, a database of the bench's own.

Environment (set by bench/run.py for each process it starts):

- ``BENCH_DB``: ``sqlite`` (default; the file ``BENCH_SQLITE_PATH``, by default
  bench/results/bench.sqlite3) or ``postgres`` (database ``BENCH_PG_NAME`` on 127.0.0.1:5432).
- ``BENCH_SMTP_PORT``, ``BENCH_SMTP_SECURITY`` (``none`` or ``starttls``), ``BENCH_CA_FILE``: the
  sink that Django's SMTP backend and the peers (post_office, mailer) send to.
- ``BENCH_Q_WORKERS``: django-q2 workers of ``manage.py qcluster`` (default 2, one per core).
- ``BENCH_OWN_SMTP_CONNECTIONS``: ``WAGTAIL_OWN_SMTP_CONNECTIONS`` (unset: the app's default).
"""

import importlib.util
import os
from pathlib import Path

import django

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

SECRET_KEY = "bench-only-secret-key-not-for-production"
DEBUG = False  # DEBUG would keep every SQL query in memory
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"

# The tools people use today, for context; present only where bench/requirements-peers.txt
# installed them.
PEERS = [name for name in ("post_office", "mailer") if importlib.util.find_spec(name)]

INSTALLED_APPS = [
    "wagtail_own_smtp",
    "wagtail.contrib.settings",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.images",
    "wagtail.documents",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "django_q",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    *PEERS,
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "bench.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("BENCH_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BENCH_PG_NAME", "wagtail_own_smtp_bench"),
            "USER": os.environ.get("BENCH_PG_USER", "postgres"),
            "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
        }
    }
else:
    # Django's defaults for SQLite, plus a lock timeout for the cluster and the sender sharing it,
    # and the write-ahead log that the README recommends for a site whose worker shares the file
    # (BENCH_SQLITE_JOURNAL=delete: Django's default rollback journal instead). The host's
    # synchronous level stays at SQLite's default (FULL): the dispatcher lowers it for its run only.
    _JOURNAL = os.environ.get("BENCH_SQLITE_JOURNAL", "wal")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_SQLITE_PATH", str(RESULTS_DIR / "bench.sqlite3")),
            "OPTIONS": {"timeout": 30, "init_command": f"PRAGMA journal_mode={_JOURNAL};"},
        }
    }

STATIC_URL = "/static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WAGTAIL_SITE_NAME = "Bench"
WAGTAILADMIN_BASE_URL = "http://localhost"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DEFAULT_FROM_EMAIL = "invitations@survey.example"

# Django's SMTP backend (sending directly, and as the peers' delivery backend) talks to the sink.
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("BENCH_SMTP_PORT", "25"))
EMAIL_TIMEOUT = 15
if os.environ.get("BENCH_SMTP_SECURITY") == "starttls":
    EMAIL_USE_TLS = True
    EMAIL_HOST_USER = "bench@sink.example"
    EMAIL_HOST_PASSWORD = "sink-password"

# The README's wiring; the platform's service is Django's SMTP backend to the sink.
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {
            "BACKEND": "wagtail_own_smtp.backends.EmailBackend",
            "OPTIONS": {"fallback": "platform"},
        },
        "platform": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend"},
    }
else:
    EMAIL_BACKEND = "wagtail_own_smtp.backends.EmailBackend"
    WAGTAIL_OWN_SMTP_FALLBACK_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

Q_CLUSTER = {
    "name": "bench",
    "orm": "default",
    "timeout": 90,
    "retry": 120,
    "workers": int(os.environ.get("BENCH_Q_WORKERS", "2")),
    "log_level": "WARNING",
}

# The sink listens on loopback and its certificate comes from the bench's own CA.
WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = True
WAGTAIL_OWN_SMTP_CA_FILE = os.environ.get("BENCH_CA_FILE") or None
if os.environ.get("BENCH_OWN_SMTP_CONNECTIONS"):
    WAGTAIL_OWN_SMTP_CONNECTIONS = int(os.environ["BENCH_OWN_SMTP_CONNECTIONS"])

# The peers, configured as their READMEs suggest for a queue drained by a command.
POST_OFFICE = {
    "BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"},
    "DEFAULT_PRIORITY": "medium",
}
MAILER_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
