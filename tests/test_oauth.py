"""OAuth 2.0 and SMTP AUTH XOAUTH2 (issue #7), against a real SMTP server and a token endpoint on
loopback standing in for Microsoft's identity platform and Google's OAuth endpoints."""

import base64
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from email import message_from_bytes, policy

import pytest
from django.core.mail import EmailMessage
from django.db import connection
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from example_project.local_identity import MICROSOFT_APP_SCOPE, s256
from tests.conftest import (
    OAUTH_APP_CLIENT_ID,
    OAUTH_APP_CLIENT_SECRET,
    OAUTH_TENANT,
    PLATFORM_GOOGLE_CLIENT_ID,
    PLATFORM_GOOGLE_CLIENT_SECRET,
    PLATFORM_MICROSOFT_CLIENT_SECRET,
    SMTP_USER,
)
from tests.delivery_helpers import real_backend, statuses
from tests.helpers_admin import (
    link_token,
    make_site,
    sqlite_file_bytes,
    stored,
    stored_values,
    verify_url,
)
from wagtail_own_smtp import crypto, oauth, servers, transport, using_site, verification
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import AccessToken, AuthMethod, OutboundMessage, SmtpSettings

__all__ = ["real_backend"]


def _post_token(url, **params):
    """(status, JSON) of a token request, as any OAuth client sends it."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _smtp_xoauth2(server, certificates, user, token):
    """(code, reply) of AUTH XOAUTH2 at ``server`` after STARTTLS."""
    context = ssl.create_default_context(cafile=str(certificates["ca"]))
    with smtplib.SMTP("localhost", server.port, timeout=5) as connection:
        connection.starttls(context=context)
        connection.ehlo()
        assert "XOAUTH2" in connection.esmtp_features["auth"].split()
        blob = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())
        code, reply = connection.docmd("AUTH", "XOAUTH2 " + blob.decode())
        if code == 334:
            challenge = json.loads(base64.b64decode(reply))
            assert challenge["status"] == "401"
            code, reply = connection.docmd("")
        return code, reply.decode()


# -- the stand-ins themselves -----------------------------------------------------------------
def test_the_smtp_server_takes_live_tokens_of_the_user_only(
    identity_provider, xoauth2_server, certificates
):
    token_url = identity_provider.microsoft_urls()["TOKEN_URL"].format(tenant=OAUTH_TENANT)
    status, body = _post_token(
        token_url,
        grant_type="client_credentials",
        client_id=OAUTH_APP_CLIENT_ID,
        client_secret=OAUTH_APP_CLIENT_SECRET,
        scope=MICROSOFT_APP_SCOPE,
    )
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3600
    token = body["access_token"]

    assert _smtp_xoauth2(xoauth2_server, certificates, SMTP_USER, token)[0] == 235
    assert _smtp_xoauth2(xoauth2_server, certificates, SMTP_USER, "forged")[0] == 535
    identity_provider.expire_access_tokens()
    code, reply = _smtp_xoauth2(xoauth2_server, certificates, SMTP_USER, token)
    assert (code, reply) == (535, "5.7.3 Authentication unsuccessful")
    assert xoauth2_server.xoauth2_logins == [
        (SMTP_USER, True),
        (SMTP_USER, False),
        (SMTP_USER, False),
    ]

    identity_provider.expire_client_secret(OAUTH_APP_CLIENT_ID)
    status, body = _post_token(
        token_url,
        grant_type="client_credentials",
        client_id=OAUTH_APP_CLIENT_ID,
        client_secret=OAUTH_APP_CLIENT_SECRET,
        scope=MICROSOFT_APP_SCOPE,
    )
    assert status == 401 and body["error"] == "invalid_client"
    assert body["error_description"].startswith("AADSTS7000222: ")
    assert identity_provider.count("client_credentials") == 2


def test_the_authorization_code_needs_the_pkce_verifier_and_works_once(identity_provider):
    verifier = "v" * 43 + "-verifier"
    google = identity_provider.google_urls()
    query = urllib.parse.urlencode(
        {
            "client_id": PLATFORM_GOOGLE_CLIENT_ID,
            "redirect_uri": "http://testserver/callback/",
            "response_type": "code",
            "scope": "https://mail.google.com/",
            "state": "st4te",
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "access_type": "offline",
            "login_hint": SMTP_USER,
        }
    )

    def sign_in():
        landing = identity_provider.approve(f"{google['AUTHORIZE_URL']}?{query}")
        assert landing.startswith("http://testserver/callback/?")
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(landing).query))
        assert params["state"] == "st4te"
        return params["code"]

    def redeem(code, code_verifier):
        return _post_token(
            google["TOKEN_URL"],
            grant_type="authorization_code",
            code=code,
            redirect_uri="http://testserver/callback/",
            client_id=PLATFORM_GOOGLE_CLIENT_ID,
            client_secret=PLATFORM_GOOGLE_CLIENT_SECRET,
            code_verifier=code_verifier,
        )

    refused = redeem(sign_in(), "w" * 50)
    assert refused == (
        400,
        {"error": "invalid_grant", "error_description": "Invalid code verifier."},
    )
    code = sign_in()
    status, body = redeem(code, verifier)
    assert status == 200 and body["scope"] == "https://mail.google.com/"
    assert body["refresh_token"] and body["access_token"].startswith("ya29.")
    assert redeem(code, verifier)[0] == 400  # used once

    cancelled = identity_provider.approve(f"{google['AUTHORIZE_URL']}?{query}", decision="cancel")
    assert "error=access_denied" in cancelled and "code=" not in cancelled


# -- the flows --------------------------------------------------------------------------------
VERIFIER = "pkce-verifier-" + "x" * 40
REDIRECT_URI = "http://localhost/admin/own-smtp/oauth/callback/"


@pytest.fixture
def site():
    return make_site()


def oauth_settings(site, server, method, secret, **fields):
    """The site's settings as an editor saves them for an OAuth login (admin form not used)."""
    smtp_settings, _created = SmtpSettings.objects.get_or_create(site=site)
    smtp_settings.delivery_mode = "own"
    smtp_settings.host = "localhost"
    smtp_settings.port = server.port
    smtp_settings.security = "starttls"
    smtp_settings.from_email = SMTP_USER
    smtp_settings.from_name = "Customer Surveys"
    smtp_settings.username = ""
    smtp_settings.auth_method = method
    if method == AuthMethod.MICROSOFT_APP:
        smtp_settings.oauth_tenant = OAUTH_TENANT
        smtp_settings.oauth_client_id = OAUTH_APP_CLIENT_ID
    for name, value in fields.items():
        setattr(smtp_settings, name, value)
    smtp_settings.set_password(secret)
    smtp_settings.save()
    return smtp_settings


def save_and_confirm(client, smtp_settings, server):
    """settings_saved sends the confirmation through ``server``; the link is clicked."""
    already = len(server.received)
    result = verification.settings_saved(smtp_settings)
    assert result is not None and result.failure is None, result and result.failure
    received = server.wait_for(already + 1)[already]
    assert (received.auth_mechanism, received.authenticated_as) == ("XOAUTH2", SMTP_USER)
    assert received.tls and received.rcpt_tos == [SMTP_USER]
    response = client.post(verify_url(link_token(received)))
    assert response.status_code == 302
    smtp_settings.refresh_from_db()
    assert smtp_settings.verification_status == "verified"
    return received


def sign_in(provider, name, login_hint=SMTP_USER, decision="accept"):
    """The editor's browser: the authorize URL, "Accept" on the provider's page, back with a code.

    Returns the query of the URL the provider sends the browser back to.
    """
    url = oauth.authorization_url(
        name, REDIRECT_URI, state="state-1", code_verifier=VERIFIER, login_hint=login_hint
    )
    landing = provider.approve(url, decision=decision)
    assert landing.startswith(REDIRECT_URI + "?")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(landing).query))
    assert query["state"] == "state-1"
    return query


def connect_account(provider, name):
    """Sign in and exchange the code: the refresh token the settings store."""
    return oauth.exchange_code(name, REDIRECT_URI, sign_in(provider, name)["code"], VERIFIER)


def queue(count, prefix="m"):
    """Queue ``count`` messages as the (default) site's mail."""
    with using_site(make_site()):
        for i in range(count):
            EmailMessage(
                f"{prefix}{i}", f"Body {i}", "surveys@platform.example", [f"{prefix}{i}@ex.org"]
            ).send()


def delivered(server):
    """(queued messages delivered, lost, duplicated), counted at the server by Message-ID."""

    def unique_part(message):
        return message["Message-ID"].strip("<>").rpartition("@")[0]

    expected = {
        unique_part(message_from_bytes(bytes(raw), policy=policy.default))
        for raw in OutboundMessage.objects.values_list("raw_message", flat=True)
    }
    seen = [unique_part(r.message) for r in server.received]
    seen = [mid for mid in seen if mid in expected]  # not the confirmations
    return len(set(seen)), len(expected - set(seen)), len(seen) - len(set(seen))


@pytest.mark.django_db
@pytest.mark.usefixtures("real_backend")
def test_microsoft_app_registration_confirms_and_sends_with_one_token(
    client, site, identity_provider, xoauth2_server
):
    smtp_settings = oauth_settings(
        site, xoauth2_server, AuthMethod.MICROSOFT_APP, OAUTH_APP_CLIENT_SECRET
    )

    save_and_confirm(client, smtp_settings, xoauth2_server)
    queue(3)
    report = dispatch(budget_seconds=5)

    assert report.sent == 3 and report.paused_sites == []
    assert delivered(xoauth2_server) == (3, 0, 0)
    assert all(r.auth_mechanism == "XOAUTH2" for r in xoauth2_server.received)
    assert statuses() == {"sent": 3}
    # Two connections (confirmation, dispatch) within the token's lifetime: one token request.
    assert identity_provider.count("client_credentials") == 1
    assert xoauth2_server.xoauth2_logins == [(SMTP_USER, True), (SMTP_USER, True)]
    assert stored(site).verified_auth_method == AuthMethod.MICROSOFT_APP
    assert stored(site).verified_oauth_tenant == OAUTH_TENANT


@pytest.mark.django_db
@pytest.mark.usefixtures("real_backend")
def test_a_token_expiring_mid_queue_is_renewed_and_nothing_is_lost(
    client, site, identity_provider, xoauth2_server
):
    # 63 s: our clock renews a token 60 s before it expires, so this one is good for 3 s.
    identity_provider.access_token_lifetime = 63
    smtp_settings = oauth_settings(
        site, xoauth2_server, AuthMethod.MICROSOFT_APP, OAUTH_APP_CLIENT_SECRET, min_interval=0.5
    )
    save_and_confirm(client, smtp_settings, xoauth2_server)
    queue(6)

    # A part of the queue, two messages a second; the budget leaves room for a loaded machine.
    first = dispatch(budget_seconds=1.5)
    assert 1 <= first.sent < 6
    time.sleep(3.2)
    identity_provider.expire_access_tokens()  # and the provider's clock agrees
    rest = dispatch(until_empty=True)

    assert first.sent + rest.sent == 6 and rest.paused_sites == []
    assert delivered(xoauth2_server) == (6, 0, 0)
    assert statuses() == {"sent": 6}
    assert identity_provider.count("client_credentials") == 2  # renewed once
    assert all(accepted for _user, accepted in xoauth2_server.xoauth2_logins)


@pytest.mark.django_db
@pytest.mark.usefixtures("real_backend")
def test_a_cached_token_the_server_refuses_is_renewed_once(
    client, site, identity_provider, xoauth2_server
):
    smtp_settings = oauth_settings(
        site, xoauth2_server, AuthMethod.MICROSOFT_APP, OAUTH_APP_CLIENT_SECRET
    )
    save_and_confirm(client, smtp_settings, xoauth2_server)
    identity_provider.revoke_access_tokens()  # not expired by our clock, refused by the server
    queue(2)

    report = dispatch(budget_seconds=5)

    assert report.sent == 2 and report.paused_sites == []
    assert delivered(xoauth2_server) == (2, 0, 0)
    assert identity_provider.count("client_credentials") == 2
    assert xoauth2_server.xoauth2_logins == [
        (SMTP_USER, True),  # the confirmation
        (SMTP_USER, False),  # the cached token
        (SMTP_USER, True),  # a fresh one
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("name", [AuthMethod.MICROSOFT, AuthMethod.GOOGLE])
@pytest.mark.usefixtures("real_backend")
def test_sign_in_then_revoked_consent_pauses_and_reconnecting_resumes(
    client, site, identity_provider, xoauth2_server, name
):
    # Tokens live 30 s, within the renewal margin: every connection asks the provider.
    identity_provider.access_token_lifetime = 30
    refresh_token = connect_account(identity_provider, name)
    assert refresh_token == identity_provider.latest_refresh_token(SMTP_USER)
    smtp_settings = oauth_settings(site, xoauth2_server, name, refresh_token)
    save_and_confirm(client, smtp_settings, xoauth2_server)
    assert identity_provider.count("authorization_code") == 1
    assert identity_provider.count("refresh_token") == 1

    queue(2, prefix="a")
    assert dispatch(budget_seconds=5).sent == 2
    assert identity_provider.count("refresh_token") == 2

    # The user revokes the consent (or an admin resets the password).
    identity_provider.revoke_refresh_tokens(SMTP_USER)
    identity_provider.expire_access_tokens()
    queue(3, prefix="b")
    report = dispatch(budget_seconds=5)

    assert report.sent == 0 and report.failed == 0 and report.paused_sites == [site.pk]
    smtp_settings = stored(site)
    assert smtp_settings.sending_paused and smtp_settings.verification_status == "failed"
    expected = (
        "AADSTS50173: " if name == AuthMethod.MICROSOFT else "Token has been expired or revoked."
    )
    assert smtp_settings.last_error.startswith("invalid_grant: ")
    assert expected in smtp_settings.last_error
    assert "Connect account" in smtp_settings.last_error_hint
    assert statuses() == {"sent": 2, "queued": 3}

    # The editor connects the account again and confirms: the waiting mail goes.
    smtp_settings.set_password(connect_account(identity_provider, name))
    smtp_settings.save()
    save_and_confirm(client, smtp_settings, xoauth2_server)
    report = dispatch(budget_seconds=5)

    assert report.sent == 3
    assert statuses() == {"sent": 5}
    assert delivered(xoauth2_server) == (5, 0, 0)
    assert not stored(site).sending_paused


@pytest.mark.django_db
@pytest.mark.usefixtures("real_backend")
def test_microsoft_rotates_the_refresh_token_and_the_new_one_is_kept(
    client, site, identity_provider, xoauth2_server
):
    identity_provider.access_token_lifetime = 30
    identity_provider.retire_rotated_refresh_tokens = True  # strict: an old one no longer works
    smtp_settings = oauth_settings(
        site, xoauth2_server, AuthMethod.MICROSOFT, connect_account(identity_provider, "microsoft")
    )
    save_and_confirm(client, smtp_settings, xoauth2_server)

    for batch in range(3):
        queue(1, prefix=f"r{batch}")
        assert dispatch(budget_seconds=5).sent == 1

    assert identity_provider.count("refresh_token") == 4
    smtp_settings = stored(site)
    assert smtp_settings.verification_status == "verified" and not smtp_settings.sending_paused
    latest = identity_provider.latest_refresh_token(SMTP_USER)
    assert crypto.decrypt(bytes(smtp_settings.verified_password_ciphertext)) == latest


@pytest.mark.django_db
def test_an_expired_client_secret_fails_the_confirmation_with_the_providers_words(
    site, identity_provider, xoauth2_server
):
    identity_provider.expire_client_secret(OAUTH_APP_CLIENT_ID)
    smtp_settings = oauth_settings(
        site, xoauth2_server, AuthMethod.MICROSOFT_APP, OAUTH_APP_CLIENT_SECRET
    )

    result = verification.settings_saved(smtp_settings)

    assert result.failure is not None
    smtp_settings = stored(site)
    assert smtp_settings.verification_status == "failed"
    assert smtp_settings.last_error.startswith("invalid_client: AADSTS7000222: ")
    assert "client secret" in smtp_settings.last_error_hint
    assert xoauth2_server.received == [] and xoauth2_server.xoauth2_logins == []


@pytest.mark.django_db
def test_an_app_unknown_in_the_tenant_says_to_check_tenant_and_client_id(
    site, identity_provider, xoauth2_server
):
    smtp_settings = oauth_settings(
        site,
        xoauth2_server,
        AuthMethod.MICROSOFT_APP,
        OAUTH_APP_CLIENT_SECRET,
        oauth_client_id="00000000-0000-4000-8000-000000000000",  # a typo in the client ID
    )

    verification.settings_saved(smtp_settings)

    smtp_settings = stored(site)
    assert smtp_settings.verification_status == "failed"
    assert smtp_settings.last_error.startswith("unauthorized_client: AADSTS700016: ")
    assert "check the tenant ID and the client ID" in smtp_settings.last_error_hint


@pytest.mark.django_db
@pytest.mark.parametrize("outage", ["503", "closed port"])
@pytest.mark.usefixtures("real_backend")
def test_an_unreachable_token_endpoint_defers_the_mail_and_does_not_pause(
    client, site, identity_provider, xoauth2_server, outage
):
    identity_provider.access_token_lifetime = 30
    smtp_settings = oauth_settings(
        site, xoauth2_server, AuthMethod.MICROSOFT_APP, OAUTH_APP_CLIENT_SECRET
    )
    save_and_confirm(client, smtp_settings, xoauth2_server)
    if outage == "503":
        identity_provider.outage_status = 503
    else:
        identity_provider.stop()
    queue(2)

    report = dispatch(budget_seconds=5)

    assert report.deferred == 2 and report.paused_sites == []
    assert statuses() == {"deferred": 2}
    assert not stored(site).sending_paused
    assert stored(site).verification_status == "verified"
    assert len(xoauth2_server.received) == 1  # the confirmation only
    for message in OutboundMessage.objects.all():
        assert message.last_error


@pytest.mark.django_db
@pytest.mark.usefixtures("real_backend")
def test_an_app_secret_expiring_later_pauses_the_site_and_keeps_the_mail(
    client, site, identity_provider, xoauth2_server
):
    identity_provider.access_token_lifetime = 30
    smtp_settings = oauth_settings(
        site, xoauth2_server, AuthMethod.MICROSOFT_APP, OAUTH_APP_CLIENT_SECRET
    )
    save_and_confirm(client, smtp_settings, xoauth2_server)
    identity_provider.expire_client_secret(OAUTH_APP_CLIENT_ID)
    queue(2)

    report = dispatch(budget_seconds=5)

    assert report.paused_sites == [site.pk] and report.failed == 0 and report.deferred == 0
    assert statuses() == {"queued": 2}
    smtp_settings = stored(site)
    assert smtp_settings.sending_paused and smtp_settings.verification_status == "failed"
    assert "AADSTS7000222: " in smtp_settings.last_error
    assert "client secret" in smtp_settings.last_error_hint


@pytest.mark.django_db
def test_signing_in_with_another_account_than_the_sender_fails_the_confirmation(
    site, identity_provider, xoauth2_server
):
    identity_provider.sign_in_as = "someone.else@customer.example"  # picked another account
    smtp_settings = oauth_settings(
        site, xoauth2_server, AuthMethod.GOOGLE, connect_account(identity_provider, "google")
    )

    result = verification.settings_saved(smtp_settings)

    assert result.failure is not None
    smtp_settings = stored(site)
    assert smtp_settings.verification_status == "failed"
    assert smtp_settings.last_error == "535 5.7.3 Authentication unsuccessful"
    assert SMTP_USER in smtp_settings.last_error_hint
    assert xoauth2_server.received == []
    assert xoauth2_server.xoauth2_logins == [(SMTP_USER, False)]  # a fresh token: no retry


@pytest.mark.django_db
def test_a_server_without_xoauth2_fails_the_confirmation_before_asking_for_a_token(
    site, identity_provider, starttls_server
):
    smtp_settings = oauth_settings(
        site, starttls_server, AuthMethod.MICROSOFT_APP, OAUTH_APP_CLIENT_SECRET
    )

    result = verification.settings_saved(smtp_settings)

    assert result.failure is not None
    assert stored(site).verification_status == "failed"
    assert stored(site).last_error == "The server does not offer OAuth login (AUTH XOAUTH2)."
    assert identity_provider.count("client_credentials") == 0
    assert starttls_server.received == []


@pytest.mark.django_db
@pytest.mark.usefixtures("real_backend")
def test_a_silent_token_endpoint_defers_within_the_timeout(
    client, site, identity_provider, xoauth2_server, silent_server, settings
):
    identity_provider.access_token_lifetime = 30
    smtp_settings = oauth_settings(
        site, xoauth2_server, AuthMethod.MICROSOFT_APP, OAUTH_APP_CLIENT_SECRET
    )
    save_and_confirm(client, smtp_settings, xoauth2_server)
    providers = settings.WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS
    providers["microsoft"]["TOKEN_URL"] = f"http://127.0.0.1:{silent_server.port}/{{tenant}}/t"
    settings.WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS = providers
    queue(2)

    started = time.monotonic()
    report = dispatch(budget_seconds=5)

    assert time.monotonic() - started < settings.WAGTAIL_OWN_SMTP_TIMEOUT + 3
    assert report.deferred == 2 and report.paused_sites == []
    assert not stored(site).sending_paused
    assert "in time" in OutboundMessage.objects.first().last_error


# -- secrets ----------------------------------------------------------------------------------
def walk_every_oauth_flow(client, site, provider, server):
    """App registration, both sign-ins with a rotated refresh token, a revoked consent and an
    expired secret: every place a secret or token passes. Returns the failures raised."""
    provider.access_token_lifetime = 30  # every connection asks for a token
    failures = []
    smtp_settings = oauth_settings(site, server, AuthMethod.MICROSOFT_APP, OAUTH_APP_CLIENT_SECRET)
    save_and_confirm(client, smtp_settings, server)
    queue(1, prefix="app")
    dispatch(budget_seconds=5)
    for name in (AuthMethod.MICROSOFT, AuthMethod.GOOGLE):
        smtp_settings = oauth_settings(site, server, name, connect_account(provider, name))
        save_and_confirm(client, smtp_settings, server)
        queue(1, prefix=name)
        dispatch(budget_seconds=5)
    provider.revoke_refresh_tokens()
    queue(1, prefix="revoked")
    dispatch(budget_seconds=5)
    assert stored(site).sending_paused  # the refusal path ran
    for refresh_token in provider.issued_secrets():  # token endpoint refusals, raised
        try:
            oauth.exchange_code("microsoft", REDIRECT_URI, refresh_token, VERIFIER)
        except transport.SmtpFailure as failure:
            failures.append(failure)
    provider.expire_client_secret(OAUTH_APP_CLIENT_ID)
    smtp_settings = oauth_settings(site, server, AuthMethod.MICROSOFT_APP, OAUTH_APP_CLIENT_SECRET)
    result = verification.settings_saved(smtp_settings)
    failures.append(result.failure)
    assert "AADSTS7000222" in stored(site).last_error
    return failures


def oauth_secrets(provider):
    """Every secret of the flows, as text and in the forms it travels in."""
    plain = [
        OAUTH_APP_CLIENT_SECRET,
        PLATFORM_MICROSOFT_CLIENT_SECRET,
        PLATFORM_GOOGLE_CLIENT_SECRET,
        VERIFIER,
        *provider.issued_secrets(),
    ]
    assert len(plain) > 10, "no tokens were issued: the check would be empty"
    forms = []
    for secret in plain:
        forms += [secret.encode(), urllib.parse.quote(secret, safe="").encode()]
    xoauth2 = [
        f"user={SMTP_USER}\x01auth=Bearer {token}\x01\x01" for token in provider.access_tokens
    ]
    forms += [base64.b64encode(blob.encode()) for blob in xoauth2]
    return forms


def assert_no_oauth_secret(text, secrets, where):
    if isinstance(text, str):
        text = text.encode()
    for secret in secrets:
        assert secret not in text, f"a secret or token shows in {where}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("real_backend")
def test_no_secret_or_token_in_the_database_logs_or_errors(
    client, site, identity_provider, xoauth2_server, caplog
):
    with caplog.at_level(logging.DEBUG):
        for name in ("urllib3", "requests", "authlib", "wagtail_own_smtp", "django_q"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        failures = walk_every_oauth_flow(client, site, identity_provider, xoauth2_server)
    secrets = oauth_secrets(identity_provider)

    # The log: this app's records, Authlib's, requests' and urllib3's (the token requests).
    assert any(r.name.startswith("urllib3") for r in caplog.records), "urllib3 did not log"
    for record in caplog.records:
        assert_no_oauth_secret(record.getMessage(), secrets, f"the log record {record.name}")
        assert_no_oauth_secret(repr(record.args), secrets, f"the log arguments of {record.name}")
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            assert_no_oauth_secret(text, secrets, record.name)

    # The errors raised and shown.
    assert len(failures) > 5
    for failure in failures:
        shown = f"{failure} {failure!r} {failure.hint} {failure.args!r}"
        assert_no_oauth_secret(shown, secrets, "an error")
    smtp_settings = stored(site)
    for params in (servers.current_params(smtp_settings), servers.verified_params(smtp_settings)):
        assert_no_oauth_secret(repr(params), secrets, "the connection parameters")

    # Every table, row by row (PostgreSQL too), and the task queue's payloads.
    seen_ciphertext = False
    for table, value in stored_values():
        if isinstance(value, bytes):
            seen_ciphertext |= value.startswith(b"gAAAAA")  # a Fernet token
        assert_no_oauth_secret(value, secrets, table)
    assert seen_ciphertext, "no encrypted secret was found: the scan saw nothing"
    assert AccessToken.objects.exists(), "no access token is cached: the scan missed it"
    for payload in OrmQ.objects.values_list("payload", flat=True):
        assert_no_oauth_secret(repr(SignedPackage.loads(payload)), secrets, "a task")

    # The raw SQLite file, with its journal.
    if connection.vendor == "sqlite":
        raw = sqlite_file_bytes()
        assert OAUTH_TENANT.encode() in raw, "the settings are not in the file: nothing checked"
        assert_no_oauth_secret(raw, secrets, "the SQLite file")
