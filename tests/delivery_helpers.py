"""Helpers for the delivery tests: a verified site without the admin flow, the real backend wiring,
subprocesses of tests/manage.py on the test database, and what a server received."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import django
import pytest
from django.core.mail import EmailMessage
from django.db import connection
from django.utils import timezone

from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.helpers_admin import make_site
from wagtail_own_smtp import using_site
from wagtail_own_smtp.models import OutboundMessage, SmtpSettings

MANAGE = Path(__file__).with_name("manage.py")
REPO = MANAGE.parent.parent

__all__ = ["make_site", "real_backend"]


def own_server(site, server, *, verified=True, mode="own", **fields):
    """The site sends through ``server``, as if an editor had saved and confirmed it.

    Fills the editable fields and, when ``verified``, the ``verified_*`` snapshot the dispatcher
    uses (the admin flow is tested elsewhere). ``fields`` override model fields (limits etc.).
    """
    smtp_settings, _created = SmtpSettings.objects.get_or_create(site=site)
    security = getattr(server, "security", "none") if server is not None else "starttls"
    credentials = getattr(server, "credentials", None) if server is not None else True
    smtp_settings.delivery_mode = mode
    smtp_settings.host = "localhost"
    smtp_settings.port = server.port if server is not None else 587
    smtp_settings.security = security
    smtp_settings.from_email = SMTP_USER
    smtp_settings.username = SMTP_USER if credentials else ""
    smtp_settings.set_password(SMTP_PASSWORD if smtp_settings.username else "")
    for name, value in fields.items():
        setattr(smtp_settings, name, value)
    if verified:
        smtp_settings.verification_status = "verified"
        smtp_settings.verified_at = timezone.now()
        smtp_settings.verified_host = smtp_settings.host
        smtp_settings.verified_port = smtp_settings.port
        smtp_settings.verified_security = smtp_settings.security
        smtp_settings.verified_from_email = smtp_settings.from_email
        smtp_settings.verified_username = smtp_settings.username
        smtp_settings.verified_password_ciphertext = smtp_settings.password_ciphertext
    smtp_settings.save()
    return smtp_settings


@pytest.fixture
def real_backend(settings):
    """The wiring the README gives (pytest-django swapped it for locmem); locmem is the platform."""
    if django.VERSION >= (6, 1):
        settings.MAILERS = {
            "default": {
                "BACKEND": "wagtail_own_smtp.backends.EmailBackend",
                "OPTIONS": {"fallback": "platform"},
            },
            "platform": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
        }
    else:
        settings.EMAIL_BACKEND = "wagtail_own_smtp.backends.EmailBackend"
        settings.WAGTAIL_OWN_SMTP_FALLBACK_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return settings


def statuses(**filters):
    """Status -> count of the stored messages."""
    counts = {}
    for status in OutboundMessage.objects.filter(**filters).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def message_ids(received):
    return [item.message["Message-ID"] for item in received]


def delivery_figures(received, expected_ids):
    """(distinct delivered, lost, duplicated) for the Message-IDs the server received."""
    seen = message_ids(received)
    lost = [mid for mid in expected_ids if mid not in seen]
    duplicated = len(seen) - len(set(seen))
    return len(set(seen)), len(lost), duplicated


def subprocess_env(settings, **app_settings):
    """Environment for tests/manage.py: the test database, and app settings as JSON."""
    env = dict(os.environ)
    env["OWN_SMTP_DB_NAME"] = str(connection.settings_dict["NAME"])
    env["OWN_SMTP_TEST_DB_SUFFIX"] = os.environ["OWN_SMTP_TEST_DB_SUFFIX"]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    app_settings.setdefault("CA_FILE", settings.WAGTAIL_OWN_SMTP_CA_FILE)
    for name, value in app_settings.items():
        env[f"OWN_SMTP_SETTING_{name}"] = json.dumps(value)
    return env


def start_manage(args, env, log_path):
    """Start ``tests/manage.py <args>`` in its own process group, output to ``log_path``."""
    log = open(log_path, "wb")  # noqa: SIM115 (closed by stop_process)
    process = subprocess.Popen(
        [sys.executable, str(MANAGE), *args],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.log = log
    process.log_path = log_path
    return process


def stop_process(process, sig=signal.SIGTERM, timeout=15):
    """Stop a process this test started; its children (same process group) go with it."""
    if process.poll() is None:
        # SIGTERM to the parent only (qcluster stops its own workers); SIGKILL to the group.
        if sig == signal.SIGKILL:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the parent is alive: the group is ours
            process.wait(5)
    process.log.close()
    return Path(process.log_path).read_text(errors="replace")


def wait_until(predicate, timeout=15.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def queue_mail(count, prefix="m", to=None, site=None):
    """Queue ``count`` messages as ``site``'s mail (by default the default site's)."""
    with using_site(site or make_site()):
        for i in range(count):
            EmailMessage(
                f"{prefix}{i}",
                f"Body {i}",
                "surveys@platform.example",
                to or [f"{prefix}{i}@ex.org"],
            ).send()


def dispatch_in_short_runs(name, done, sent_by, errors):
    """A worker's loop on a thread of its own until ``done`` is set: short dispatch runs, so the
    sites' leases change hands between the workers many times. Counts its sends in
    ``sent_by[name]`` and its exceptions in ``errors``."""
    from wagtail_own_smtp.dispatch import dispatch

    try:
        while not done.is_set():
            sent_by[name] = sent_by.get(name, 0) + dispatch(budget_seconds=0.3).sent
            time.sleep(0.02)
    except Exception as error:  # the test reports them
        errors.append(error)
    finally:
        connection.close()
