"""OAuth 2.0 and SMTP AUTH XOAUTH2 (issue #7), against a real SMTP server and a token endpoint on
loopback standing in for Microsoft's identity platform and Google's OAuth endpoints."""

import base64
import json
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request

from example_project.local_identity import MICROSOFT_APP_SCOPE, s256
from tests.conftest import (
    OAUTH_APP_CLIENT_ID,
    OAUTH_APP_CLIENT_SECRET,
    OAUTH_TENANT,
    PLATFORM_GOOGLE_CLIENT_ID,
    PLATFORM_GOOGLE_CLIENT_SECRET,
    SMTP_USER,
)


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
