"""The settings screen, its status panel and buttons, and who may use them."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import SMTP_USER
from tests.helpers_admin import (
    action_url,
    edit_url,
    errors,
    form_data,
    link_token,
    make_site,
    save_settings,
    stored,
    successes,
    verify_url,
)
from tests.helpers_outbox import denied, editor_client
from wagtail_own_smtp.models import SendRecord, SmtpSettings

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    return make_site()


@pytest.fixture
def second_site():
    return make_site("second.example", default=False, name="Second site")


@pytest.fixture
def outsider(django_user_model):
    """May use the admin, but not this setting."""
    return editor_client(django_user_model, "outsider")


@pytest.fixture
def site_editor(django_user_model, site):
    """May change the setting of the default site only."""
    return editor_client(django_user_model, "site-editor", [site])


def saved_server(site, server):
    """Settings saved for ``server`` without the admin (no confirmation sent)."""
    SmtpSettings.for_site(site)
    SmtpSettings.objects.filter(site=site).update(
        host="localhost", port=server.port, from_email=SMTP_USER
    )


def test_the_settings_screen_looks_like_the_help_page(admin_client, site):
    response = admin_client.get(edit_url(site))

    assert response.status_code == 200
    html = response.text
    for heading in ["Own SMTP server", "Verification", "Server parameters"]:
        assert f"<span data-panel-heading-text>{heading}</span>" in html
    assert "Minimum interval / limits" in html
    assert 'type="radio" name="delivery_mode" value="own"' in html
    assert "Send exclusively via own mail server" in html
    assert 'type="password" name="password"' in html
    assert 'autocomplete="new-password"' in html
    assert 'name="remove_password"' in html
    assert 'data-own-smtp-status="unverified"' in html
    # No host yet: nothing to test or re-send.
    assert action_url("test_connection", site) not in html


def test_the_status_panel_offers_its_buttons_once_a_server_is_saved(
    admin_client, site, starttls_server
):
    response = save_settings(admin_client, site, starttls_server)

    assert f'formaction="{action_url("resend", site)}"' in response.text
    assert f'formaction="{action_url("test_connection", site)}"' in response.text
    assert "A password is stored." in response.text


def test_the_connection_test_sends_nothing(admin_client, site, starttls_server):
    save_settings(admin_client, site, starttls_server)
    starttls_server.wait_for(1)
    starttls_server.received.clear()
    records = SendRecord.objects.count()
    state = stored(site).verification_status

    response = admin_client.post(action_url("test_connection", site), follow=True)

    assert response.redirect_chain[-1][0] == edit_url(site)
    [text] = successes(response)
    assert f"The connection to localhost:{starttls_server.port} works" in text
    assert errors(response) == []
    assert starttls_server.received == []
    assert starttls_server.auth_attempts == 2  # the confirmation's login, and the test's
    assert SendRecord.objects.count() == records
    assert stored(site).verification_status == state


def test_a_failed_connection_test_shows_the_servers_reply(admin_client, site, starttls_server):
    save_settings(admin_client, site, starttls_server, password="wrong-password")

    response = admin_client.post(action_url("test_connection", site), follow=True)

    [text] = errors(response)
    assert text.startswith("The connection test failed.")
    assert "535 5.7.8 Authentication credentials invalid" in text
    assert successes(response) == []
    assert starttls_server.received == []


def test_a_connection_test_against_a_server_that_hangs_up(admin_client, site, dropping_server):
    save_settings(admin_client, site, port=dropping_server.port)

    response = admin_client.post(action_url("test_connection", site), follow=True)

    assert response.status_code == 200
    assert any(text.startswith("The connection test failed.") for text in errors(response))


def test_the_actions_take_only_post(admin_client, site, starttls_server):
    save_settings(admin_client, site, starttls_server)
    starttls_server.wait_for(1)

    assert admin_client.get(action_url("resend", site)).status_code == 405
    assert admin_client.get(action_url("test_connection", site)).status_code == 405
    assert len(starttls_server.received) == 1


def test_the_actions_need_the_csrf_token(django_user_model, site, starttls_server, admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    saved_server(site, starttls_server)

    assert client.post(action_url("resend", site)).status_code == 403
    assert client.post(action_url("test_connection", site)).status_code == 403
    assert starttls_server.auth_attempts == 0
    assert starttls_server.received == []


def test_anonymous_visitors_are_sent_to_the_login(client, site, starttls_server):
    for name in ["resend", "test_connection"]:
        response = client.post(action_url(name, site))
        assert response.status_code == 302
        assert reverse("wagtailadmin_login") in response.url
    assert starttls_server.auth_attempts == 0


def test_without_the_settings_permission_nothing_is_reachable(outsider, site, starttls_server):
    saved_server(site, starttls_server)

    assert denied(outsider.get(edit_url(site)))
    assert denied(outsider.post(edit_url(site), form_data(starttls_server, host="other")))
    assert denied(outsider.post(action_url("resend", site)))
    assert denied(outsider.post(action_url("test_connection", site)))

    assert stored(site).host == "localhost"
    assert starttls_server.auth_attempts == 0
    assert starttls_server.received == []


def test_per_site_permissions_are_honoured(site_editor, client, site, second_site, starttls_server):
    saved_server(second_site, starttls_server)

    # The other site: no screen, no buttons.
    assert denied(site_editor.get(edit_url(second_site)))
    assert denied(site_editor.post(edit_url(second_site), form_data(starttls_server)))
    assert denied(site_editor.post(action_url("resend", second_site)))
    assert denied(site_editor.post(action_url("test_connection", second_site)))
    assert starttls_server.auth_attempts == 0

    # Their own site: the whole flow.
    response = save_settings(site_editor, site, starttls_server)
    assert response.status_code == 200
    assert stored(site).verification_status == "pending"
    token = link_token(starttls_server.wait_for(1)[0])
    response = site_editor.post(action_url("test_connection", site), follow=True)
    assert successes(response)

    # Confirming sends this editor back to their settings screen, green.
    response = site_editor.post(verify_url(token), follow=True)
    assert response.redirect_chain[-1][0] == edit_url(site)
    assert "The new server settings are now active." in successes(response)
    assert stored(second_site).verification_status == "unverified"


def test_an_editor_of_another_site_who_confirms_gets_the_public_page(
    django_user_model, admin_client, site, second_site, starttls_server
):
    other_editor = editor_client(django_user_model, "other-editor", [second_site])
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])

    response = other_editor.post(verify_url(token), follow=True)

    # The public page gets the reader's language along (?language=...).
    assert response.redirect_chain[-1][0].startswith(reverse("wagtail_own_smtp:verified") + "?")
    assert "The new server settings are now active." in successes(response)
    assert stored(site).verification_status == "verified"


def test_the_public_confirmation_needs_the_csrf_token(admin_client, site, starttls_server):
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])
    browser = Client(enforce_csrf_checks=True)

    page = browser.get(verify_url(token))
    assert 'name="csrfmiddlewaretoken"' in page.text
    assert browser.post(verify_url(token)).status_code == 403
    assert stored(site).verification_status == "pending"

    csrf = browser.cookies["csrftoken"].value
    response = browser.post(verify_url(token), {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 302
    assert stored(site).verification_status == "verified"


def test_the_confirmation_page_is_not_cached_and_leaks_no_referrer(
    admin_client, site, starttls_server
):
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])

    page = admin_client.get(verify_url(token))

    assert "no-cache" in page["Cache-Control"] or "no-store" in page["Cache-Control"]
    # The origin only (a real browser's CSRF Origin check needs it), never the token's path.
    assert '<meta name="referrer" content="strict-origin">' in page.text
