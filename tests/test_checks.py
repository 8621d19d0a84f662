"""Each system check fires in the bad configuration and stays quiet in the good one."""

import copy
import os
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import django
import pytest
from cryptography.fernet import Fernet
from django.core import checks
from django.test import override_settings
from wagtail.models import Site

from wagtail_own_smtp import crypto
from wagtail_own_smtp.backends import EmailBackend
from wagtail_own_smtp.checks import sqlite_without_wal
from wagtail_own_smtp.models import SmtpSettings

ROOT = Path(__file__).resolve().parent.parent
OWN = "wagtail_own_smtp.backends.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
USES_MAILERS = django.VERSION >= (6, 1)
only_with_mailers = pytest.mark.skipif(not USES_MAILERS, reason="MAILERS needs Django 6.1")
only_without_mailers = pytest.mark.skipif(USES_MAILERS, reason="EMAIL_BACKEND before Django 6.1")


class ProjectBackend(EmailBackend):
    """A host project's subclass of this app's backend: still a loop as the fallback."""


def messages(deploy=False, databases=None):
    """This app's messages; with databases, its database check (E002) runs as well."""
    tags = ["wagtail_own_smtp", checks.Tags.database] if databases else ["wagtail_own_smtp"]
    found = checks.run_checks(tags=tags, include_deployment_checks=deploy, databases=databases)
    return [message for message in found if message.id.startswith("wagtail_own_smtp.")]


def ids(**kwargs):
    return {message.id for message in messages(**kwargs)}


WAL = {"init_command": "PRAGMA journal_mode=WAL;"}


@contextmanager
def databases(config):
    """DATABASES as W005 reads it. Open connections keep theirs, which is what Django's warning
    about overriding DATABASES is about: the check opens none."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES", UserWarning)
        with override_settings(DATABASES=config):
            yield


def with_wal(config):
    config = copy.deepcopy(config)
    for database in config.values():
        if database["ENGINE"] == "django.db.backends.sqlite3":
            database["OPTIONS"] = {**database.get("OPTIONS", {}), **WAL}
    return config


@pytest.fixture
def good(settings):
    """The wiring the README gives (test settings have locmem backends in place of it, and
    SQLite without WAL)."""
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.Q_CLUSTER = {"name": "site", "orm": "default", "timeout": 90, "retry": 120}
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 15
    if USES_MAILERS:
        settings.MAILERS = {
            "default": {"BACKEND": OWN, "OPTIONS": {"fallback": "platform"}},
            "platform": {"BACKEND": LOCMEM},
        }
    else:
        settings.EMAIL_BACKEND = OWN
        settings.WAGTAIL_OWN_SMTP_FALLBACK_BACKEND = LOCMEM
    with databases(with_wal(settings.DATABASES)):
        yield settings


def test_good_configuration_is_quiet(good):
    assert messages(deploy=True) == []


# -- W001 / E001: keys ---------------------------------------------------------------------


def test_w001_keys_derived_from_secret_key(good):
    good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = None

    [warning] = messages(deploy=True)
    assert warning.id == "wagtail_own_smtp.W001"
    assert "WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS" in warning.hint
    assert "own_smtp_rotate_keys" in warning.hint
    # A deployment check: `manage.py check` without --deploy stays quiet.
    assert messages() == []


def test_e001_malformed_key(good):
    secret_but_broken = "c2VjcmV0LWJ1dC1icm9rZW4ta2V5"
    good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), secret_but_broken]

    [error] = messages()
    assert error.id == "wagtail_own_smtp.E001"
    assert error.level == checks.ERROR
    assert "number 2" in error.msg
    assert secret_but_broken not in error.msg + error.hint  # a key is a secret


def test_e001_a_single_string_instead_of_a_list(good):
    good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = Fernet.generate_key().decode()

    assert [m.id for m in messages()] == ["wagtail_own_smtp.E001"]


# -- E002: stored passwords (a database check) -----------------------------------------------


@pytest.fixture
def stored_password(db, good):
    setting = SmtpSettings(site=Site.objects.get(is_default_site=True), host="smtp.example.org")
    setting.set_password("a-password")
    setting.save()
    return setting


def test_e002_password_no_key_decrypts(good, stored_password):
    assert ids(databases=["default"]) == set()

    good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    [error] = messages(databases=["default"])
    assert error.id == "wagtail_own_smtp.E002"
    assert error.obj == stored_password
    assert "WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS" in error.hint
    # Only when databases are checked (migrate, check --database), not on every `check`.
    assert messages() == []
    assert "wagtail_own_smtp.E002" not in {m.id for m in checks.run_checks()}


def test_e002_also_covers_the_verified_password(good, stored_password):
    current_key, older_key = good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS[0], Fernet.generate_key()
    good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [older_key]
    stored_password.verified_password_ciphertext = crypto.encrypt("the-confirmed-password")
    stored_password.save()

    good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [current_key]
    assert ids(databases=["default"]) == {"wagtail_own_smtp.E002"}

    good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [current_key, older_key]
    assert ids(databases=["default"]) == set()


def test_e002_hints_at_rotation_after_switching_from_secret_key(good, stored_password):
    good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = None
    stored_password.set_password("a-password")
    stored_password.save()
    good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    [error] = messages(databases=["default"])
    assert error.id == "wagtail_own_smtp.E002"
    assert "own_smtp_rotate_keys" in error.hint


def test_e002_does_not_crash_before_the_table_exists(good, stored_password, monkeypatch):
    good.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    monkeypatch.setattr(SmtpSettings._meta, "db_table", "wagtail_own_smtp_not_migrated_yet")

    assert messages(databases=["default"]) == []


# -- E003 / W002: django-q2 -----------------------------------------------------------------


def test_e003_django_q_not_installed(tmp_path):
    # A separate process: swapping INSTALLED_APPS in this one would reload Wagtail's admin.
    (tmp_path / "settings_without_q.py").write_text(
        "from tests.settings import *\n"
        "INSTALLED_APPS = [app for app in INSTALLED_APPS if app != 'django_q']\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "django", "check", "--tag", "wagtail_own_smtp"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "settings_without_q",
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1, result.stderr
    assert "wagtail_own_smtp.E003" in result.stderr
    assert "django_q is not in INSTALLED_APPS" in result.stderr


@pytest.mark.parametrize(
    "cluster",
    [
        {"timeout": 60, "retry": 120},  # shorter than the dispatch budget 50 + 2 x 15 s
        {"timeout": 80, "retry": 120},  # not greater than it
        {"timeout": 90, "retry": 90},  # retry must exceed timeout
        {"timeout": 90},  # django-q2's default retry is 60
        {"retry": 60},  # no timeout: retry must still exceed the run time
        {},
    ],
)
def test_w002_q_cluster_timeout_and_retry(good, cluster):
    good.Q_CLUSTER = {"name": "site", "orm": "default", **cluster}

    [warning] = messages()
    assert warning.id == "wagtail_own_smtp.W002"
    assert "timeout 90, retry 120" in warning.hint


def test_w002_follows_the_dispatch_budget(good):
    good.WAGTAIL_OWN_SMTP_DISPATCH_BUDGET = 200
    assert ids() == {"wagtail_own_smtp.W002"}

    good.Q_CLUSTER = {"name": "site", "orm": "default", "timeout": 240, "retry": 300}
    assert ids() == set()


# -- E010: concurrent connections ----------------------------------------------------------


@pytest.mark.parametrize("value", [0, -3, "16", 2.5, True])
def test_e010_connections_not_a_positive_whole_number(good, value):
    good.WAGTAIL_OWN_SMTP_CONNECTIONS = value

    [error] = messages()
    assert error.id == "wagtail_own_smtp.E010"
    assert repr(value) in error.msg


def test_e010_quiet_for_one_connection(good):
    good.WAGTAIL_OWN_SMTP_CONNECTIONS = 1

    assert messages() == []


# -- W003 / E004 / E006: mail wiring ---------------------------------------------------------


@only_without_mailers
def test_w003_email_backend_not_ours(good):
    good.EMAIL_BACKEND = LOCMEM

    [warning] = messages()
    assert warning.id == "wagtail_own_smtp.W003"
    assert OWN in warning.hint


@only_with_mailers
def test_w003_default_mailer_not_ours(good):
    good.MAILERS = {"default": {"BACKEND": LOCMEM}, "platform": {"BACKEND": LOCMEM}}

    [warning] = messages()
    assert warning.id == "wagtail_own_smtp.W003"
    assert 'MAILERS["default"]' in warning.msg


@only_without_mailers
@pytest.mark.parametrize("backend", [OWN, "tests.test_checks.ProjectBackend"])
def test_e004_fallback_backend_is_ours(good, backend):
    good.WAGTAIL_OWN_SMTP_FALLBACK_BACKEND = backend

    [error] = messages()
    assert error.id == "wagtail_own_smtp.E004"
    assert error.level == checks.ERROR


@only_with_mailers
@pytest.mark.parametrize("backend", [OWN, "tests.test_checks.ProjectBackend"])
def test_e004_fallback_mailer_is_ours(good, backend):
    good.MAILERS = {
        "default": {"BACKEND": OWN, "OPTIONS": {"fallback": "platform"}},
        "platform": {"BACKEND": backend},
    }

    [error] = messages()
    assert error.id == "wagtail_own_smtp.E004"
    assert 'MAILERS["platform"]' in error.msg


@only_with_mailers
def test_e006_fallback_mailer_missing(good):
    good.MAILERS = {"default": {"BACKEND": OWN, "OPTIONS": {"fallback": "platfrom"}}}

    [error] = messages()
    assert error.id == "wagtail_own_smtp.E006"
    assert '"platfrom"' in error.msg


# -- W004 (removed): no middleware is needed -----------------------------------------------


def test_no_middleware_is_needed(good):
    # A page being served sets the site context (a Wagtail hook); the old middleware is a no-op.
    good.MIDDLEWARE = [m for m in good.MIDDLEWARE if "wagtail_own_smtp" not in m]

    assert messages() == []


# -- E005: CA file -------------------------------------------------------------------------


def test_e005_ca_file_missing(good, tmp_path):
    good.WAGTAIL_OWN_SMTP_CA_FILE = str(tmp_path / "no-such-ca.pem")

    [error] = messages()
    assert error.id == "wagtail_own_smtp.E005"
    assert "no-such-ca.pem" in error.msg


def test_e005_ca_file_not_pem(good, tmp_path):
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    good.WAGTAIL_OWN_SMTP_CA_FILE = str(not_pem)

    assert ids() == {"wagtail_own_smtp.E005"}


def test_e005_quiet_for_a_readable_ca_file(good, certificates):
    good.WAGTAIL_OWN_SMTP_CA_FILE = str(certificates["ca"])

    assert ids() == set()


# -- E007: OAuth providers ---------------------------------------------------------------------


def test_e007_unknown_provider(good):
    good.WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS = {"microsfot": {"CLIENT_ID": "x"}}
    assert ids() == {"wagtail_own_smtp.E007"}


def test_e007_unknown_key(good):
    good.WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS = {"google": {"CLIENT_ID": "x", "SECRET": "y"}}
    assert ids() == {"wagtail_own_smtp.E007"}


def test_e007_client_id_without_secret(good):
    good.WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS = {"microsoft": {"CLIENT_ID": "x"}}
    assert ids() == {"wagtail_own_smtp.E007"}


def test_e007_quiet_for_a_complete_provider(good):
    good.WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS = {
        "google": {"CLIENT_ID": "x", "CLIENT_SECRET": "y", "TOKEN_URL": "http://127.0.0.1:1/t"}
    }
    assert ids() == set()


# -- W005: SQLite without WAL ------------------------------------------------------------------

SQLITE = "django.db.backends.sqlite3"


def test_w005_file_based_sqlite_without_wal(good, tmp_path):
    with databases({"default": {"ENGINE": SQLITE, "NAME": tmp_path / "site.sqlite3"}}):
        [warning] = messages()

    assert warning.id == "wagtail_own_smtp.W005"
    assert warning.level == checks.WARNING
    assert "default" in warning.msg
    assert '"OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"}' in warning.hint


def test_w005_names_each_database_without_wal():
    config = {
        "default": {"ENGINE": SQLITE, "NAME": "site.sqlite3", "OPTIONS": {"timeout": 20}},
        "mail": {"ENGINE": SQLITE, "NAME": "mail.sqlite3", "OPTIONS": {"init_command": "X;"}},
        "wal": {
            "ENGINE": SQLITE,
            "NAME": "w.sqlite3",
            "OPTIONS": {"init_command": "pragma synchronous=NORMAL; PRAGMA journal_mode = 'wal'"},
        },
        "deleted": {
            "ENGINE": SQLITE,
            "NAME": "d.sqlite3",
            "OPTIONS": {"init_command": "PRAGMA journal_mode=DELETE; -- not journal_mode=walrus"},
        },
    }
    assert sqlite_without_wal(config) == ["default", "mail", "deleted"]


def test_w005_quiet_with_the_init_command(good, tmp_path):
    sqlite = {"ENGINE": SQLITE, "NAME": str(tmp_path / "site.sqlite3"), "OPTIONS": dict(WAL)}
    with databases({"default": sqlite}):
        assert ids() == set()


def test_w005_quiet_for_postgresql_and_in_memory_sqlite(good):
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "site", "HOST": "127.0.0.1"}
    in_memory = [":memory:", "file:memorydb?mode=memory&cache=shared"]
    config = {"default": postgres} | {
        f"memory{n}": {"ENGINE": SQLITE, "NAME": name} for n, name in enumerate(in_memory)
    }
    with databases(config):
        assert ids() == set()
