"""Signing in with Microsoft 365 or Google from the settings screen ("Connect account"): the admin
views, against the local identity provider and an SMTP server checking AUTH XOAUTH2."""

import urllib.parse
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse
from wagtail.models import GroupSitePermission

from example_project.local_identity import s256
from tests.conftest import PLATFORM_GOOGLE_CLIENT_ID, PLATFORM_MICROSOFT_CLIENT_ID, SMTP_USER
from tests.helpers_admin import (
    action_url,
    edit_url,
    errors,
    link_token,
    make_site,
    save_settings,
    stored,
    successes,
    verify_url,
)
from tests.helpers_outbox import denied, editor_client
from wagtail_own_smtp import crypto

pytestmark = pytest.mark.django_db

CALLBACK = "http://testserver/admin/own-smtp/oauth/callback/"


@pytest.fixture
def site():
    return make_site()


def sign_in_settings(client, site, server, method="microsoft", **overrides):
    """The editor chooses a sign-in login and saves: nothing is sent before the account is
    connected."""
    response = save_settings(client, site, server, auth_method=method, password="", **overrides)
    assert response.status_code == 200 and response.redirect_chain, response.context["form"].errors
    assert errors(response) == []
    smtp_settings = stored(site)
    assert smtp_settings.auth_method == method and not smtp_settings.has_password
    return smtp_settings


def connect(client, site):
    """Click "Connect account": the redirect to the provider's sign-in page."""
    response = client.post(action_url("oauth_connect", site))
    assert response.status_code == 302
    return response.url


def query_of(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def back_from(client, landing):
    """The browser returns from the provider to the callback (an absolute URL) and follows on."""
    parts = urllib.parse.urlsplit(landing)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return client.get(f"{parts.path}?{parts.query}", follow=True)


# -- the status panel -------------------------------------------------------------------------


def test_the_panel_offers_connect_account_for_a_sign_in_login(
    admin_client, site, identity_provider, xoauth2_server
):
    password_page = admin_client.get(edit_url(site)).text
    assert "data-own-smtp-connect" not in password_page

    sign_in_settings(admin_client, site, xoauth2_server)
    page = admin_client.get(edit_url(site)).text

    assert f'formaction="{action_url("oauth_connect", site)}"' in page
    assert "Connect account" in page and "Connect again" not in page
    assert "No account is connected yet." in page
    # Nothing to test or confirm before the account is connected.
    assert action_url("test_connection", site) not in page
    assert xoauth2_server.received == []


# -- "Connect account" ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, client_id, authorize_path",
    [
        ("microsoft", PLATFORM_MICROSOFT_CLIENT_ID, "/organizations/oauth2/v2.0/authorize"),
        ("google", PLATFORM_GOOGLE_CLIENT_ID, "/google/auth"),
    ],
)
def test_connect_sends_the_browser_to_the_provider_with_state_and_pkce(
    admin_client, site, identity_provider, xoauth2_server, method, client_id, authorize_path
):
    sign_in_settings(admin_client, site, xoauth2_server, method=method, username="")

    url = connect(admin_client, site)

    assert url.startswith(identity_provider.url + authorize_path + "?")
    query = query_of(url)
    [(state, started)] = admin_client.session["wagtail_own_smtp_oauth"].items()
    assert query["state"] == state and len(state) >= 40
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == s256(started["verifier"])
    assert len(started["verifier"]) == 48
    assert query["client_id"] == client_id
    assert query["redirect_uri"] == CALLBACK
    assert query["response_type"] == "code"
    # Blank username: the sender address is the mailbox.
    assert query["login_hint"] == SMTP_USER
    assert started["site_pk"] == site.pk and started["provider"] == method
    # The verifier stays on the server: it is in no URL.
    assert started["verifier"] not in url


def test_connect_uses_the_tenant_when_one_is_given(
    admin_client, site, identity_provider, xoauth2_server
):
    sign_in_settings(admin_client, site, xoauth2_server, oauth_tenant="contoso.onmicrosoft.com")

    url = connect(admin_client, site)

    assert url.startswith(identity_provider.url + "/contoso.onmicrosoft.com/oauth2/v2.0/authorize")


def test_a_few_sign_ins_at_most_are_kept(admin_client, site, identity_provider, xoauth2_server):
    sign_in_settings(admin_client, site, xoauth2_server)
    states = [query_of(connect(admin_client, site))["state"] for _ in range(8)]

    kept = admin_client.session["wagtail_own_smtp_oauth"]
    assert set(kept) == set(states[-5:])


def test_connect_needs_a_saved_sign_in_login(
    admin_client, site, identity_provider, starttls_server
):
    save_settings(admin_client, site, starttls_server)

    response = admin_client.post(action_url("oauth_connect", site), follow=True)

    assert response.redirect_chain[-1][0] == edit_url(site)
    assert errors(response) == [
        "Choose a sign-in login (Microsoft 365 or Google) and save it first."
    ]


def test_connect_names_the_setting_when_the_platform_has_no_app(
    admin_client, site, identity_provider, xoauth2_server, settings
):
    sign_in_settings(admin_client, site, xoauth2_server, method="google")
    settings.WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS = {}

    response = admin_client.post(action_url("oauth_connect", site), follow=True)

    [message] = errors(response)
    assert "Signing in with Google is not set up" in message
    assert "WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS" in message


def test_connect_takes_only_post_with_the_csrf_token(
    admin_user, site, identity_provider, xoauth2_server
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    from wagtail_own_smtp.models import SmtpSettings

    SmtpSettings.for_site(site)
    SmtpSettings.objects.filter(site=site).update(auth_method="microsoft")

    assert client.get(action_url("oauth_connect", site)).status_code == 405
    assert client.post(action_url("oauth_connect", site)).status_code == 403
    assert "wagtail_own_smtp_oauth" not in client.session


# -- back from the provider -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["microsoft", "google"])
def test_signing_in_stores_the_refresh_token_and_sends_the_confirmation(
    admin_client, site, identity_provider, xoauth2_server, method
):
    sign_in_settings(admin_client, site, xoauth2_server, method=method)
    landing = identity_provider.approve(connect(admin_client, site))

    response = back_from(admin_client, landing)

    assert response.redirect_chain[-1][0] == edit_url(site)
    assert successes(response) == ["The account is connected."]
    assert errors(response) == [
        f"A test message with a confirmation link was sent to {SMTP_USER}. The new settings "
        "take effect once you click the link in it."
    ]
    smtp_settings = stored(site)
    refresh_token = identity_provider.latest_refresh_token(SMTP_USER)
    assert crypto.decrypt(smtp_settings.password_ciphertext) == refresh_token
    assert smtp_settings.verification_status == "pending"
    # The confirmation went out through XOAUTH2 with a token from that refresh token.
    [received] = xoauth2_server.wait_for(1)
    assert (received.auth_mechanism, received.authenticated_as) == ("XOAUTH2", SMTP_USER)
    assert identity_provider.count("authorization_code") == 1
    # The page says so, offers to connect again, and shows no token.
    page = response.text
    assert f"An account is connected; mail is sent as {SMTP_USER}." in page
    assert "Connect again" in page
    for secret in identity_provider.issued_secrets():
        assert secret not in page
    # The state is used up.
    assert admin_client.session["wagtail_own_smtp_oauth"] == {}


def test_an_answer_with_an_unknown_state_stores_nothing(
    admin_client, site, identity_provider, xoauth2_server
):
    sign_in_settings(admin_client, site, xoauth2_server)
    landing = identity_provider.approve(connect(admin_client, site))
    forged = landing.replace(f"state={query_of(landing)['state']}", "state=forged")

    response = back_from(admin_client, forged)

    [message] = errors(response)
    assert message.startswith("The account could not be connected. This answer")
    assert not stored(site).has_password
    assert identity_provider.count("authorization_code") == 0
    assert xoauth2_server.received == []


def test_an_answer_without_state_or_used_twice_stores_once(
    admin_client, site, identity_provider, xoauth2_server
):
    sign_in_settings(admin_client, site, xoauth2_server)
    landing = identity_provider.approve(connect(admin_client, site))

    assert errors(admin_client.get(reverse("wagtail_own_smtp_admin:oauth_callback"), follow=True))
    back_from(admin_client, landing)
    version = stored(site).password_version
    again = back_from(admin_client, landing)

    assert errors(again)[0].startswith("The account could not be connected. This answer")
    assert stored(site).password_version == version
    assert identity_provider.count("authorization_code") == 1


@pytest.mark.parametrize(
    "method, description",
    [
        ("microsoft", "AADSTS65004: User declined to consent to access the app."),
        ("google", "The user denied access."),
    ],
)
def test_a_refused_sign_in_shows_the_providers_words(
    admin_client, site, identity_provider, xoauth2_server, method, description
):
    sign_in_settings(admin_client, site, xoauth2_server, method=method)
    landing = identity_provider.approve(connect(admin_client, site), decision="cancel")

    response = back_from(admin_client, landing)

    assert response.redirect_chain[-1][0] == edit_url(site)
    assert errors(response) == [
        f"The account could not be connected. The provider answered: access_denied: {description}"
    ]
    assert not stored(site).has_password
    assert identity_provider.count("authorization_code") == 0
    assert xoauth2_server.received == []


def test_a_code_the_provider_refuses_shows_its_words_and_a_hint(
    admin_client, site, identity_provider, xoauth2_server
):
    sign_in_settings(admin_client, site, xoauth2_server)
    landing = identity_provider.approve(connect(admin_client, site))
    code = query_of(landing)["code"]

    response = back_from(admin_client, landing.replace(f"code={code}", "code=not-a-code"))

    # Admin messages are HTML: the provider's quotes arrive escaped and show as typed.
    message = unescape(errors(response)[0])
    assert message.startswith(
        "The account could not be connected. invalid_grant: AADSTS70000: The provided value for "
        "the 'code' parameter is not valid."
    )
    assert "Click “Connect account” and sign in again." in message
    assert not stored(site).has_password


def test_a_login_changed_during_the_sign_in_stores_nothing(
    admin_client, site, identity_provider, xoauth2_server
):
    sign_in_settings(admin_client, site, xoauth2_server, method="microsoft")
    landing = identity_provider.approve(connect(admin_client, site))
    sign_in_settings(admin_client, site, xoauth2_server, method="google")

    response = back_from(admin_client, landing)

    assert errors(response)[0].startswith(
        "The account could not be connected. The login was changed while you signed in"
    )
    assert not stored(site).has_password


# -- who may connect --------------------------------------------------------------------------


def test_without_the_settings_permission_there_is_no_sign_in(
    django_user_model, admin_client, site, identity_provider, xoauth2_server
):
    sign_in_settings(admin_client, site, xoauth2_server)
    other_site = make_site("second.example", default=False, name="Second site")
    outsider = editor_client(django_user_model, "outsider", [other_site])

    assert denied(outsider.post(action_url("oauth_connect", site)))
    assert "wagtail_own_smtp_oauth" not in outsider.session


def test_the_permission_is_checked_again_on_the_way_back(
    django_user_model, admin_client, site, identity_provider, xoauth2_server
):
    sign_in_settings(admin_client, site, xoauth2_server)
    editor = editor_client(django_user_model, "editor", [site])
    landing = identity_provider.approve(connect(editor, site))
    # The permission is withdrawn while the editor signs in.
    GroupSitePermission.objects.filter(group__name="editor group").delete()

    parts = urllib.parse.urlsplit(landing)
    response = editor.get(f"{parts.path}?{parts.query}")

    assert denied(response)
    assert not stored(site).has_password
    assert identity_provider.count("authorization_code") == 0


def test_an_anonymous_visitor_is_sent_to_the_login(client, site, identity_provider):
    response = client.get(reverse("wagtail_own_smtp_admin:oauth_callback") + "?state=x&code=y")

    assert response.status_code == 302
    assert reverse("wagtailadmin_login") in response.url
    assert identity_provider.count("authorization_code") == 0


def test_markup_in_the_providers_answer_shows_as_text(
    admin_client, site, identity_provider, xoauth2_server
):
    sign_in_settings(admin_client, site, xoauth2_server)
    state = query_of(connect(admin_client, site))["state"]
    query = urllib.parse.urlencode(
        {"state": state, "error": "access_denied", "error_description": "<b>no</b>"}
    )

    response = admin_client.get(
        reverse("wagtail_own_smtp_admin:oauth_callback") + "?" + query, follow=True
    )

    assert "access_denied: &lt;b&gt;no&lt;/b&gt;" in response.text
    assert "<b>no</b>" not in response.text


def test_a_revoked_consent_is_mended_by_connecting_again(
    admin_client, site, identity_provider, xoauth2_server
):
    sign_in_settings(admin_client, site, xoauth2_server)
    back_from(admin_client, identity_provider.approve(connect(admin_client, site)))
    [confirmation] = xoauth2_server.wait_for(1)
    admin_client.post(verify_url(link_token(confirmation)))
    assert stored(site).verification_status == "verified"

    # The user revokes the consent: the connection test shows Microsoft's words and the way out.
    identity_provider.revoke_refresh_tokens(SMTP_USER)
    identity_provider.expire_access_tokens()
    response = admin_client.post(action_url("test_connection", site), follow=True)
    [message] = errors(response)
    assert message.startswith("The connection test failed. The server answered: invalid_grant: ")
    assert "AADSTS50173" in message
    assert "Click “Connect account” and sign in again." in message
    assert "Connect again" in response.text

    # Connecting again stores the new refresh token and sends a new confirmation.
    old = stored(site).password_ciphertext
    response = back_from(admin_client, identity_provider.approve(connect(admin_client, site)))
    assert successes(response) == ["The account is connected."]
    assert errors(response)[0].startswith("A test message with a confirmation link was sent")
    assert bytes(stored(site).password_ciphertext) != bytes(old)
    assert stored(site).verification_status == "pending"
    xoauth2_server.wait_for(2)
