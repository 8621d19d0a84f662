"""Provider presets in the settings form, and the form's accessibility (labels, help, errors)."""

import json
import re
from html import unescape

import pytest

from tests.helpers_admin import edit_url, form_data, make_site, save_settings, stored
from wagtail_own_smtp import presets
from wagtail_own_smtp.models import AuthMethod

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    return make_site()


def page(client, site):
    response = client.get(edit_url(site))
    assert response.status_code == 200
    return response.content.decode()


def preset_select(html):
    return re.search(r'<select name="provider_preset"[^>]*>.*?</select>', html, re.S).group(0)


# -- what the presets say (the providers' published figures) ----------------------------------


def values(key):
    return presets.BY_KEY[key].values


def test_google_workspace_and_gmail():
    for key in ("google_workspace", "gmail"):
        assert values(key)["host"] == "smtp.gmail.com"
        assert (values(key)["port"], values(key)["security"]) == (587, "starttls")
        # Google takes no account password from apps: sign in (or an app password).
        assert values(key)["auth_method"] == "google"
        assert "only app passwords or OAuth" in str(presets.BY_KEY[key].note)
    assert values("google_workspace")["max_per_day"] == 2000
    assert values("gmail")["max_per_day"] == 500


def test_microsoft_365_by_sign_in_and_by_app_registration():
    for key, method in (("microsoft365", "microsoft"), ("microsoft365_app", "microsoft_app")):
        m365 = values(key)
        assert (m365["host"], m365["port"], m365["security"]) == (
            "smtp.office365.com",
            587,
            "starttls",
        )
        assert m365["auth_method"] == method
        assert m365["max_per_day"] == 10000
        # 30 messages a minute: one every 2 seconds.
        assert 60 / m365["min_interval"] == 30
        note = str(presets.BY_KEY[key].note)
        assert "end of December 2026" in note
        assert "550 5.7.30 or 535 5.7.3" in note
    assert presets.BY_KEY["microsoft365_app"].label == "Microsoft 365 (app registration)"


def test_every_login_a_preset_chooses_exists():
    methods = {value for value, _label in AuthMethod.choices}
    for preset in presets.PRESETS:
        if "auth_method" in preset.values:
            assert preset.values["auth_method"] in methods
    # A password-only provider puts "Password" back after an OAuth preset.
    assert values("ionos")["auth_method"] == values("strato")["auth_method"] == "password"


def test_ionos_and_strato():
    ionos = values("ionos")
    assert (ionos["host"], ionos["port"], ionos["security"]) == ("smtp.ionos.de", 587, "starttls")
    assert ionos["max_per_hour"] == 500
    strato = values("strato")
    assert (strato["host"], strato["port"], strato["security"]) == ("smtp.strato.de", 465, "ssl")
    # No confirmed published limit: the editor's limits stay as they are.
    assert not set(strato) & set(presets.LIMIT_FIELDS)


def test_generic_leaves_host_and_limits_alone():
    assert values("generic") == {"port": 587, "security": "starttls"}


def test_every_preset_names_its_source():
    for preset in presets.PRESETS:
        if set(preset.values) & set(presets.LIMIT_FIELDS):
            assert "as published by" in str(preset.note).lower()
    for name in (
        "support.google.com/a/answer/166852",
        "Exchange Online limits",
        "IONOS Help",
        "support.google.com/a/answer/14114704",
        "Exchange Online to\n  retire Basic auth for Client Submission",
    ):
        assert name in presets.__doc__


# -- the form -------------------------------------------------------------------------------


def test_form_renders_the_preset_select_with_data_for_the_script(admin_client, site):
    html = page(admin_client, site)
    select = preset_select(html)
    assert 'id="id_provider_preset"' in select
    data = json.loads(unescape(re.search(r'data-own-smtp-presets="([^"]*)"', select).group(1)))
    assert set(data) == set(presets.BY_KEY)
    assert data["microsoft365"]["values"] == {
        "host": "smtp.office365.com",
        "port": "587",
        "security": "starttls",
        "auth_method": "microsoft",
        "min_interval": "2",
        "max_per_hour": "",
        "max_per_day": "10000",
        "imap_host": "outlook.office365.com",
        "imap_port": "993",
        "imap_security": "ssl",
    }
    assert data["microsoft365_app"]["values"]["auth_method"] == "microsoft_app"
    assert "Exchange Online limits" in data["microsoft365"]["note"]
    # Every filled field exists in the form under that name.
    for preset in data.values():
        for name in preset["values"]:
            assert f'name="{name}"' in html
    # The login method is a radio group the script sets by value.
    assert 'type="radio" name="auth_method" value="microsoft_app"' in html
    assert '<option value="google_workspace">Google Workspace</option>' in select
    assert '<script src="/static/wagtail_own_smtp/js/presets.js"></script>' in html


def test_a_preset_without_javascript_changes_nothing(admin_client, site, starttls_server):
    """Without the script, a chosen preset is ignored: what the editor typed is stored."""
    response = save_settings(
        admin_client, site, starttls_server, provider_preset="microsoft365", max_per_day="40"
    )
    assert response.status_code == 200
    smtp = stored(site)
    assert (smtp.host, smtp.port, smtp.security) == ("localhost", starttls_server.port, "starttls")
    assert smtp.min_interval == 0 and smtp.max_per_day == 40
    assert smtp.auth_method == "password"


def test_a_bad_preset_value_is_a_form_error_not_a_crash(admin_client, site):
    response = admin_client.post(edit_url(site), form_data(None, provider_preset="nonsense"))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


# -- accessible forms: labels, help text, errors next to the field ----------------------------


def test_every_settings_field_has_a_label_and_help_text(admin_client, site):
    html = page(admin_client, site)
    form = html[html.index("<form") :]
    fields = re.findall(r"<(?:input|select|textarea)\b[^>]*>", form)
    named = [f for f in fields if 'type="hidden"' not in f and "name=" in f]
    assert len(named) >= 13
    for tag in named:
        field_id = re.search(r'id="([^"]+)"', tag).group(1)
        assert f'for="{field_id}"' in form, f"no label for {field_id}"
        if 'type="radio"' in tag:
            continue  # the group's help text sits with the group's label
        described = re.search(r'aria-describedby="([^"]+)"', tag)
        assert described, f"{field_id} has no help text"
        help_block = form[form.index(f'id="{described.group(1)}"') :]
        help_text = re.search(r'<div class="help">(.*?)</div>', help_block, re.S).group(1)
        assert help_text.strip()
    delivery = form[form.index('data-contentpath="delivery_mode"') :]
    assert "your own mail server" in delivery[: delivery.index('name="delivery_mode"')]


def test_errors_stand_next_to_their_field(admin_client, site):
    response = admin_client.post(edit_url(site), form_data(None, port="70000", max_per_hour="x"))
    html = response.content.decode()
    for name, error in (
        ("port", "Enter a port between 1 and 65535."),
        ("max_per_hour", "Enter a whole number."),
    ):
        field = html[html.index(f'data-contentpath="{name}"') :]
        input_tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', field).group(0)
        # The error sits in the field's own error block, before its input, which is marked.
        assert error in field[: field.index(input_tag)]
        assert 'aria-invalid="true"' in input_tag
    host = html[html.index('data-contentpath="host"') :]
    assert "error-message" not in host[: host.index('name="host"')]
