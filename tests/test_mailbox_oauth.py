"""The sender mailbox read with the SMTP sign-in (AUTHENTICATE XOAUTH2): the token the identity
provider stand-in issues, checked by the loopback IMAP server for the IMAP scope."""

import pytest

from tests.conftest import OAUTH_APP_CLIENT_SECRET, SMTP_USER
from tests.delivery_helpers import real_backend
from tests.helpers_admin import errors, stored
from tests.hostile_imap import HostileImap
from tests.test_oauth import connect_account, oauth_settings, save_and_confirm, site
from tests.test_oauth_admin import sign_in_settings
from wagtail_own_smtp import bounces
from wagtail_own_smtp.mailbox import MailboxFailure
from wagtail_own_smtp.models import AuthMethod

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("real_backend")]
__all__ = ["real_backend", "site"]


def imap_server(certificates, identity_provider):
    """Takes a live token of the account with the IMAP scope, nothing else."""
    return HostileImap(
        certificates,
        accepts_bearer=lambda user, token: identity_provider.bearer_valid(user, token, "imap"),
    )


def confirmed(client, site, identity_provider, smtp_server, imap, method):
    """A site whose confirmed login is ``method``, reading bounces from ``imap``."""
    secret = (
        OAUTH_APP_CLIENT_SECRET
        if method == AuthMethod.MICROSOFT_APP
        else connect_account(identity_provider, method)
    )
    smtp_settings = oauth_settings(
        site,
        smtp_server,
        method,
        secret,
        bounce_processing=True,
        imap_host="localhost",
        imap_port=imap.port,
        imap_security="ssl",
    )
    save_and_confirm(client, smtp_settings, smtp_server)
    return smtp_settings


@pytest.mark.parametrize(
    "method", [AuthMethod.MICROSOFT_APP, AuthMethod.MICROSOFT, AuthMethod.GOOGLE]
)
def test_the_mailbox_is_read_with_the_token_of_the_smtp_login(
    client, site, certificates, identity_provider, xoauth2_server, method
):
    with imap_server(certificates, identity_provider) as imap:
        smtp_settings = confirmed(client, site, identity_provider, xoauth2_server, imap, method)
        assert list(bounces.readable_settings()) == [smtp_settings]
        reading = bounces.read_mailbox(smtp_settings)

    assert reading.failure == ""
    [(user, token, accepted)] = imap.xoauth2_logins
    assert (user, accepted) == (SMTP_USER, True)
    assert token in identity_provider.issued_secrets()
    # The token the confirmation used, from the cache: no second request to the provider.
    assert (
        identity_provider.count("client_credentials") + identity_provider.count("refresh_token")
        == 1
    )


def test_a_stale_cached_token_is_renewed_once(
    client, site, certificates, identity_provider, xoauth2_server
):
    with imap_server(certificates, identity_provider) as imap:
        smtp_settings = confirmed(
            client, site, identity_provider, xoauth2_server, imap, AuthMethod.MICROSOFT_APP
        )
        identity_provider.revoke_access_tokens()  # not expired by our clock, refused by the server
        reading = bounces.read_mailbox(smtp_settings)

    assert reading.failure == ""
    [(_user, stale, refused), (_same, fresh, accepted)] = imap.xoauth2_logins
    assert (refused, accepted) == (False, True) and stale != fresh
    assert identity_provider.count("client_credentials") == 2


def test_a_refused_token_fails_the_reading_without_showing_any_token(
    client, site, certificates, identity_provider, xoauth2_server
):
    # A tenant that did not grant the app IMAP.AccessAsApp: the server refuses every token,
    # and this one quotes it back in its refusal.
    with HostileImap(
        certificates, accepts_bearer=lambda user, token: False, echo_refused_token=True
    ) as imap:
        smtp_settings = confirmed(
            client, site, identity_provider, xoauth2_server, imap, AuthMethod.MICROSOFT_APP
        )
        with pytest.raises(MailboxFailure) as refused:
            bounces.test_mailbox(smtp_settings)
        reading = bounces.read_mailbox(smtp_settings)

    assert len(imap.xoauth2_logins) == 4  # each time the cached token, then one fresh one
    assert "Invalid credentials" in reading.failure
    for token in identity_provider.issued_secrets():
        assert token not in str(refused.value) + refused.value.text + reading.failure


def test_the_settings_form_and_the_mailbox_button_accept_a_sign_in_login(
    admin_client, site, certificates, identity_provider, xoauth2_server
):
    with imap_server(certificates, identity_provider) as imap:
        sign_in_settings(
            admin_client,
            site,
            xoauth2_server,
            bounce_processing="on",
            imap_host="localhost",
            imap_port=imap.port,
            imap_security="ssl",
            imap_folder="INBOX",
        )
        smtp_settings = stored(site)
        assert smtp_settings.bounce_processing
        smtp_settings.set_password(connect_account(identity_provider, "microsoft"))
        smtp_settings.save()
        response = admin_client.post(f"/admin/own-smtp/{site.pk}/test-mailbox/", follow=True)

    assert errors(response) == []
    assert "INBOX on localhost holds 0 messages" in response.content.decode()
    assert [accepted for _user, _token, accepted in imap.xoauth2_logins] == [True]


def test_a_server_without_xoauth2_is_named_and_never_gets_a_password_attempt(
    client, site, certificates, identity_provider, xoauth2_server
):
    with HostileImap(certificates) as imap:  # AUTH=PLAIN only
        smtp_settings = confirmed(
            client, site, identity_provider, xoauth2_server, imap, AuthMethod.MICROSOFT_APP
        )
        reading = bounces.read_mailbox(smtp_settings)

    assert reading.failure == "The mailbox server does not offer OAuth login (XOAUTH2)."
    assert not any(
        command.upper().startswith(("AUTHENTICATE", "LOGIN")) for command in imap.commands
    )
