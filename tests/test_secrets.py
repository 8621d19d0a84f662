"""The SMTP password never shows: not in HTML, logs, the database, the mail, or templates."""

import base64
import logging

import pytest
from django.db import connection
from django.template import RequestContext, Template
from django.test import RequestFactory

from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.helpers_admin import (
    action_url,
    edit_url,
    link_token,
    make_site,
    save_settings,
    sqlite_file_bytes,
    stored,
    stored_values,
    verify_url,
)
from wagtail_own_smtp import servers

WRONG_PASSWORD = "Wrong-Secret-7"
SECRET_FORMS = [
    SMTP_PASSWORD.encode(),
    WRONG_PASSWORD.encode(),
    base64.b64encode(SMTP_PASSWORD.encode()),
    base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()),  # AUTH PLAIN
]


def assert_no_secret(text, where):
    if isinstance(text, str):
        text = text.encode()
    for secret in SECRET_FORMS:
        assert secret not in text, f"the password shows in {where}"


def walk_the_whole_flow(client, site, server):
    """Every page an editor sees from a wrong password to a verified server; returns the pages."""
    pages = {"empty settings": client.get(edit_url(site))}
    pages["after a failure"] = save_settings(client, site, server, password=WRONG_PASSWORD)
    pages["after saving"] = save_settings(client, site, server)
    token = link_token(server.wait_for(1)[0])
    pages["settings, pending"] = client.get(edit_url(site))
    pages["connection test"] = client.post(action_url("test_connection", site), follow=True)
    pages["confirmation page"] = client.get(verify_url(token))
    pages["confirmed"] = client.post(verify_url(token), follow=True)
    pages["used link"] = client.get(verify_url(token))
    pages["settings, verified"] = client.get(edit_url(site))
    return pages


@pytest.mark.django_db
def test_no_page_shows_the_password(admin_client, starttls_server):
    site = make_site()
    pages = walk_the_whole_flow(admin_client, site, starttls_server)

    assert stored(site).verification_status == "verified"  # the flow really ran
    for where, response in pages.items():
        assert response.status_code in (200, 404), where
        assert_no_secret(response.content, where)
    for cookie in admin_client.cookies.values():
        assert_no_secret(cookie.value, "a cookie")


@pytest.mark.django_db
def test_no_log_record_contains_the_password(admin_client, starttls_server, caplog):
    site = make_site()
    with caplog.at_level(logging.DEBUG):
        walk_the_whole_flow(admin_client, site, starttls_server)
        admin_client.post(edit_url(site), {"port": "0", "password": SMTP_PASSWORD})

    assert caplog.records, "nothing was logged at all: the check would be empty"
    for record in caplog.records:
        if record.name.startswith("mail.log"):
            continue  # the test SMTP server's own log of what it received, not this app's
        assert_no_secret(record.getMessage(), f"the log record {record.name}")
        assert_no_secret(repr(record.args), f"the log arguments of {record.name}")
        if record.exc_info:
            assert_no_secret(logging.Formatter().formatException(record.exc_info), record.name)


@pytest.mark.django_db
def test_no_database_column_holds_the_password(admin_client, starttls_server):
    site = make_site()
    walk_the_whole_flow(admin_client, site, starttls_server)

    seen_ciphertext = False
    for table, value in stored_values():
        if isinstance(value, bytes):
            seen_ciphertext |= value.startswith(b"gAAAAA")  # a Fernet token
        assert_no_secret(value, table)
    assert seen_ciphertext, "the encrypted password was not found: the scan saw nothing"


@pytest.mark.django_db(transaction=True)
def test_the_database_file_does_not_hold_the_password(admin_client, starttls_server, settings):
    if connection.vendor != "sqlite":
        pytest.skip("reads the SQLite file")
    site = make_site()
    walk_the_whole_flow(admin_client, site, starttls_server)

    raw = sqlite_file_bytes()
    assert SMTP_USER.encode() in raw, "the settings are not in the file: the check would be empty"
    assert_no_secret(raw, "the SQLite file")


@pytest.mark.django_db
def test_the_confirmation_message_does_not_carry_the_password(admin_client, starttls_server):
    site = make_site()
    save_settings(admin_client, site, starttls_server)

    received = starttls_server.wait_for(1)[0]
    assert_no_secret(received.data, "the raw confirmation message")
    for part in ("plain", "html"):
        assert_no_secret(received.message.get_body((part,)).get_content(), part)


@pytest.mark.django_db
def test_the_settings_template_proxy_does_not_expose_the_password(admin_client, starttls_server):
    site = make_site()
    walk_the_whole_flow(admin_client, site, starttls_server)
    assert servers.verified_params(stored(site)).password == SMTP_PASSWORD

    request = RequestFactory().get("/", HTTP_HOST=site.hostname)
    prefix = "settings.wagtail_own_smtp.SmtpSettings"
    template = Template(
        f"[{{{{ {prefix}.host }}}}]"
        f"[{{{{ {prefix}.password_ciphertext }}}}]"
        f"[{{{{ {prefix}.verified_password_ciphertext }}}}]"
        f"[{{{{ {prefix}.current_params }}}}]"
        f"[{{{{ {prefix}.current_params.password }}}}]"
        f"[{{{{ {prefix}.verified_params.password }}}}]"
        f"[{{{{ {prefix}.server }}}}][{{{{ {prefix}.confirmed_copy }}}}]"
        f"[{{{{ {prefix}.password }}}}]"
    )

    rendered = template.render(RequestContext(request))

    assert "[localhost]" in rendered  # the proxy works
    assert_no_secret(rendered, "the settings template proxy")
