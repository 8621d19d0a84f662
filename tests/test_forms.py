"""Every bad input is a form error on the settings screen (status 200), never a 500."""

import pytest

from tests.conftest import (
    OAUTH_APP_CLIENT_ID,
    OAUTH_APP_CLIENT_SECRET,
    OAUTH_TENANT,
    SMTP_PASSWORD,
    SMTP_USER,
)
from tests.helpers_admin import edit_url, form_data, make_site, stored
from wagtail_own_smtp import crypto
from wagtail_own_smtp.forms import normalize_host
from wagtail_own_smtp.models import MAX_PER_DAY, MAX_PER_HOUR

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    return make_site()


def post(client, site, **overrides):
    return client.post(edit_url(site), form_data(**overrides))


def field_errors(response):
    """The form errors of a re-rendered settings screen (a saved form redirects instead)."""
    assert response.status_code == 200, response.status_code
    return {name: list(errors) for name, errors in response.context["form"].errors.items()}


@pytest.mark.parametrize("port", ["0", "65536", "-25", "abc", "5.5", "99999999999999999999"])
def test_ports_out_of_range(admin_client, site, port):
    assert "port" in field_errors(post(admin_client, site, port=port))
    assert stored(site).host == ""


@pytest.mark.parametrize(
    "host",
    [
        "smtp example.org",
        "smtp.example.org\r\nRCPT TO:<x@example.org>",
        "-smtp.example.org",
        "smtp-.example.org",
        "smtp..example.org",
        "smtp_relay.example.org",
        "smtp.example.org/25",
        "1.2.3",
        "[not-an-address]",
        "a" * 64 + ".example.org",
        ".".join(["abcdefghij"] * 30),
        "bad\x00host",
    ],
)
def test_malformed_hosts(admin_client, site, host):
    assert "host" in field_errors(post(admin_client, site, host=host))
    assert stored(site).host == ""


def test_the_host_error_says_what_is_expected(admin_client, site):
    errors = field_errors(post(admin_client, site, host="smtp example.org"))
    assert errors["host"] == ["Enter a host name such as smtp.example.org, or an IP address."]


def test_an_unresolvable_host(admin_client, site):
    errors = field_errors(post(admin_client, site, host="no-such-host.invalid"))
    assert errors["host"] == ["The host name could not be resolved."]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "127.1.2.3"])
def test_private_hosts_are_refused_unless_allowed(admin_client, site, settings, host):
    settings.WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = False
    errors = field_errors(post(admin_client, site, host=host))
    assert "private or reserved address" in errors["host"][0]
    assert stored(site).host == ""


def test_private_hosts_are_accepted_when_allowed(admin_client, site, settings, plain_server):
    settings.WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = True
    response = post(
        admin_client, site, host="127.0.0.1", port=plain_server.port, security="none", username=""
    )
    assert response.status_code == 302
    assert stored(site).host == "127.0.0.1"


def test_an_idn_host_is_stored_as_punycode(admin_client, site, plain_server):
    # Full-width letters are the IDNA mapping of "localhost", which resolves here.
    response = post(
        admin_client,
        site,
        host="ＬＯＣＡＬＨＯＳＴ",
        port=plain_server.port,
        security="none",
        username="",
    )
    assert response.status_code == 302
    assert stored(site).host == "localhost"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("SMTP.Example.ORG.", "smtp.example.org"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("192.0.2.10", "192.0.2.10"),
        ("  smtp.example.org  ", "smtp.example.org"),
    ],
)
def test_host_normalisation(value, expected):
    assert normalize_host(value) == expected


@pytest.mark.parametrize(
    "field, value",
    [
        ("from_name", "Surveys\r\nBcc: victim@example.org"),
        ("from_name", "Surveys\nX-Injected: 1"),
        ("from_email", "mailer@customer.example\r\nBcc: victim@example.org"),
        ("from_email", "mailer@customer.example\nBcc: victim@example.org"),
        ("from_email", "not an address"),
        ("username", "mailer\r\nAUTH LOGIN"),
        ("password", "pass\r\nword"),
    ],
)
def test_header_and_command_injection(admin_client, site, field, value):
    errors = field_errors(post(admin_client, site, **{field: value}))
    assert field in errors
    assert stored(site).from_email == ""


@pytest.mark.parametrize(
    "field, value",
    [
        ("min_interval", "-1"),
        ("min_interval", "86401"),
        ("min_interval", "NaN"),
        ("min_interval", "Infinity"),
        ("min_interval", "1e30"),
        ("max_per_hour", "-5"),
        ("max_per_hour", str(MAX_PER_HOUR + 1)),
        ("max_per_day", str(MAX_PER_DAY + 1)),
        ("max_per_day", "99999999999999999999999"),
    ],
)
def test_absurd_limits(admin_client, site, field, value):
    assert field in field_errors(post(admin_client, site, **{field: value}))


def test_an_hourly_limit_above_the_daily_limit(admin_client, site):
    errors = field_errors(post(admin_client, site, max_per_hour="500", max_per_day="100"))
    assert errors["max_per_hour"] == ["The hourly limit cannot be higher than the daily limit."]


def test_own_mode_needs_host_and_sender(admin_client, site):
    errors = field_errors(post(admin_client, site, host="", from_email=""))
    assert errors["host"] == ["Required to send via your own mail server."]
    assert errors["from_email"] == ["Required to send via your own mail server."]


def test_platform_mode_may_leave_the_server_empty(admin_client, site):
    response = post(
        admin_client, site, delivery_mode="platform", host="", from_email="", username=""
    )
    assert response.status_code == 302
    assert stored(site).delivery_mode == "platform"
    assert stored(site).verification_status == "unverified"


def test_a_new_password_and_remove_together(admin_client, site):
    errors = field_errors(post(admin_client, site, password="new", remove_password="on"))
    assert "remove_password" in errors


def test_a_rejected_form_never_renders_the_password_back(admin_client, site):
    response = post(admin_client, site, port="0", password="typed-Secret-42")
    assert "port" in field_errors(response)
    assert "typed-Secret-42" not in response.text
    assert stored(site).password_ciphertext in (b"", None) or not stored(site).has_password


def test_a_valid_form_saves(admin_client, site, plain_server):
    response = post(
        admin_client,
        site,
        host="localhost",
        port=plain_server.port,
        security="none",
        from_email=SMTP_USER,
        username="",
        min_interval="1.5",
        max_per_hour="100",
        max_per_day="1000",
    )
    assert response.status_code == 302
    saved = stored(site)
    assert (saved.max_per_hour, saved.max_per_day, str(saved.min_interval)) == (
        100,
        1000,
        "1.500",
    )


def test_an_idn_sender_domain_is_stored_as_punycode(admin_client, site, plain_server):
    response = post(
        admin_client,
        site,
        host="localhost",
        port=plain_server.port,
        security="none",
        username="",
        from_email="umfragen@bücher.example",
    )
    assert response.status_code == 302
    assert stored(site).from_email == "umfragen@xn--bcher-kva.example"


# -- the login method (OAuth) -------------------------------------------------------------------


def oauth_post(client, site, method, **overrides):
    return post(client, site, **{"auth_method": method, "password": "", **overrides})


def app_registration(**overrides):
    return {
        "oauth_tenant": OAUTH_TENANT,
        "oauth_client_id": OAUTH_APP_CLIENT_ID,
        "client_secret": OAUTH_APP_CLIENT_SECRET,
        **overrides,
    }


@pytest.mark.parametrize("method", ["microsoft_app", "microsoft", "google"])
def test_oauth_needs_an_encrypted_connection(admin_client, site, identity_provider, method):
    errors = field_errors(
        oauth_post(admin_client, site, method, security="none", **app_registration())
    )
    assert errors["security"] == [
        "OAuth sends an access token when logging in: choose STARTTLS or SSL/TLS, never an "
        "unencrypted connection."
    ]
    assert stored(site).auth_method == "password"


def test_the_app_registration_needs_tenant_client_id_and_secret(admin_client, site):
    errors = field_errors(
        oauth_post(
            admin_client,
            site,
            "microsoft_app",
            **app_registration(oauth_tenant="", oauth_client_id="", client_secret=""),
        )
    )
    assert errors["oauth_tenant"] == ["The app registration needs the directory (tenant) ID."]
    assert errors["oauth_client_id"] == ["The app registration needs its application (client) ID."]
    assert errors["client_secret"] == ["The app registration needs a client secret."]


@pytest.mark.parametrize(
    "tenant",
    ["contoso.onmicrosoft.com/../common", "a b", "-contoso", "tenant?x=1", "x" * 101, "ü.example"],
)
def test_a_tenant_is_a_guid_or_a_domain(admin_client, site, tenant):
    errors = field_errors(
        oauth_post(admin_client, site, "microsoft_app", **app_registration(oauth_tenant=tenant))
    )
    assert "oauth_tenant" in errors
    assert not stored(site).has_password


@pytest.mark.parametrize("method, name", [("microsoft", "Microsoft 365"), ("google", "Google")])
def test_signing_in_needs_the_platforms_app(admin_client, site, settings, method, name):
    settings.WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS = {}
    errors = field_errors(oauth_post(admin_client, site, method))
    [message] = errors["auth_method"]
    assert message.startswith(f"Signing in with {name} is not set up on this platform.")
    assert "WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS" in message


def test_the_client_secret_is_write_only(admin_client, site, identity_provider, xoauth2_server):
    # Rejected: the typed secret does not come back.
    response = oauth_post(admin_client, site, "microsoft_app", port="0", **app_registration())
    assert "port" in field_errors(response)
    assert OAUTH_APP_CLIENT_SECRET not in response.text
    assert not stored(site).has_password

    # Saved: encrypted, not on the page, and the help text says one is stored.
    response = oauth_post(
        admin_client, site, "microsoft_app", port=xoauth2_server.port, **app_registration()
    )
    assert response.status_code == 302
    smtp_settings = stored(site)
    assert crypto.decrypt(smtp_settings.password_ciphertext) == OAUTH_APP_CLIENT_SECRET
    assert OAUTH_APP_CLIENT_SECRET.encode() not in bytes(smtp_settings.password_ciphertext)
    page = admin_client.get(edit_url(site)).text
    assert OAUTH_APP_CLIENT_SECRET not in page
    assert "a client secret is stored. Leave blank to keep it." in page
    assert "A client secret is stored." in page  # the status panel

    # Blank keeps it, and is no change that needs a new confirmation.
    version = smtp_settings.password_version
    response = oauth_post(
        admin_client,
        site,
        "microsoft_app",
        port=xoauth2_server.port,
        **app_registration(client_secret=""),
    )
    assert response.status_code == 302
    assert stored(site).password_version == version
    assert crypto.decrypt(stored(site).password_ciphertext) == OAUTH_APP_CLIENT_SECRET


def test_a_new_login_method_drops_the_stored_secret(
    admin_client, site, identity_provider, xoauth2_server, starttls_server
):
    # A password is stored ...
    assert post(admin_client, site, port=starttls_server.port).status_code == 302
    assert crypto.decrypt(stored(site).password_ciphertext) == SMTP_PASSWORD

    # ... a sign-in method does not take it for a refresh token, nor a password typed anew.
    response = oauth_post(
        admin_client, site, "microsoft", port=xoauth2_server.port, password=SMTP_PASSWORD
    )
    assert response.status_code == 302
    assert not stored(site).has_password

    # The app registration stores its client secret, not the password typed along.
    response = oauth_post(
        admin_client,
        site,
        "microsoft_app",
        port=xoauth2_server.port,
        password="typed-in-the-hidden-field",
        **app_registration(),
    )
    assert response.status_code == 302
    assert crypto.decrypt(stored(site).password_ciphertext) == OAUTH_APP_CLIENT_SECRET

    # Back to the password: the client secret is gone unless a password comes with it.
    response = oauth_post(admin_client, site, "password", port=starttls_server.port)
    assert response.status_code == 302
    assert stored(site).auth_method == "password" and not stored(site).has_password
    response = post(admin_client, site, port=starttls_server.port)
    assert response.status_code == 302
    assert crypto.decrypt(stored(site).password_ciphertext) == SMTP_PASSWORD


def test_a_changed_method_needs_a_new_client_secret(
    admin_client, site, identity_provider, xoauth2_server
):
    # A password is stored, but it is no client secret.
    post(admin_client, site, port=xoauth2_server.port)
    errors = field_errors(
        oauth_post(
            admin_client,
            site,
            "microsoft_app",
            port=xoauth2_server.port,
            **app_registration(client_secret=""),
        )
    )
    assert errors["client_secret"] == ["The app registration needs a client secret."]


def test_fields_the_method_does_not_use_are_not_kept(
    admin_client, site, identity_provider, xoauth2_server
):
    response = oauth_post(
        admin_client,
        site,
        "google",
        port=xoauth2_server.port,
        oauth_tenant="not a tenant",
        oauth_client_id="leftover",
    )
    assert response.status_code == 302
    smtp_settings = stored(site)
    assert (smtp_settings.oauth_tenant, smtp_settings.oauth_client_id) == ("", "")


def test_remove_password_still_works_for_the_password_login(admin_client, site, plain_server):
    post(admin_client, site, port=plain_server.port, security="none")
    assert stored(site).has_password
    response = post(
        admin_client,
        site,
        port=plain_server.port,
        security="none",
        password="",
        remove_password="on",
    )
    assert response.status_code == 302
    assert not stored(site).has_password


def test_every_field_says_which_login_uses_it(admin_client, site):
    form = admin_client.get(edit_url(site)).context["form"]
    assert (
        "OAuth: the mailbox to send from (blank: the sender address)" in form["username"].help_text
    )
    assert form["password"].help_text.startswith("Login “Password”.")
    assert form["client_secret"].help_text.startswith("Microsoft 365 app registration:")
    assert form["oauth_client_id"].help_text.startswith("Microsoft 365 app registration:")
    assert "Required for the app registration" in form["oauth_tenant"].help_text
