"""servers.py: a site's server as the transport gets it, as saved or as confirmed by link."""

import pytest
from django.utils import timezone

from tests.conftest import OAUTH_APP_CLIENT_ID, OAUTH_TENANT, SMTP_PASSWORD, SMTP_USER
from tests.helpers_admin import make_site
from wagtail_own_smtp import servers
from wagtail_own_smtp.choices import AuthMethod, Security
from wagtail_own_smtp.models import VERIFIED_FIELDS, SmtpSettings

pytestmark = pytest.mark.django_db


def saved_server(**fields):
    smtp_settings = SmtpSettings.for_site(make_site())
    values = {
        "host": "smtp.customer.example",
        "port": 587,
        "security": Security.STARTTLS,
        "from_email": SMTP_USER,
        "username": SMTP_USER,
        **fields,
    }
    for name, value in values.items():
        setattr(smtp_settings, name, value)
    smtp_settings.set_password(SMTP_PASSWORD)
    smtp_settings.save()
    return smtp_settings


def confirm(smtp_settings):
    """What a clicked confirmation link writes (verification.confirm), without the link."""
    for name, value in smtp_settings.confirmed_copy().items():
        setattr(smtp_settings, name, value)
    smtp_settings.verified_fingerprint = servers.fingerprint(smtp_settings)
    smtp_settings.verified_at = timezone.now()
    smtp_settings.save()


def test_every_confirmed_field_of_the_model_is_a_copy_of_a_saved_one():
    # A verified_* field added to the model but not to ServerFields would never be confirmed.
    model_fields = {field.name for field in SmtpSettings._meta.fields}
    confirmed = {name for name in model_fields if name.startswith("verified_")}
    assert confirmed - {"verified_fingerprint", "verified_at"} == set(VERIFIED_FIELDS.values())
    assert set(VERIFIED_FIELDS) <= model_fields


def test_a_server_never_confirmed_has_no_verified_params():
    smtp_settings = saved_server()
    assert servers.current_params(smtp_settings).host == "smtp.customer.example"
    assert servers.verified_params(smtp_settings) is None


def test_the_confirmed_server_stays_what_the_dispatcher_gets_while_a_change_waits():
    smtp_settings = saved_server()
    confirm(smtp_settings)
    smtp_settings.host, smtp_settings.port = "smtp.new.example", 465
    smtp_settings.security = Security.SSL
    smtp_settings.set_password("a-new-password")
    smtp_settings.save()
    smtp_settings.refresh_from_db()

    verified = servers.verified_params(smtp_settings)
    assert (verified.host, verified.port, verified.security) == (
        "smtp.customer.example",
        587,
        Security.STARTTLS,
    )
    assert verified.password == SMTP_PASSWORD
    current = servers.current_params(smtp_settings)
    assert (current.host, current.port) == ("smtp.new.example", 465)
    assert current.password == "a-new-password"


def test_a_password_login_without_a_username_logs_in_as_nobody():
    params = servers.current_params(saved_server(username=""))
    assert params.username == ""
    assert params.password == SMTP_PASSWORD
    assert params.token_source is None


def test_an_oauth_login_names_the_mailbox_and_caches_tokens_per_confirmed_login():
    smtp_settings = saved_server(
        username="",
        auth_method=AuthMethod.MICROSOFT_APP,
        oauth_tenant=OAUTH_TENANT,
        oauth_client_id=OAUTH_APP_CLIENT_ID,
    )
    confirm(smtp_settings)
    smtp_settings.oauth_client_id = "another-client-id"  # a change that awaits its link

    current = servers.current_params(smtp_settings)
    verified = servers.verified_params(smtp_settings)

    # XOAUTH2 names the mailbox: the sender address when no username is given.
    assert current.username == verified.username == SMTP_USER
    assert current.password == verified.password == ""
    assert current.token_source.client_id == "another-client-id"
    assert verified.token_source.client_id == OAUTH_APP_CLIENT_ID
    # Tokens are cached per login, so the pending change never uses the confirmed one's token.
    assert current.token_source.fingerprint == servers.fingerprint(smtp_settings)
    assert verified.token_source.fingerprint == smtp_settings.verified_fingerprint
    assert current.token_source.fingerprint != verified.token_source.fingerprint
