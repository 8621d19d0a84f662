"""The settings form: write-only secrets (the password, the client secret) and validation that
turns every bad input into a form error (never a 500)."""

import hmac
import ipaddress
import json
import re
import unicodedata

from django import forms
from django.utils.translation import gettext_lazy as _
from wagtail.admin.forms import WagtailAdminModelForm

from . import crypto, hints, presets, transport
from .mailbox_form import MailboxFieldsMixin

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_PASSWORD_LENGTH = 1024
# Product names, not translated.
PROVIDER_NAMES = {"microsoft": "Microsoft 365", "google": "Google"}

# The fields each login method (models.AuthMethod) uses. The script hides the others; on save,
# what they hold is ignored, so a password never becomes a client secret or a refresh token.
METHOD_FIELDS = {
    "password": ("username", "password", "remove_password"),
    "microsoft_app": ("username", "oauth_tenant", "oauth_client_id", "client_secret"),
    "microsoft": ("username", "oauth_tenant"),
    "google": ("username",),
}
# Methods whose secret is typed into the form, and the field it is typed into.
SECRET_FIELD = {"password": "password", "microsoft_app": "client_secret"}


def _has_control_characters(value):
    # CR and LF would inject headers or SMTP commands; NUL breaks AUTH PLAIN.
    return any(unicodedata.category(char) == "Cc" for char in value)


def _to_ascii(host):
    """The IDNA (punycode) form of an internationalised host name."""
    try:
        import idna
    except ImportError:
        return host.encode("idna").decode("ascii")
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise UnicodeError(str(error)) from None


def normalize_host(value):
    """A host name per RFC 1123 (IDN as punycode, lower case) or an IP literal; ValueError else."""
    host = value.strip()
    if not host or any(char.isspace() for char in host) or _has_control_characters(host):
        raise ValueError
    if host.startswith("[") and host.endswith("]"):
        return str(ipaddress.IPv6Address(host[1:-1]))
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host.isascii():
        try:
            host = _to_ascii(host)
        except UnicodeError:
            raise ValueError from None
    host = host.lower().removesuffix(".")
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError
    if labels[-1].isdigit():
        # "10.1" or "1.2.3" would be taken as an address by the resolver.
        raise ValueError
    return host


def security_hint(smtp_settings):
    """A warning for a port and encryption that rarely go together (saving is still allowed)."""
    if not smtp_settings.host:
        return ""
    return hints.hint_for(
        transport.ServerParams(
            host=smtp_settings.host,
            port=smtp_settings.port,
            security=smtp_settings.security,
            from_email=smtp_settings.from_email,
        )
    )


class FiniteDecimalField(forms.DecimalField):
    """Django's DecimalField, refusing NaN and infinities already when converting the input.

    Django refuses them only in ``validate()``: "sNaN" passes ``to_python()`` and then breaks the
    comparison in ``has_changed()`` (``decimal.InvalidOperation``, a 500).
    """

    def to_python(self, value):
        value = super().to_python(value)
        if value is not None and not value.is_finite():
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return value


class ProviderPresetSelect(forms.Select):
    """The provider select: its script fills the form; without JavaScript it changes nothing."""

    class Media:
        js = ["wagtail_own_smtp/js/presets.js"]


class AuthMethodSelect(forms.RadioSelect):
    """The login method: its script shows only the fields of the chosen method."""

    class Media:
        js = ["wagtail_own_smtp/js/auth-method.js"]


class SmtpSettingsForm(MailboxFieldsMixin, WagtailAdminModelForm):
    # Not stored: the preset only fills the fields below it, in the browser.
    provider_preset = forms.ChoiceField(
        label=_("Provider"),
        required=False,
        choices=presets.choices,
        widget=ProviderPresetSelect,
        help_text=_(
            "Fills in host, port, encryption and the limits the provider publishes. You can "
            "change every value afterwards."
        ),
    )
    password = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        max_length=MAX_PASSWORD_LENGTH,
        # Never rendered back, not even after a validation error; no autofill of the login.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    remove_password = forms.BooleanField(
        label=_("Remove the stored password"),
        required=False,
        help_text=_("Login “Password”: for a server that needs no password."),
    )
    client_secret = forms.CharField(
        label=_("Client secret"),
        required=False,
        max_length=MAX_PASSWORD_LENGTH,
        # Write-only like the password.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        field_classes = {"min_interval": FiniteDecimalField}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Every field explains itself (the model's choice fields carry no help text).
        field_help = {
            "delivery_mode": _(
                "With your own mail server, the site's mail waits in the outbox until the "
                "server is verified, then goes out only through it."
            ),
            "security": _(
                "STARTTLS secures a plain connection (usually port 587); SSL/TLS is encrypted "
                "from the start (usually port 465)."
            ),
        }
        for name, text in field_help.items():
            if name in self.fields and not self.fields[name].help_text:
                self.fields[name].help_text = text
        # The method as stored: the secret stored belongs to it.
        self.stored_auth_method = self.instance.auth_method
        self._explain_login_fields()
        if "auth_method" in self.fields:
            # A post without the field (a page opened before an upgrade) keeps the stored method.
            self.fields["auth_method"].required = False
            self.fields["auth_method"].widget.attrs["data-own-smtp-auth-fields"] = json.dumps(
                METHOD_FIELDS
            )
        if "provider_preset" in self.fields:
            # Rendered per request, so the notes are in the editor's language.
            self.fields["provider_preset"].widget.attrs["data-own-smtp-presets"] = presets.as_json()

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
                if self._stored_secret_of("password")
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
                if self._stored_secret_of("microsoft_app")
                else _(
                    "Microsoft 365 app registration: the value of a client secret of the app "
                    "(not its ID)."
                )
            ),
        }
        for name, text in texts.items():
            if name in self.fields:
                self.fields[name].help_text = text

    def clean_host(self):
        return self._host_field(
            "host", _("Enter a host name such as smtp.example.org, or an IP address.")
        )

    def _host_field(self, name, invalid):
        """The host name in field ``name``, normalised; ``invalid`` is the error for a bad one."""
        host = self.cleaned_data.get(name, "")
        if not host:
            return ""
        try:
            return normalize_host(host)
        except ValueError:
            raise forms.ValidationError(invalid, code="invalid_host") from None

    def clean_port(self):
        port = self.cleaned_data.get("port")
        if port is not None and not 1 <= port <= 65535:
            raise forms.ValidationError(_("Enter a port between 1 and 65535."), code="port_range")
        return port

    def clean_from_email(self):
        address = self._single_line("from_email")
        local, _at, domain = address.rpartition("@")
        if domain and not domain.isascii():
            # Punycode works with every server; a UTF-8 domain would need SMTPUTF8.
            try:
                address = f"{local}@{_to_ascii(domain)}"
            except UnicodeError:
                raise forms.ValidationError(
                    _("Enter a valid email address."), code="invalid"
                ) from None
        return address

    def clean_from_name(self):
        return self._single_line("from_name")

    def clean_username(self):
        return self._single_line("username")

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
        if secret and _has_control_characters(secret):
            raise forms.ValidationError(
                _("The client secret must not contain line breaks."), code="invalid_secret"
            )
        return secret

    def _single_line(self, name):
        value = self.cleaned_data.get(name, "")
        if value and _has_control_characters(value):
            raise forms.ValidationError(
                _("Line breaks and control characters are not allowed here."),
                code="control_characters",
            )
        return value

    def clean(self):
        cleaned = super().clean()
        host = cleaned.get("host")
        if cleaned.get("delivery_mode") == "own":
            for name in ("host", "from_email"):
                if not cleaned.get(name) and name not in self.errors:
                    self.add_error(
                        name,
                        forms.ValidationError(
                            _("Required to send via your own mail server."), code="required"
                        ),
                    )
        if host and "host" in self.changed_data and "host" not in self.errors:
            self._check_address(host, cleaned.get("port") or 25)
        hour, day = cleaned.get("max_per_hour"), cleaned.get("max_per_day")
        if hour is not None and day is not None and hour > day:
            self.add_error(
                "max_per_hour",
                forms.ValidationError(
                    _("The hourly limit cannot be higher than the daily limit."),
                    code="limits",
                ),
            )
        method = cleaned.get("auth_method") or self.stored_auth_method
        self._clean_app_fields(cleaned, method)
        if method == "password":
            if cleaned.get("password") and cleaned.get("remove_password"):
                self.add_error(
                    "remove_password",
                    forms.ValidationError(
                        _("Either enter a new password or remove the stored one, not both."),
                        code="password_conflict",
                    ),
                )
        else:
            self._clean_oauth(cleaned, method)
        self.clean_mailbox(cleaned)
        return cleaned

    def _clean_app_fields(self, cleaned, method):
        """The tenant and client ID where the method uses them; emptied where it does not (they
        would only void the confirmation)."""
        from .oauth import TENANT_PATTERN

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
        if client_id and (_has_control_characters(client_id) or " " in client_id):
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
        from .oauth import PROVIDER_OF, is_configured

        if cleaned.get("security") not in ("starttls", "ssl") and "security" not in self.errors:
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
        if method == "microsoft_app":
            required = {
                "oauth_tenant": _("The app registration needs the directory (tenant) ID."),
                "oauth_client_id": _("The app registration needs its application (client) ID."),
            }
            if not self._stored_secret_of("microsoft_app"):
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

    def _check_address(self, host, port, field="host"):
        try:
            transport.resolve(host, port)
        except transport.PrivateHostError as error:
            self.add_error(field, forms.ValidationError(str(error), code="private_host"))
        except (OSError, UnicodeError, ValueError, OverflowError):
            self.add_error(
                field,
                forms.ValidationError(
                    _("The host name could not be resolved."), code="unresolvable_host"
                ),
            )

    def save(self, commit=True):
        instance = super().save(commit=False)
        method = instance.auth_method
        field = SECRET_FIELD.get(method)
        secret = self.cleaned_data.get(field, "") if field else ""
        if method != self.stored_auth_method:
            # A password is not a client secret, nor a refresh token: a new method starts empty.
            if secret:
                instance.set_password(secret)
            elif instance.has_password:
                instance.set_password("")
        elif method == "password" and self.cleaned_data.get("remove_password"):
            if instance.has_password:
                instance.set_password("")
        elif secret and not self._is_stored_secret(instance, secret):
            instance.set_password(secret)
        if commit:
            instance.save()
            self.save_m2m()
        return instance

    @staticmethod
    def _is_stored_secret(instance, secret):
        # Typing the same secret again is no change and needs no new confirmation.
        if not instance.has_password or not crypto.can_decrypt(instance.password_ciphertext):
            return False
        stored = crypto.decrypt(instance.password_ciphertext)
        return hmac.compare_digest(stored.encode(), secret.encode())
