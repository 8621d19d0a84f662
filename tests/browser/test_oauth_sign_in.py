"""Signing in with Microsoft 365 or Google in a real browser: choose the login, save, Connect
account, accept on the provider's page (the loopback stand-in), get the red message, confirm by
link through AUTH XOAUTH2, see green; no secret or token on any page."""

import pytest

from tests.browser.conftest import (
    confirmation_link,
    is_green,
    is_red,
    log_in,
    make_editor,
    message,
    open_settings,
    rgb,
    save,
    screenshot,
)
from tests.conftest import (
    PLATFORM_GOOGLE_CLIENT_SECRET,
    PLATFORM_MICROSOFT_CLIENT_SECRET,
    SMTP_USER,
)
from wagtail_own_smtp.models import SmtpSettings

pytestmark = pytest.mark.browser

LOGINS = {
    "microsoft": "Microsoft 365: sign in (OAuth)",
    "google": "Google Workspace / Gmail: sign in (OAuth)",
}


def choose_sign_in(page, server, login):
    page.get_by_label("Send exclusively via own mail server").check()
    page.get_by_label(LOGINS[login]).check()
    page.locator("#id_host").fill("localhost")
    page.locator("#id_port").fill(str(server.port))
    page.locator("#id_security").select_option("starttls")
    page.locator("#id_from_email").fill(SMTP_USER)


def secrets_of(identity_provider):
    return [
        PLATFORM_MICROSOFT_CLIENT_SECRET,
        PLATFORM_GOOGLE_CLIENT_SECRET,
        *identity_provider.issued_secrets(),
    ]


@pytest.mark.parametrize("login", ["microsoft", "google"])
def test_editor_connects_an_account_and_confirms_by_link(
    page, live_server, site, xoauth2_server, identity_provider, django_user_model, login
):
    log_in(page, live_server, make_editor(django_user_model, site, "editor"))
    open_settings(page, live_server, site)
    choose_sign_in(page, xoauth2_server, login)
    save(page)

    # Saved, but nothing can be sent before an account is connected: no confirmation yet.
    assert "No account is connected yet" in page.inner_text("[data-own-smtp-account]")
    assert xoauth2_server.received == []

    with page.expect_navigation():
        page.locator("[data-own-smtp-connect]").click()
    # The provider's sign-in page (the stand-in on loopback), for the sender's mailbox.
    assert page.url.startswith(identity_provider.url)
    assert page.inner_text("[data-account]") == SMTP_USER
    screenshot(page, f"sign-in-{login}")
    with page.expect_navigation():
        page.get_by_role("button", name="Accept").click()

    # Back in the settings: the red message, the confirmation sent through AUTH XOAUTH2.
    assert page.url.startswith(live_server.url)
    red = message(page, "error")
    assert f"A test message with a confirmation link was sent to {SMTP_USER}." in red.inner_text()
    assert is_red(rgb(red))
    assert "An account is connected" in page.inner_text("[data-own-smtp-account]")
    screenshot(page, f"connected-{login}", full_page=True)
    [received] = xoauth2_server.wait_for(1)
    assert received.auth_mechanism == "XOAUTH2" and received.authenticated_as == SMTP_USER
    content = page.content()
    for secret in secrets_of(identity_provider):
        assert secret not in content

    page.goto(confirmation_link(received))
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm").click()
    green = message(page, "success")
    assert green.inner_text().strip() == "The new server settings are now active."
    assert is_green(rgb(green))
    stored = SmtpSettings.objects.get(site=site)
    assert (stored.verification_status, stored.verified_auth_method) == ("verified", login)
    content = page.content()
    for secret in secrets_of(identity_provider):
        assert secret not in content


def test_cancel_on_the_providers_page_stores_nothing_and_says_why(
    page, live_server, site, xoauth2_server, identity_provider, django_user_model
):
    log_in(page, live_server, make_editor(django_user_model, site, "editor"))
    open_settings(page, live_server, site)
    choose_sign_in(page, xoauth2_server, "microsoft")
    save(page)

    with page.expect_navigation():
        page.locator("[data-own-smtp-connect]").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Cancel").click()

    error = message(page, "error")
    assert "AADSTS65004: User declined to consent to access the app." in error.inner_text()
    assert "No account is connected yet" in page.inner_text("[data-own-smtp-account]")
    assert not SmtpSettings.objects.get(site=site).has_password
    assert xoauth2_server.received == []
