"""Helpers for the admin tests: the settings form as an editor posts it, messages, the link."""

import re
from pathlib import Path

from django.contrib.messages import constants
from django.db import connection
from django.urls import reverse

from tests.conftest import SMTP_PASSWORD, SMTP_USER
from wagtail_own_smtp.models import SmtpSettings

LINK = re.compile(r"https?://[^/\s]+/own-smtp/verify/([A-Za-z0-9_-]+)/")


def edit_url(site):
    return reverse("wagtailsettings:edit", args=["wagtail_own_smtp", "smtpsettings", site.pk])


def action_url(name, site):
    return reverse(f"wagtail_own_smtp_admin:{name}", args=[site.pk])


def form_data(server=None, **overrides):
    """What the settings form posts for ``server`` (STARTTLS + AUTH unless overridden)."""
    data = {
        "delivery_mode": "own",
        "host": "localhost",
        "port": server.port if server else 587,
        "security": "starttls",
        "from_email": SMTP_USER,
        "from_name": "Customer Surveys",
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "min_interval": "0",
        "max_per_hour": "",
        "max_per_day": "",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def save_settings(client, site, server=None, **overrides):
    """Post the settings form and follow the redirect back to it."""
    return client.post(edit_url(site), form_data(server, **overrides), follow=True)


def messages_of(response):
    return [(message.level, str(message).strip()) for message in response.context["messages"]]


def errors(response):
    return [text for level, text in messages_of(response) if level == constants.ERROR]


def successes(response):
    return [text for level, text in messages_of(response) if level == constants.SUCCESS]


def warnings(response):
    return [text for level, text in messages_of(response) if level == constants.WARNING]


def link_token(received):
    """The token of the confirmation link in a received message (plain-text part)."""
    body = received.message.get_body(("plain",)).get_content()
    return LINK.search(body).group(1)


def verify_url(token):
    return reverse("wagtail_own_smtp:verify", args=[token])


def stored(site):
    return SmtpSettings.objects.get(site=site)


def make_site(hostname="localhost", port=80, default=True, name="Survey site"):
    """A Wagtail site with its own home page (works with and without Wagtail's initial data)."""
    from django.conf import settings
    from wagtail.models import Locale, Page, Site

    if default and (site := Site.objects.filter(is_default_site=True).first()):
        return site
    Locale.objects.get_or_create(language_code=settings.LANGUAGE_CODE)
    root = Page.get_first_root_node() or Page.add_root(instance=Page(title="Root"))
    home = root.add_child(instance=Page(title=f"Home of {hostname}"))
    return Site.objects.create(
        hostname=hostname, port=port, root_page=home, is_default_site=default, site_name=name
    )


def stored_values():
    """Every value in every table of the test database, as ``(table, value)``; binary values as
    bytes, the others as text (for scanning what the database holds)."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, memoryview | bytes):
                        yield table, bytes(value)
                    else:
                        yield table, str(value)


def sqlite_file_bytes():
    """The raw bytes of the SQLite test database with its WAL and journal files."""
    path = Path(connection.settings_dict["NAME"])
    return b"".join(
        candidate.read_bytes()
        for candidate in [path, Path(f"{path}-wal"), Path(f"{path}-journal")]
        if candidate.exists()
    )
