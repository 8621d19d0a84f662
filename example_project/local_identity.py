"""A stand-in on loopback for Microsoft's identity platform and Google's OAuth endpoints.

The real providers cannot be reached from the tests, so this small HTTP server answers as they do:
the token endpoint (client credentials, authorization code with PKCE, refresh token), the authorize
page with "Accept" and "Cancel", and the errors the providers send (JSON, Microsoft's descriptions
starting with their AADSTS codes). It remembers every access token it issued, so the SMTP server
(``LocalSmtpServer(xoauth2=provider)``) can check a bearer token as Exchange Online or Gmail would.

Microsoft's shape: ``/<tenant>/oauth2/v2.0/authorize`` and ``/<tenant>/oauth2/v2.0/token``.
Google's shape: ``/google/auth`` and ``/google/token``.
"""

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MICROSOFT_APP_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
MICROSOFT_IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
GOOGLE_SMTP_SCOPE = "https://mail.google.com/"
CODE_LIFETIME = 600  # seconds an authorization code stays redeemable
MULTI_TENANT = {"common", "organizations", "consumers"}


@dataclass
class Client:
    """An app registration: the platform's app (sign-in) or an editor's app (client credentials)."""

    client_id: str
    secret: str
    tenant: str | None = None  # None: multi-tenant (the platform's sign-in app)
    mailboxes: set | None = None  # client credentials: the mailboxes the app may send as; None: any
    secret_expired: bool = False


@dataclass
class AccessToken:
    token: str
    provider: str  # "microsoft" or "google"
    client_id: str
    scope: str
    expires_at: float
    user: str | None = None  # delegated (sign-in) tokens: the account; app tokens: None
    mailboxes: set | None = None  # app tokens: as for Client.mailboxes
    revoked: bool = False

    def valid_for(self, user, now=None, service="smtp"):
        """Whether the SMTP (or IMAP) server accepts this token for a login as ``user``."""
        now = time.time() if now is None else now
        if self.revoked or now >= self.expires_at:
            return False
        scopes = self.scope.split()
        # client credentials: SMTP.SendAsApp (IMAP.AccessAsApp) through the .default scope
        if self.user is None:
            if MICROSOFT_APP_SCOPE not in scopes:
                return False
            return self.mailboxes is None or user.lower() in self.mailboxes
        if self.provider == "google":
            wanted = GOOGLE_SMTP_SCOPE  # covers IMAP as well
        else:
            wanted = MICROSOFT_IMAP_SCOPE if service == "imap" else MICROSOFT_SMTP_SCOPE
        return wanted in scopes and user.lower() == self.user.lower()


@dataclass
class RefreshToken:
    token: str
    provider: str
    client_id: str
    user: str
    scope: str
    issued_at: float = field(default_factory=time.time)
    revoked: bool = False


@dataclass
class AuthorizationCode:
    code: str
    provider: str
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    user: str
    offline: bool  # a refresh token comes with the tokens (offline_access / access_type=offline)
    issued_at: float = field(default_factory=time.time)


class OAuthError(Exception):
    def __init__(self, status, error, description, codes=()):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.codes = list(codes)


def s256(verifier):
    """The PKCE S256 challenge of a code verifier (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class LocalIdentityProvider:
    """Token endpoints and authorize pages on 127.0.0.1; see the module docstring.

    Switches, changed while it runs: ``expire_client_secret(client_id)``,
    ``revoke_refresh_tokens(...)``, ``revoke_access_tokens(...)``, ``outage_status = 503``
    (every token request answered with that status), ``access_token_lifetime`` (seconds),
    ``sign_in_as`` (the account that signs in on the authorize page; default the login hint,
    else ``default_account``).
    """

    def __init__(
        self, access_token_lifetime=3600, default_account="mailer@customer.example", port=0
    ):
        self.access_token_lifetime = access_token_lifetime
        self.default_account = default_account
        self.sign_in_as = None
        self.outage_status = None
        self.retire_rotated_refresh_tokens = False
        self.requested_port = port
        self.clients: dict[str, Client] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.redeemed_codes: set[str] = set()
        self.pending: dict[str, dict] = {}  # authorize requests awaiting Accept / Cancel
        self.token_requests = Counter()  # grant type -> number of token requests (any outcome)
        self.requests: list[tuple] = []  # (method, path, grant type or "", status)
        self._lock = threading.RLock()
        self._httpd = None
        self._thread = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self):
        provider = self

        class Handler(_Handler):
            pass

        Handler.provider = provider
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.requested_port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def microsoft_urls(self):
        """AUTHORIZE_URL and TOKEN_URL in the shape of WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS."""
        return {
            "AUTHORIZE_URL": self.url + "/{tenant}/oauth2/v2.0/authorize",
            "TOKEN_URL": self.url + "/{tenant}/oauth2/v2.0/token",
        }

    def google_urls(self):
        return {"AUTHORIZE_URL": self.url + "/google/auth", "TOKEN_URL": self.url + "/google/token"}

    # -- set-up and switches ---------------------------------------------------------------
    def add_client(self, client_id, secret, tenant=None, mailboxes=None):
        with self._lock:
            self.clients[client_id] = Client(
                client_id,
                secret,
                tenant=tenant,
                mailboxes={m.lower() for m in mailboxes} if mailboxes is not None else None,
            )
        return self.clients[client_id]

    def expire_client_secret(self, client_id):
        with self._lock:
            self.clients[client_id].secret_expired = True

    def revoke_refresh_tokens(self, user=None):
        """Revoke consent: every refresh token (of ``user``) is refused from now on."""
        with self._lock:
            for record in self.refresh_tokens.values():
                if user is None or record.user.lower() == user.lower():
                    record.revoked = True

    def revoke_access_tokens(self, token=None):
        """The SMTP server refuses these tokens although they have not expired."""
        with self._lock:
            for record in self.access_tokens.values():
                if token is None or record.token == token:
                    record.revoked = True

    def expire_access_tokens(self):
        """Every access token issued so far has expired (by this server's clock)."""
        with self._lock:
            for record in self.access_tokens.values():
                record.expires_at = min(record.expires_at, time.time() - 1)

    # -- what the SMTP server and the tests ask --------------------------------------------
    def token_info(self, token):
        with self._lock:
            return self.access_tokens.get(token)

    def bearer_valid(self, user, token, service="smtp"):
        """True when ``token`` is a live access token that may send as (or, ``service="imap"``,
        read the mailbox of) ``user``."""
        record = self.token_info(token)
        return record is not None and record.valid_for(user, service=service)

    def issued_secrets(self):
        """Every access and refresh token issued so far (for scanning logs and the database)."""
        with self._lock:
            return list(self.access_tokens) + list(self.refresh_tokens)

    def latest_refresh_token(self, user=None):
        with self._lock:
            live = [
                r
                for r in self.refresh_tokens.values()
                if not r.revoked and (user is None or r.user.lower() == user.lower())
            ]
            return live[-1].token if live else None

    def count(self, grant_type):
        """How many token requests of this grant arrived (answered or refused)."""
        with self._lock:
            return self.token_requests[grant_type]

    def approve(self, authorize_url, decision="accept"):
        """Open the authorize page and press Accept (or Cancel) as a user would, over HTTP.

        Returns the URL the provider redirects the browser to (redirect_uri with code and state,
        or with error=access_denied); the redirect itself is not followed.
        """
        # Straight to loopback, whatever proxy the environment names.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
        page = opener.open(authorize_url, timeout=5).read().decode()
        request_id = _hidden_value(page, "request")
        query = urllib.parse.urlencode({"request": request_id, "decision": decision})
        try:
            opener.open(f"{self.url}/consent?{query}", timeout=5)
        except urllib.error.HTTPError as response:
            if response.code in (302, 303):
                return response.headers["Location"]
            raise
        raise AssertionError("the consent page did not redirect")

    # -- endpoints -------------------------------------------------------------------------
    def authorize(self, provider, tenant, params):
        """The authorize request: an HTML page, or a redirect with an error, or a 400 page."""
        client = self.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if client is None or not redirect_uri:
            return 400, _page("Sign in", "<p>The application or its reply address is unknown.</p>")
        if provider == "microsoft" and not self._tenant_ok(client, tenant):
            return 400, _page("Sign in", "<p>AADSTS90002: Tenant not found.</p>")

        def refuse(error, description):
            return 302, _redirect(
                redirect_uri,
                {"error": error, "error_description": description, "state": params.get("state")},
            )

        if params.get("response_type") != "code":
            return refuse("unsupported_response_type", "Only response_type=code is supported.")
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return refuse(
                "invalid_request",
                "AADSTS50125: PKCE with code_challenge_method S256 is required."
                if provider == "microsoft"
                else "Missing required parameter: code_challenge",
            )
        scope = params.get("scope", "")
        user = self.sign_in_as or params.get("login_hint") or self.default_account
        request_id = secrets.token_urlsafe(16)
        with self._lock:
            self.pending[request_id] = {
                "provider": provider,
                "client_id": client.client_id,
                "redirect_uri": redirect_uri,
                "state": params.get("state"),
                "challenge": params["code_challenge"],
                "scope": scope,
                "user": user,
                "offline": (
                    "offline_access" in scope.split()
                    if provider == "microsoft"
                    else params.get("access_type") == "offline"
                ),
            }
        name = "Microsoft" if provider == "microsoft" else "Google"
        body = (
            f"<p>Signed in as <strong data-account>{html.escape(user)}</strong>.</p>"
            f"<p>{html.escape(client.client_id)} wants to send mail as you "
            f"(<code>{html.escape(scope)}</code>).</p>"
            '<form method="get" action="/consent">'
            f'<input type="hidden" name="request" value="{request_id}">'
            '<button type="submit" name="decision" value="accept">Accept</button> '
            '<button type="submit" name="decision" value="cancel">Cancel</button>'
            "</form>"
        )
        return 200, _page(f"{name} sign-in (local stand-in)", body)

    def consent(self, params):
        with self._lock:
            pending = self.pending.pop(params.get("request", ""), None)
        if pending is None:
            return 400, _page("Sign in", "<p>This sign-in request is unknown or was used.</p>")
        if params.get("decision") != "accept":
            description = (
                "AADSTS65004: User declined to consent to access the app."
                if pending["provider"] == "microsoft"
                else "The user denied access."
            )
            query = {"error": "access_denied", "error_description": description}
        else:
            code = AuthorizationCode(
                code=secrets.token_urlsafe(32),
                provider=pending["provider"],
                client_id=pending["client_id"],
                redirect_uri=pending["redirect_uri"],
                challenge=pending["challenge"],
                scope=pending["scope"],
                user=pending["user"],
                offline=pending["offline"],
            )
            with self._lock:
                self.codes[code.code] = code
            query = {"code": code.code}
        query["state"] = pending["state"]
        return 302, _redirect(pending["redirect_uri"], query)

    def token(self, provider, tenant, params, authorization):
        grant = params.get("grant_type", "")
        with self._lock:
            self.token_requests[grant] += 1
        if self.outage_status:
            raise OAuthError(
                self.outage_status,
                "temporarily_unavailable",
                "AADSTS90033: A transient error has occurred. Please try again."
                if provider == "microsoft"
                else "The service is currently unavailable.",
                codes=[90033],
            )
        client = self._authenticate_client(provider, tenant, params, authorization)
        if grant == "client_credentials" and provider == "microsoft":
            return self._client_credentials(client, params)
        if grant == "authorization_code":
            return self._authorization_code(provider, client, params)
        if grant == "refresh_token":
            return self._refresh(provider, client, params)
        raise OAuthError(
            400,
            "unsupported_grant_type",
            f"AADSTS70003: The app requested an unsupported grant type '{grant}'."
            if provider == "microsoft"
            else f"Invalid grant_type: {grant}",
            codes=[70003],
        )

    # -- grants ----------------------------------------------------------------------------
    def _tenant_ok(self, client, tenant):
        return client.tenant is None or tenant in (client.tenant, *MULTI_TENANT)

    def _authenticate_client(self, provider, tenant, params, authorization):
        """client_secret_post or client_secret_basic, as both providers accept."""
        client_id, secret = params.get("client_id", ""), params.get("client_secret")
        if authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            basic_id, _colon, basic_secret = decoded.partition(":")
            client_id = urllib.parse.unquote_plus(basic_id)
            secret = urllib.parse.unquote_plus(basic_secret)
        client = self.clients.get(client_id)
        if provider == "google":
            if client is None:
                raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
            if not secrets.compare_digest(secret or "", client.secret):
                raise OAuthError(401, "invalid_client", "Unauthorized")
            return client
        if client is None or not self._tenant_ok(client, tenant):
            raise OAuthError(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{tenant}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in "
                "the tenant. You may have sent your authentication request to the wrong tenant.",
                codes=[700016],
            )
        if secret is None:
            raise OAuthError(
                401,
                "invalid_client",
                "AADSTS7000218: The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.",
                codes=[7000218],
            )
        if client.secret_expired:
            raise OAuthError(
                401,
                "invalid_client",
                f"AADSTS7000222: The provided client secret keys for app '{client_id}' are "
                "expired. Visit the Azure portal to create new keys for your app: "
                "https://aka.ms/NewClientSecret, or consider using certificate credentials for "
                "added security: https://aka.ms/certCreds.",
                codes=[7000222],
            )
        if not secrets.compare_digest(secret, client.secret):
            raise OAuthError(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                "the request is the client secret value, not the client secret ID, for a secret "
                f"added to app '{client_id}'.",
                codes=[7000215],
            )
        return client

    def _client_credentials(self, client, params):
        scope = params.get("scope", "")
        if scope.split() != [MICROSOFT_APP_SCOPE]:
            raise OAuthError(
                400,
                "invalid_scope",
                f"AADSTS1002012: The provided value for scope {scope} is not valid. Client "
                "credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
                codes=[1002012],
            )
        token = self._issue_access_token(
            "microsoft", client.client_id, scope, mailboxes=client.mailboxes
        )
        return {
            "token_type": "Bearer",
            "expires_in": self._lifetime(),
            "ext_expires_in": self._lifetime(),
            "access_token": token.token,
        }

    def _authorization_code(self, provider, client, params):
        microsoft = provider == "microsoft"
        code_value = params.get("code", "")
        with self._lock:
            code = self.codes.pop(code_value, None)
            redeemed = code_value in self.redeemed_codes
            self.redeemed_codes.add(code_value)
        if code is None or code.provider != provider or code.client_id != client.client_id:
            raise OAuthError(
                400,
                "invalid_grant",
                (
                    "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry "
                    "with a new valid code or use an existing refresh token."
                    if redeemed
                    else "AADSTS70000: The provided value for the 'code' parameter is not valid."
                )
                if microsoft
                else "Bad Request",
                codes=[54005 if redeemed else 70000],
            )
        if time.time() - code.issued_at > CODE_LIFETIME:
            raise OAuthError(
                400,
                "invalid_grant",
                "AADSTS70008: The provided authorization code or refresh token has expired due "
                "to inactivity. Send a new interactive authorization request for this user and "
                "resource."
                if microsoft
                else "Bad Request",
                codes=[70008],
            )
        if params.get("redirect_uri") != code.redirect_uri:
            raise OAuthError(
                400,
                "invalid_grant" if microsoft else "redirect_uri_mismatch",
                "AADSTS50011: The redirect URI specified in the request does not match the "
                "redirect URIs configured for the application."
                if microsoft
                else "Bad Request",
                codes=[50011],
            )
        verifier = params.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(s256(verifier), code.challenge):
            raise OAuthError(
                400,
                "invalid_grant",
                "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in "
                "the authorization request."
                if microsoft
                else ("Invalid code verifier." if verifier else "Missing code verifier."),
                codes=[501481],
            )
        return self._delegated_tokens(provider, client, code.user, code.scope, code.offline)

    def _refresh(self, provider, client, params):
        microsoft = provider == "microsoft"
        with self._lock:
            record = self.refresh_tokens.get(params.get("refresh_token", ""))
        if record is None or record.provider != provider or record.client_id != client.client_id:
            raise OAuthError(
                400,
                "invalid_grant",
                "AADSTS9002313: Invalid request. Request is malformed or invalid."
                if microsoft
                else "Bad Request",
                codes=[9002313],
            )
        if record.revoked:
            issued = time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(record.issued_at))
            now = time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime())
            raise OAuthError(
                400,
                "invalid_grant",
                "AADSTS50173: The provided grant has expired due to it being revoked, a fresh "
                "auth token is needed. The user might have changed or reset their password. The "
                f"grant was issued on '{issued}' and the TokensValidFrom date (before which "
                f"tokens are not valid) for this user is '{now}'."
                if microsoft
                else "Token has been expired or revoked.",
                codes=[50173],
            )
        if microsoft:
            # Microsoft rotates: every refresh answers with a new refresh token.
            if self.retire_rotated_refresh_tokens:
                record.revoked = True
            return self._delegated_tokens(provider, client, record.user, record.scope, True)
        # Google keeps the refresh token and sends none back.
        return self._delegated_tokens(provider, client, record.user, record.scope, False)

    def _delegated_tokens(self, provider, client, user, scope, with_refresh_token):
        granted = " ".join(s for s in scope.split() if s != "offline_access")
        access = self._issue_access_token(provider, client.client_id, granted, user=user)
        response = {
            "access_token": access.token,
            "token_type": "Bearer",
            "expires_in": self._lifetime(),
            "scope": granted,
        }
        if provider == "microsoft":
            response["ext_expires_in"] = self._lifetime()
        if with_refresh_token:
            record = RefreshToken(
                token=("1//0" if provider == "google" else "0.AX") + secrets.token_urlsafe(48),
                provider=provider,
                client_id=client.client_id,
                user=user,
                scope=scope,
            )
            with self._lock:
                self.refresh_tokens[record.token] = record
            response["refresh_token"] = record.token
        return response

    def _issue_access_token(self, provider, client_id, scope, user=None, mailboxes=None):
        record = AccessToken(
            token=("ya29." if provider == "google" else "EwB") + secrets.token_urlsafe(32),
            provider=provider,
            client_id=client_id,
            scope=scope,
            expires_at=time.time() + self.access_token_lifetime,
            user=user,
            mailboxes=mailboxes,
        )
        with self._lock:
            self.access_tokens[record.token] = record
        return record

    def _lifetime(self):
        return int(self.access_token_lifetime)


class _Handler(BaseHTTPRequestHandler):
    provider: LocalIdentityProvider
    server_version = "LocalIdentity/1.0"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass  # the query strings carry codes; keep them out of stderr

    def do_GET(self):
        self._route("GET", urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        params = urllib.parse.parse_qs(body)
        params.update(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))
        self._route("POST", params)

    def _route(self, method, multi_params):
        params = {key: values[-1] for key, values in multi_params.items()}
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        provider = self.provider
        grant = params.get("grant_type", "") if parts[-1] == "token" else ""
        if parts == ["google", "auth"]:
            status, payload = provider.authorize("google", "", params)
        elif parts[-3:] == ["oauth2", "v2.0", "authorize"] and len(parts) == 4:
            status, payload = provider.authorize("microsoft", parts[0], params)
        elif parts == ["consent"]:
            status, payload = provider.consent(params)
        elif method == "POST" and (
            parts == ["google", "token"]
            or (parts[-3:] == ["oauth2", "v2.0", "token"] and len(parts) == 4)
        ):
            name = "google" if parts[0] == "google" else "microsoft"
            tenant = "" if name == "google" else parts[0]
            try:
                status, payload = (
                    200,
                    provider.token(name, tenant, params, self.headers.get("Authorization", "")),
                )
            except OAuthError as error:
                status, payload = error.status, _error_body(name, error)
        else:
            status, payload = 404, _page("Not found", "<p>Not found.</p>")
        with provider._lock:
            provider.requests.append((method, "/" + "/".join(parts), grant, status))
        self._respond(status, payload)

    def _respond(self, status, payload):
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if status == 302:
            headers["Location"] = payload
            body = b""
        elif isinstance(payload, dict):
            headers["Content-Type"] = "application/json; charset=utf-8"
            body = json.dumps(payload).encode()
        else:
            headers["Content-Type"] = "text/html; charset=utf-8"
            body = payload.encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _error_body(provider, error):
    body = {"error": error.error, "error_description": error.description}
    if provider == "microsoft":
        body.update(
            error_codes=error.codes,
            timestamp=time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            trace_id=secrets.token_hex(16),
            correlation_id=secrets.token_hex(16),
        )
    return body


def _redirect(uri, query):
    query = {key: value for key, value in query.items() if value is not None}
    separator = "&" if "?" in uri else "?"
    return uri + separator + urllib.parse.urlencode(query)


def _page(title, body):
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _hidden_value(page, name):
    marker = f'name="{name}" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
