"""The settings form's login: which fields each login method uses, the write-only secrets (the
password, the client secret) and what makes an OAuth login valid."""

import hmac
import json
import unicodedata

from django import forms
from django.utils.translation import gettext_lazy as _

from . import crypto
from .choices import AuthMethod, Security
from .oauth import PROVIDER_NAMES, PROVIDER_OF, TENANT_PATTERN, is_configured

# The fields each login method uses. The script (auth-method.js) hides the others; on save, what
# they hold is ignored, so a password never becomes a client secret or a refresh token.
METHOD_FIELDS = {
    AuthMethod.PASSWORD: ("username", "password", "remove_password"),
    AuthMethod.MICROSOFT_APP: ("username", "oauth_tenant", "oauth_client_id", "client_secret"),
    AuthMethod.MICROSOFT: ("username", "oauth_tenant"),
    AuthMethod.GOOGLE: ("username",),
}
# Methods whose secret is typed into the form, and the field it is typed into.
SECRET_FIELD = {AuthMethod.PASSWORD: "password", AuthMethod.MICROSOFT_APP: "client_secret"}
# OAuth sends an access token when logging in: never over an unencrypted connection.
OAUTH_SECURITY = (Security.STARTTLS, Security.SSL)


def has_control_characters(value):
    # CR and LF would inject headers or SMTP commands; NUL breaks AUTH PLAIN.
    return any(unicodedata.category(char) == "Cc" for char in value)


class LoginFieldsMixin:
    """For ``SmtpSettingsForm`` (which declares the write-only ``password``, ``remove_password``
    and ``client_secret``): the login method and its fields; a blank secret keeps the stored one.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The method as stored: the secret stored belongs to it.
        self.stored_auth_method = self.instance.auth_method
        self._explain_login_fields()
        if "auth_method" in self.fields:
            # A post without the field (a page opened before an upgrade) keeps the stored method.
            self.fields["auth_method"].required = False
            self.fields["auth_method"].widget.attrs["data-own-smtp-auth-fields"] = json.dumps(
                METHOD_FIELDS
            )

    def _stored_secret_of(self, method):
        return self.instance.has_password and self.stored_auth_method == method

    def _explain_login_fields(self):
        """Help texts that say which login method uses a field (all show without JavaScript)."""
        texts = {
            "auth_method": _(
                "With OAuth, Microsoft 365 or Google issue the login instead of a password. To "
                "sign in, save first, then click “Connect account” under Verification."
            ),
            "username": _(
                "Password login: often the sender address; leave blank if the server needs no "
                "login. OAuth: the mailbox to send from (blank: the sender address)."
            ),
            "password": (
                _("Login “Password”. A password is stored. Leave blank to keep it.")
                if self._stored_secret_of(AuthMethod.PASSWORD)
                else _("Login “Password”. No password is stored.")
            ),
            "oauth_tenant": _(
                "Microsoft 365: the directory (tenant) ID, such as "
                "3f2c8a91-5b7d-4e0a-9c1f-6d2e8b4a7c05, or the organisation's domain. Required "
                "for the app registration; when signing in, it limits the sign-in to that "
                "organisation."
            ),
            "oauth_client_id": _(
                "Microsoft 365 app registration: the application (client) ID of the app."
            ),
            "client_secret": (
                _(
                    "Microsoft 365 app registration: a client secret is stored. Leave blank to "
                    "keep it."
                )
                if self._stored_secret_of(AuthMethod.MICROSOFT_APP)
                else _(
                    "Microsoft 365 app registration: the value of a client secret of the app "
                    "(not its ID)."
                )
            ),
        }
        for name, text in texts.items():
            if name in self.fields:
                self.fields[name].help_text = text

    def clean_password(self):
        password = self.cleaned_data.get("password", "")
        if password and any(char in password for char in "\0\r\n"):
            raise forms.ValidationError(
                _("The password must not contain line breaks."), code="invalid_password"
            )
        return password

    def clean_auth_method(self):
        return self.cleaned_data.get("auth_method") or self.stored_auth_method

    def clean_client_secret(self):
        secret = self.cleaned_data.get("client_secret", "")
        if secret and has_control_characters(secret):
            raise forms.ValidationError(
                _("The client secret must not contain line breaks."), code="invalid_secret"
            )
        return secret

    def clean_login(self, cleaned):
        """The fields of the chosen method; the others are emptied or ignored."""
        method = cleaned.get("auth_method") or self.stored_auth_method
        self._clean_app_fields(cleaned, method)
        if method != AuthMethod.PASSWORD:
            self._clean_oauth(cleaned, method)
        elif cleaned.get("password") and cleaned.get("remove_password"):
            self.add_error(
                "remove_password",
                forms.ValidationError(
                    _("Either enter a new password or remove the stored one, not both."),
                    code="password_conflict",
                ),
            )

    def _clean_app_fields(self, cleaned, method):
        """The tenant and client ID where the method uses them; emptied where it does not (they
        would only void the confirmation)."""
        for name in ("oauth_tenant", "oauth_client_id"):
            if name in cleaned and name not in METHOD_FIELDS[method]:
                cleaned[name] = ""
        tenant = cleaned.get("oauth_tenant", "").strip()
        if tenant and not TENANT_PATTERN.match(tenant):
            self.add_error(
                "oauth_tenant",
                forms.ValidationError(
                    _(
                        "Enter the directory (tenant) ID, such as "
                        "3f2c8a91-5b7d-4e0a-9c1f-6d2e8b4a7c05, or a domain such as "
                        "contoso.onmicrosoft.com."
                    ),
                    code="invalid_tenant",
                ),
            )
        elif "oauth_tenant" in cleaned:
            cleaned["oauth_tenant"] = tenant
        client_id = cleaned.get("oauth_client_id", "").strip()
        if client_id and (has_control_characters(client_id) or " " in client_id):
            self.add_error(
                "oauth_client_id",
                forms.ValidationError(
                    _("Enter the application (client) ID without spaces or line breaks."),
                    code="invalid_client_id",
                ),
            )
        elif "oauth_client_id" in cleaned:
            cleaned["oauth_client_id"] = client_id

    def _clean_oauth(self, cleaned, method):
        if cleaned.get("security") not in OAUTH_SECURITY and "security" not in self.errors:
            self.add_error(
                "security",
                forms.ValidationError(
                    _(
                        "OAuth sends an access token when logging in: choose STARTTLS or "
                        "SSL/TLS, never an unencrypted connection."
                    ),
                    code="oauth_needs_tls",
                ),
            )
        if method == AuthMethod.MICROSOFT_APP:
            required = {
                "oauth_tenant": _("The app registration needs the directory (tenant) ID."),
                "oauth_client_id": _("The app registration needs its application (client) ID."),
            }
            if not self._stored_secret_of(AuthMethod.MICROSOFT_APP):
                required["client_secret"] = _("The app registration needs a client secret.")
            for name, text in required.items():
                if not cleaned.get(name) and name not in self.errors:
                    self.add_error(name, forms.ValidationError(text, code="required"))
        elif not is_configured(PROVIDER_OF[method]):
            self.add_error(
                "auth_method",
                forms.ValidationError(
                    _(
                        "Signing in with %(provider)s is not set up on this platform. Its "
                        "administrator registers an app and enters it in the setting "
                        "WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS; until then choose another login."
                    ),
                    code="provider_not_configured",
                    params={"provider": PROVIDER_NAMES[PROVIDER_OF[method]]},
                ),
            )

    def store_secret(self, instance):
        """Encrypt the secret typed for the chosen method into ``instance`` (not saved)."""
        method = instance.auth_method
        field = SECRET_FIELD.get(method)
        secret = self.cleaned_data.get(field, "") if field else ""
        if method != self.stored_auth_method:
            # A password is not a client secret, nor a refresh token: a new method starts empty.
            if secret:
                instance.set_password(secret)
            elif instance.has_password:
                instance.set_password("")
        elif method == AuthMethod.PASSWORD and self.cleaned_data.get("remove_password"):
            if instance.has_password:
                instance.set_password("")
        elif secret and not self._is_stored_secret(instance, secret):
            instance.set_password(secret)

    @staticmethod
    def _is_stored_secret(instance, secret):
        # Typing the same secret again is no change and needs no new confirmation.
        if not instance.has_password or not crypto.can_decrypt(instance.password_ciphertext):
            return False
        stored = crypto.decrypt(instance.password_ciphertext)
        return hmac.compare_digest(stored.encode(), secret.encode())
