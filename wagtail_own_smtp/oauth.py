"""OAuth 2.0 for SMTP (AUTH XOAUTH2): the providers, the token grants, the access-token cache.

Microsoft 365 by app registration uses the client-credentials grant with the editor's tenant,
client ID and client secret. Signing in (Microsoft 365 or Google) uses the authorization-code
grant with PKCE in the editor's browser, with the platform's app (``CLIENT_ID``/``CLIENT_SECRET``
in ``WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS``); its refresh token is the stored secret. Authlib speaks
the protocol; this module decides what to ask for and keeps tokens encrypted.
"""

import re
from datetime import timedelta

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import conf, crypto, transport
from .choices import AuthMethod
from .models import SECRET_FIELDS, VERIFIED_FIELDS, AccessToken, SmtpSettings

MICROSOFT = "microsoft"
GOOGLE = "google"

DEFAULT_PROVIDERS = {
    MICROSOFT: {
        "CLIENT_ID": "",
        "CLIENT_SECRET": "",
        "AUTHORIZE_URL": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
        "TOKEN_URL": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        # Work and school accounts of any tenant; an editor's tenant ID narrows it.
        "TENANT": "organizations",
        "SCOPE": (
            "https://outlook.office.com/SMTP.Send https://outlook.office.com/IMAP.AccessAsUser.All "
            "offline_access"
        ),
        "APP_SCOPE": "https://outlook.office365.com/.default",
        "AUTHORIZE_PARAMS": {"prompt": "select_account"},
    },
    GOOGLE: {
        "CLIENT_ID": "",
        "CLIENT_SECRET": "",
        "AUTHORIZE_URL": "https://accounts.google.com/o/oauth2/v2/auth",
        "TOKEN_URL": "https://oauth2.googleapis.com/token",
        "SCOPE": "https://mail.google.com/",
        # Without these Google gives a refresh token only on the very first consent.
        "AUTHORIZE_PARAMS": {"access_type": "offline", "prompt": "consent"},
    },
}

# Product names, not translated.
PROVIDER_NAMES = {MICROSOFT: "Microsoft 365", GOOGLE: "Google"}

# Which provider a login method asks.
PROVIDER_OF = {
    AuthMethod.MICROSOFT_APP: MICROSOFT,
    AuthMethod.MICROSOFT: MICROSOFT,
    AuthMethod.GOOGLE: GOOGLE,
}

# A directory (tenant) ID is a GUID or a domain; nothing else may go into the token URL.
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$")

# A token this close to its expiry is renewed before a connection, not used.
EXPIRY_MARGIN = timedelta(seconds=60)

# Provider errors that mean "try again later", not "the editor must act".
_TRANSIENT_ERRORS = {"temporarily_unavailable", "server_error", "slow_down"}


def provider(name):
    """The provider's settings: the defaults with WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS over them."""
    configured = (conf.get("OAUTH_PROVIDERS") or {}).get(name, {})
    return {**DEFAULT_PROVIDERS[name], **configured}


def is_configured(name):
    """Whether the platform registered an app for signing in with this provider."""
    return bool(provider(name)["CLIENT_ID"])


def _endpoint(config, key, tenant=""):
    tenant = tenant or config.get("TENANT", "")
    if tenant and not TENANT_PATTERN.match(tenant):
        raise transport.SmtpFailure(transport.SERVER, _("The tenant ID is not valid."))
    return config[key].format(tenant=tenant)


def _session(client_id, client_secret, scope, redirect_uri=None):
    return OAuth2Session(
        client_id=client_id,
        client_secret=client_secret,
        scope=scope,
        redirect_uri=redirect_uri,
        token_endpoint_auth_method="client_secret_post",
        code_challenge_method="S256",
    )


# -- signing in (authorization code with PKCE) ---------------------------------------------------


def authorization_url(name, redirect_uri, state, code_verifier, tenant="", login_hint=""):
    """Where the editor's browser signs in; the provider then returns to ``redirect_uri``."""
    config = provider(name)
    session = _session(config["CLIENT_ID"], "", config["SCOPE"], redirect_uri)
    extra = dict(config.get("AUTHORIZE_PARAMS") or {})
    if login_hint:
        extra["login_hint"] = login_hint
    url, _state = session.create_authorization_url(
        _endpoint(config, "AUTHORIZE_URL", tenant),
        state=state,
        code_verifier=code_verifier,
        **extra,
    )
    return url


def exchange_code(name, redirect_uri, code, code_verifier, tenant=""):
    """Trade the code the provider returned for a refresh token (raises SmtpFailure)."""
    config = provider(name)
    session = _session(config["CLIENT_ID"], config["CLIENT_SECRET"], config["SCOPE"], redirect_uri)
    token = _ask(
        session.fetch_token,
        _endpoint(config, "TOKEN_URL", tenant),
        grant_type="authorization_code",
        code=code,
        code_verifier=code_verifier,
    )
    if not token.get("refresh_token"):
        raise transport.SmtpFailure(
            transport.SERVER,
            _("The provider granted no lasting access (no refresh token)."),
            hint=_("Connect the account again and allow offline access when asked."),
        )
    return token["refresh_token"]


# -- access tokens ------------------------------------------------------------------------------


class TokenSource:
    """The access token for one site's OAuth login, as saved (current) or as confirmed.

    Called once per connection, ``source() -> token``: from the encrypted cache while it is
    valid, else from the provider (cached for the next connection and the other workers).
    ``was_cached`` tells the login whether a refusal may just mean a stale token.
    """

    def __init__(self, smtp_settings, verified, fingerprint):
        server = smtp_settings.server(verified)
        self.site_id = smtp_settings.site_id
        self.settings_pk = smtp_settings.pk
        self.method = server.auth_method
        self.tenant = server.oauth_tenant
        self.client_id = server.oauth_client_id
        self.secret_field = (
            VERIFIED_FIELDS["password_ciphertext"] if verified else "password_ciphertext"
        )
        self.secret_ciphertext = server.password_ciphertext
        # The cache's key: servers.fingerprint() of the login the token is for.
        self.fingerprint = fingerprint
        self.was_cached = False

    def __repr__(self):
        return f"<TokenSource site={self.site_id} method={self.method}>"

    def __call__(self, refresh=False):
        if not refresh:
            cached = self._cached()
            if cached:
                self.was_cached = True
                return cached
        self.was_cached = False
        token = self._fetch()
        expires_at = timezone.now() + timedelta(seconds=int(token.get("expires_in") or 3600))
        AccessToken.objects.update_or_create(
            site_id=self.site_id,
            fingerprint=self.fingerprint,
            defaults={
                "token_ciphertext": crypto.encrypt(token["access_token"]),
                "expires_at": expires_at,
            },
        )
        return token["access_token"]

    def _cached(self):
        row = AccessToken.objects.filter(
            site_id=self.site_id,
            fingerprint=self.fingerprint,
            expires_at__gt=timezone.now() + EXPIRY_MARGIN,
        ).first()
        if row is None:
            return ""
        try:
            return crypto.decrypt(row.token_ciphertext)
        except crypto.UndecryptablePassword:
            return ""  # keys rotated away: ask the provider again

    def _secret(self):
        try:
            secret = crypto.decrypt(self.secret_ciphertext)
        except crypto.UndecryptablePassword:
            secret = ""
        if not secret:
            if self.method == AuthMethod.MICROSOFT_APP:
                raise transport.SmtpFailure(
                    transport.SERVER,
                    _("No client secret is stored for the app registration."),
                    hint=_("Enter the client secret again and save."),
                )
            raise transport.SmtpFailure(
                transport.SERVER,
                _("The account is not connected."),
                hint=_("Click “Connect account” in the settings and sign in."),
            )
        return secret

    def _fetch(self):
        config = provider(PROVIDER_OF[self.method])
        secret = self._secret()
        if self.method == AuthMethod.MICROSOFT_APP:
            session = _session(self.client_id, secret, config["APP_SCOPE"])
            return _ask(
                session.fetch_token,
                _endpoint(config, "TOKEN_URL", self.tenant),
                grant_type="client_credentials",
            )
        session = _session(config["CLIENT_ID"], config["CLIENT_SECRET"], config["SCOPE"])
        token = _ask(
            session.refresh_token,
            _endpoint(config, "TOKEN_URL", self.tenant),
            refresh_token=secret,
        )
        rotated = token.get("refresh_token")
        if rotated and rotated != secret:
            self._keep_rotated(rotated)
        return token

    def _keep_rotated(self, refresh_token):
        """The provider replaced the refresh token: store the new one where the old one was.

        Both the saved and the confirmed login may hold the same token; the version stays, so
        the confirmation is not voided. Conditional on the old ciphertext: a concurrent edit wins.
        """
        with transaction.atomic():
            row = (
                SmtpSettings.objects.select_for_update()
                .filter(pk=self.settings_pk)
                .values(*SECRET_FIELDS)
                .first()
            )
            if row is None:
                return
            old = self._secret()
            changes = {}
            for name in SECRET_FIELDS:
                try:
                    same = crypto.decrypt(bytes(row[name] or b"")) == old
                except crypto.UndecryptablePassword:
                    same = False
                if same:
                    changes[name] = crypto.encrypt(refresh_token)
            if changes:
                SmtpSettings.objects.filter(pk=self.settings_pk).update(**changes)
                self.secret_ciphertext = changes.get(self.secret_field, self.secret_ciphertext)


def _ask(call, url, **kwargs):
    """Call the token endpoint; a refusal or an outage becomes an SmtpFailure."""
    try:
        return call(url, timeout=conf.get("TIMEOUT"), **kwargs)
    except OAuthError as error:
        text = f"{error.error}: {error.description}" if error.description else str(error.error)
        kind = transport.TRANSIENT if error.error in _TRANSIENT_ERRORS else transport.SERVER
        raise transport.SmtpFailure(kind, text, hint=_refusal_hint(error.error, text)) from None
    except (requests.RequestException, ValueError) as error:
        # Unreachable, a timeout, a 5xx or a page that is not JSON: the mail waits.
        raise transport.SmtpFailure(
            transport.TRANSIENT,
            _("The sign-in service could not be reached (%(error)s).")
            % {"error": _describe(error)},
        ) from None


def _describe(error):
    response = getattr(error, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    if isinstance(error, requests.Timeout):
        return _("no answer in time")
    if isinstance(error, requests.ConnectionError):
        return _("connection failed")
    return error.__class__.__name__


def _refusal_hint(error, text):
    if "AADSTS7000222" in text or "AADSTS7000215" in text:
        return _(
            "The client secret has expired or is wrong. Create a new client secret in the app "
            "registration (Microsoft Entra admin center), enter it and save."
        )
    if error == "invalid_client":
        return _("The provider does not accept the client ID or client secret.")
    if error == "invalid_grant":
        return _(
            "The sign-in is no longer valid (consent revoked, password changed or expired). "
            "Click “Connect account” and sign in again."
        )
    if "AADSTS700016" in text or "AADSTS90002" in text or "AADSTS900023" in text:
        # Microsoft answers an unknown app or tenant with unauthorized_client, too.
        return _(
            "Microsoft does not know this app in this tenant: check the tenant ID and the "
            "client ID (application ID) of the app registration."
        )
    if error in ("unauthorized_client", "invalid_scope"):
        return _(
            "The app registration is not allowed to send mail: it needs the SMTP permission "
            "with admin consent."
        )
    return ""
