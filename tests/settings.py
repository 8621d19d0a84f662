"""Settings for the test suite: SQLite by default, PostgreSQL with OWN_SMTP_TEST_DB=postgres."""

import json
import os

import django

BASE_DIR = os.path.dirname(os.path.abspath(__file__))

SECRET_KEY = "tests-only-secret-key-not-for-production"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]

# The README's order: the app comes after Wagtail (``INSTALLED_APPS += [...]``), so Wagtail's
# translations of the same words win unless the app's own differ by context.
INSTALLED_APPS = [
    "wagtail.contrib.settings",
    "wagtail.contrib.forms",
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
    "wagtail_own_smtp",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(BASE_DIR, "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "wagtail.contrib.settings.context_processors.settings",
            ]
        },
    }
]

# Each pytest process gets its own test database, so parallel runs do not collide; the
# environment variable is inherited by subprocesses (qcluster) that a test starts.
os.environ.setdefault("OWN_SMTP_TEST_DB_SUFFIX", str(os.getpid()))
# Databases, screenshots, fault figures and media go here; git ignores it, so a fresh clone
# lacks it. OWN_SMTP_ARTIFACTS gives runs in parallel (.ci/run) a folder each.
ARTIFACTS_DIR = os.environ.get("OWN_SMTP_ARTIFACTS") or os.path.join(BASE_DIR, "artifacts")
os.makedirs(ARTIFACTS_DIR, exist_ok=True)
_SUFFIX = os.environ["OWN_SMTP_TEST_DB_SUFFIX"]

if os.environ.get("OWN_SMTP_TEST_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("OWN_SMTP_DB_NAME", "postgres"),
            "USER": os.environ.get("OWN_SMTP_PG_USER", "postgres"),
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "TEST": {"NAME": f"test_wagtail_own_smtp_{_SUFFIX}"},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("OWN_SMTP_DB_NAME", os.path.join(ARTIFACTS_DIR, "dev.sqlite3")),
            "TEST": {"NAME": os.path.join(ARTIFACTS_DIR, f"test-{_SUFFIX}.sqlite3")},
            "OPTIONS": {"timeout": 20},
        }
    }

STATIC_URL = "/static/"
STATIC_ROOT = os.path.join(ARTIFACTS_DIR, "static")
MEDIA_ROOT = os.path.join(ARTIFACTS_DIR, "media")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WAGTAIL_SITE_NAME = "Test site"
WAGTAILADMIN_BASE_URL = "http://testserver"
DEFAULT_FROM_EMAIL = "noreply@platform.example"

# The wiring the README gives host projects. Django's test runner would swap these for locmem;
# pytest-django does too, so tests of the real path set them again with override_settings.
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {
            "BACKEND": "wagtail_own_smtp.backends.EmailBackend",
            "OPTIONS": {"fallback": "platform"},
        },
        "platform": {
            "BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        },
    }
else:
    EMAIL_BACKEND = "wagtail_own_smtp.backends.EmailBackend"
    WAGTAIL_OWN_SMTP_FALLBACK_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

Q_CLUSTER = {"name": "tests", "orm": "default", "timeout": 90, "retry": 120, "workers": 1}

# Test servers listen on loopback.
WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = True
WAGTAIL_OWN_SMTP_TIMEOUT = 3
# The sender-domain check never asks the machine's resolver: a check a test did not aim at a DNS
# server of its own (example_project/local_dns.py) asks a loopback port where nothing answers,
# briefly.
WAGTAIL_OWN_SMTP_DNS_RESOLVERS = ["127.0.0.1:9"]
WAGTAIL_OWN_SMTP_DNS_TIMEOUT = 0.5
WAGTAIL_OWN_SMTP_DOMAIN_CHECK_DEADLINE = 2
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Subprocesses a test starts (qcluster, own_smtp_send) get the test's settings through the
# environment: OWN_SMTP_SETTING_<NAME>=<JSON> sets WAGTAIL_OWN_SMTP_<NAME>, and
# OWN_SMTP_Q_REDIS_DB=<n> makes django-q2 use Redis on 127.0.0.1:6379 instead of the ORM broker.
for _key, _value in os.environ.items():
    if _key.startswith("OWN_SMTP_SETTING_"):
        globals()["WAGTAIL_OWN_SMTP_" + _key.removeprefix("OWN_SMTP_SETTING_")] = json.loads(_value)
if os.environ.get("OWN_SMTP_Q_REDIS_DB"):
    Q_CLUSTER = {
        "name": f"tests-{_SUFFIX}",
        "redis": {"host": "127.0.0.1", "port": 6379, "db": int(os.environ["OWN_SMTP_Q_REDIS_DB"])},
        "timeout": 90,
        "retry": 120,
        "workers": 1,
    }
