"""Settings shared by every environment of the survey site (as `wagtail start` lays them out).

The block "Own SMTP server" at the end is the wiring the wagtail-own-smtp README gives host
projects, line for line.
"""

import os
from pathlib import Path

import django

PROJECT_DIR = Path(__file__).resolve().parent.parent
BASE_DIR = PROJECT_DIR.parent

INSTALLED_APPS = [
    "home",
    "survey",
    "wagtail.contrib.forms",
    "wagtail.contrib.redirects",
    "wagtail.embeds",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.search",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "django_filters",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "wagtail.contrib.redirects.middleware.RedirectMiddleware",
]

ROOT_URLCONF = "surveysite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [PROJECT_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "surveysite.wsgi.application"

# Everything the site writes at run time (database, media, the demo's certificates and
# mailboxes) lives in one folder: delete it to start afresh.
VAR_DIR = Path(os.environ.get("SURVEY_DEMO_VAR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "db.sqlite3",
        # runserver and the qcluster workers write at the same time: wait for the lock, and
        # take it when a transaction starts rather than failing halfway through. The
        # write-ahead log lets pages read while a worker writes, and a commit need not wait
        # for the disk (system check W005).
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
]
STATICFILES_DIRS = [PROJECT_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STATIC_URL = "/static/"
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "/media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

WAGTAIL_SITE_NAME = "Survey demo"
WAGTAILSEARCH_BACKENDS = {"default": {"BACKEND": "wagtail.search.backends.database"}}
WAGTAILADMIN_BASE_URL = os.environ.get("WAGTAILADMIN_BASE_URL", "http://localhost:8000")
WAGTAILDOCS_EXTENSIONS = ["csv", "docx", "key", "odt", "pdf", "pptx", "rtf", "txt", "xlsx", "zip"]

# Mail that is not sent through a site's own server leaves from the platform's address.
DEFAULT_FROM_EMAIL = "Survey platform <noreply@platform.example>"

# The platform's own mail service (the fallback for sites that do not use their own server).
PLATFORM_SMTP_HOST = os.environ.get("PLATFORM_SMTP_HOST", "localhost")
PLATFORM_SMTP_PORT = int(os.environ.get("PLATFORM_SMTP_PORT", "25"))


# -- Own SMTP server (wagtail-own-smtp) -------------------------------------------------------

INSTALLED_APPS += ["wagtail.contrib.settings", "django_q", "wagtail_own_smtp"]

if django.VERSION >= (6, 1):
    # MAILERS replaces EMAIL_BACKEND: the fallback is another mailer alias.
    MAILERS = {
        "default": {
            "BACKEND": "wagtail_own_smtp.backends.EmailBackend",
            "OPTIONS": {"fallback": "platform"},
        },
        "platform": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": PLATFORM_SMTP_HOST, "port": PLATFORM_SMTP_PORT},
        },
    }
else:
    EMAIL_BACKEND = "wagtail_own_smtp.backends.EmailBackend"
    WAGTAIL_OWN_SMTP_FALLBACK_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = PLATFORM_SMTP_HOST
    EMAIL_PORT = PLATFORM_SMTP_PORT

# django-q2 runs the dispatcher (`manage.py qcluster`); its ORM broker needs no extra service.
Q_CLUSTER = {"name": "site", "orm": "default", "timeout": 90, "retry": 120}
