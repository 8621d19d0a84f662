"""The settings form: validation that turns every bad input into a form error (never a 500).

The login's fields and write-only secrets are checked in ``login_form``, the mailbox's (bounces)
in ``mailbox_form``.
"""

import ipaddress
import re

from django import forms
from django.utils.translation import gettext_lazy as _
from wagtail.admin.forms import WagtailAdminModelForm

from . import hints, presets, transport
from .choices import DeliveryMode
from .login_form import LoginFieldsMixin, has_control_characters
from .mailbox_form import MailboxFieldsMixin
from .message import ascii_domain

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_PASSWORD_LENGTH = 1024


def normalize_host(value):
    """A host name per RFC 1123 (IDN as punycode, lower case) or an IP literal; ValueError else."""
    host = value.strip()
    if not host or any(char.isspace() for char in host) or has_control_characters(host):
        raise ValueError
    if host.startswith("[") and host.endswith("]"):
        return str(ipaddress.IPv6Address(host[1:-1]))
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host.isascii():
        try:
            host = ascii_domain(host)
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


def _secret_input():
    # Never rendered back, not even after a validation error; no autofill of the login.
    return forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})


class SmtpSettingsForm(LoginFieldsMixin, MailboxFieldsMixin, WagtailAdminModelForm):
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
        widget=_secret_input(),
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
        widget=_secret_input(),  # write-only like the password
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
        if "provider_preset" in self.fields:
            # Rendered per request, so the notes are in the editor's language.
            self.fields["provider_preset"].widget.attrs["data-own-smtp-presets"] = presets.as_json()

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
                address = f"{local}@{ascii_domain(domain)}"
            except UnicodeError:
                raise forms.ValidationError(
                    _("Enter a valid email address."), code="invalid"
                ) from None
        return address

    def clean_from_name(self):
        return self._single_line("from_name")

    def clean_username(self):
        return self._single_line("username")

    def _single_line(self, name):
        value = self.cleaned_data.get(name, "")
        if value and has_control_characters(value):
            raise forms.ValidationError(
                _("Line breaks and control characters are not allowed here."),
                code="control_characters",
            )
        return value

    def clean(self):
        cleaned = super().clean()
        host = cleaned.get("host")
        if cleaned.get("delivery_mode") == DeliveryMode.OWN:
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
        self.clean_login(cleaned)
        self.clean_mailbox(cleaned)
        return cleaned

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
        self.store_secret(instance)
        if commit:
            instance.save()
            self.save_m2m()
        return instance
