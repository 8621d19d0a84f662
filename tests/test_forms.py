"""Every bad input is a form error on the settings screen (status 200), never a 500."""

import pytest

from tests.conftest import SMTP_USER
from tests.helpers_admin import edit_url, form_data, make_site, stored
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
