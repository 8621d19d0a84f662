"""The login method in a real browser: only the chosen method's fields show, and the Microsoft 365
and Google presets choose the login too."""

import pytest

from tests.browser.conftest import log_in, make_editor, open_settings, screenshot

pytestmark = pytest.mark.browser

FIELDS = ("username", "password", "remove_password", "oauth_tenant", "oauth_client_id")


def visible(page):
    """The login fields the editor sees (label and input)."""
    shown = set()
    for name in (*FIELDS, "client_secret"):
        if (
            page.locator(f"#id_{name}").is_visible()
            and page.locator(f"label[for=id_{name}]").is_visible()
        ):
            shown.add(name)
    return shown


def test_only_the_chosen_methods_fields_show(page, live_server, site, django_user_model):
    log_in(page, live_server, make_editor(django_user_model, site, "editor"))
    open_settings(page, live_server, site)

    # The stored login ("Password") on opening.
    assert visible(page) == {"username", "password", "remove_password"}

    page.get_by_label("Microsoft 365: app registration (OAuth)").check()
    assert visible(page) == {"username", "oauth_tenant", "oauth_client_id", "client_secret"}
    screenshot(page, "login-app-registration")

    page.get_by_label("Microsoft 365: sign in (OAuth)").check()
    assert visible(page) == {"username", "oauth_tenant"}

    page.get_by_label("Google Workspace / Gmail: sign in (OAuth)").check()
    assert visible(page) == {"username"}

    # A preset chooses the login; going back to "Choose a provider…" restores the editor's.
    page.locator("#id_provider_preset").select_option("microsoft365_app")
    assert page.locator("#id_auth_method_1").is_checked()
    assert page.locator("#id_host").input_value() == "smtp.office365.com"
    assert visible(page) == {"username", "oauth_tenant", "oauth_client_id", "client_secret"}
    page.locator("#id_provider_preset").select_option("ionos")
    assert page.locator("#id_auth_method_0").is_checked()
    assert visible(page) == {"username", "password", "remove_password"}
    page.locator("#id_provider_preset").select_option("")
    assert page.locator("#id_auth_method_3").is_checked()
    assert visible(page) == {"username"}
