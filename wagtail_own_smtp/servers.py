"""A site's server as the transport needs it: as saved (what a confirmation is sent through) or as
confirmed (what the dispatcher sends through), with the login secret decrypted.

Kept out of the model, so the model imports no transport and no OAuth, and Wagtail's ``settings``
template proxy, which exposes the model, has nothing to call that decrypts a secret.
"""

import hashlib

from . import crypto, oauth, transport
from .choices import AuthMethod


def fingerprint(smtp_settings):
    """A digest of the parameters a confirmation proves (no secret: the password's version)."""
    parts = [
        smtp_settings.host,
        str(smtp_settings.port),
        smtp_settings.security,
        smtp_settings.from_email,
        smtp_settings.username,
        str(smtp_settings.password_version),
    ]
    if smtp_settings.uses_oauth:
        # Only for OAuth, so the fingerprints of password logins stay what they were.
        parts += [
            smtp_settings.auth_method,
            smtp_settings.oauth_tenant,
            smtp_settings.oauth_client_id,
        ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def current_params(smtp_settings):
    """The parameters as last saved (what a confirmation message is sent through)."""
    return _params(smtp_settings, verified=False)


def verified_params(smtp_settings):
    """The confirmed parameters the dispatcher sends through, or None."""
    if not smtp_settings.has_verified_server:
        return None
    return _params(smtp_settings, verified=True)


def _params(smtp_settings, verified):
    server = smtp_settings.server(verified)
    password, token_source = login_secret(smtp_settings, verified)
    # XOAUTH2 names the mailbox; a password login may have no username at all.
    username = server.username or (server.from_email if token_source else "")
    return transport.ServerParams(
        server.host,
        server.port,
        server.security,
        server.from_email,
        username,
        password=password,
        token_source=token_source,
    )


def login_secret(smtp_settings, verified):
    """``(password, token_source)`` of the login as saved or confirmed: the password decrypted
    (raises ``crypto.UndecryptablePassword``), or for OAuth the source of its access tokens,
    asked when a connection opens. The sender's mailbox (IMAP) logs in with the same."""
    server = smtp_settings.server(verified)
    if server.auth_method == AuthMethod.PASSWORD:
        return crypto.decrypt(server.password_ciphertext), None
    login = smtp_settings.verified_fingerprint if verified else fingerprint(smtp_settings)
    return "", oauth.TokenSource(smtp_settings, verified=verified, fingerprint=login)
