"""Stored SMTP passwords: encryption, keys from SECRET_KEY or settings, rotation, raw DB bytes."""

import base64
import io
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core import checks
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.utils import timezone
from wagtail.models import Site

from tests.helpers_admin import make_site
from wagtail_own_smtp import crypto, servers
from wagtail_own_smtp.models import AccessToken, SmtpSettings

PASSWORD = "Sommer-Umfrage-2026-Grüße"


def new_key():
    return Fernet.generate_key().decode()


def stored_setting(site, password=PASSWORD, verified=True):
    """A site's SMTP settings with the password stored (and confirmed, like after verification)."""
    setting = SmtpSettings(site=site, host="smtp.customer.example", from_email="a@b.example")
    setting.set_password(password)
    if verified:
        setting.verified_password_ciphertext = crypto.encrypt(password)
    setting.save()
    return setting


def raw_ciphertexts(setting):
    setting.refresh_from_db()
    return bytes(setting.password_ciphertext), bytes(setting.verified_password_ciphertext)


def rotate_keys():
    out = io.StringIO()
    call_command("own_smtp_rotate_keys", stdout=out)
    return out.getvalue()


def stored_password_errors():
    """The database check's findings (E002), as `manage.py check --database default` runs it."""
    found = checks.run_checks(tags=[checks.Tags.database], databases=["default"])
    return [message for message in found if message.id == "wagtail_own_smtp.E002"]


@pytest.fixture
def site(db):
    return Site.objects.get(is_default_site=True)


@pytest.fixture
def second_site(db, site):
    return Site.objects.create(hostname="survey.example", port=80, root_page=site.root_page)


# -- encrypt / decrypt ---------------------------------------------------------------------


def test_round_trip():
    ciphertext = crypto.encrypt(PASSWORD)

    assert crypto.decrypt(ciphertext) == PASSWORD
    assert crypto.decrypt(memoryview(ciphertext)) == PASSWORD  # as some databases return it


def test_ciphertext_does_not_contain_the_plaintext():
    ciphertext = crypto.encrypt(PASSWORD)

    assert PASSWORD.encode() not in ciphertext
    assert base64.b64encode(PASSWORD.encode()) not in ciphertext
    assert crypto.encrypt(PASSWORD) != ciphertext  # a fresh IV each time


def test_empty_password_stays_empty():
    assert crypto.encrypt("") == b""
    assert crypto.decrypt(b"") == ""


def test_keys_are_derived_from_secret_key(settings):
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = None
    ciphertext = crypto.encrypt(PASSWORD)

    assert crypto.keys_are_derived()
    assert crypto.configured_keys() == [crypto.derive_key(settings.SECRET_KEY)]
    settings.SECRET_KEY = "another-secret-key-for-another-installation"
    with pytest.raises(crypto.UndecryptablePassword) as info:
        crypto.decrypt(ciphertext)
    assert PASSWORD not in str(info.value)


def test_secret_key_fallbacks_decrypt_after_rotating_secret_key(settings):
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = None
    old_secret = settings.SECRET_KEY
    ciphertext = crypto.encrypt(PASSWORD)

    settings.SECRET_KEY = "the-new-secret-key-after-rotation"
    settings.SECRET_KEY_FALLBACKS = [old_secret]
    assert crypto.decrypt(ciphertext) == PASSWORD

    # New ciphertexts use the new SECRET_KEY, so the fallback can go once they are rotated.
    fresh = crypto.encrypt(PASSWORD)
    settings.SECRET_KEY_FALLBACKS = []
    assert crypto.decrypt(fresh) == PASSWORD
    assert not crypto.can_decrypt(ciphertext)


def test_explicit_keys_first_encrypts_all_decrypt(settings):
    first, second = new_key(), new_key()
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [second]
    under_second = crypto.encrypt(PASSWORD)

    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [first, second]
    under_first = crypto.encrypt(PASSWORD)
    assert crypto.decrypt(under_second) == PASSWORD
    assert crypto.decrypt(under_first) == PASSWORD

    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [first]
    assert crypto.decrypt(under_first) == PASSWORD
    assert not crypto.can_decrypt(under_second)


def test_explicit_keys_do_not_depend_on_secret_key(settings):
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [new_key().encode()]  # bytes work too
    ciphertext = crypto.encrypt(PASSWORD)

    settings.SECRET_KEY = "a-completely-different-secret-key"
    assert crypto.decrypt(ciphertext) == PASSWORD


# -- own_smtp_rotate_keys -------------------------------------------------------------------


def test_rotation_re_encrypts_under_the_first_key(settings, site, second_site):
    old, new = new_key(), new_key()
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [old]
    first = stored_setting(site)
    second = stored_setting(second_site, password="", verified=False)  # no password stored
    version = first.password_version

    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [new, old]
    out = rotate_keys()

    assert "Re-encrypted 2 stored password(s) of 1 site(s)." in out
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [new]  # the old key can go now
    first.refresh_from_db()
    assert servers.current_params(first).password == PASSWORD
    assert crypto.decrypt(first.verified_password_ciphertext) == PASSWORD
    assert first.password_version == version  # not a password change: no re-verification
    assert raw_ciphertexts(second) == (b"", b"")
    assert PASSWORD not in out


def test_rotation_drops_cached_oauth_access_tokens(settings, site):
    old, new = new_key(), new_key()
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [old]
    stored_setting(site)
    AccessToken.objects.create(
        site=site,
        fingerprint="f" * 64,
        token_ciphertext=crypto.encrypt("access-token-under-the-old-key"),
        expires_at=timezone.now() + timedelta(hours=1),
    )

    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [new, old]
    rotate_keys()

    # Nothing is left that only the old key decrypts; the token is simply fetched again.
    assert not AccessToken.objects.exists()


def test_rotation_moves_secret_key_derived_passwords_to_explicit_keys(settings, site):
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = None
    setting = stored_setting(site)
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [new_key()]
    assert stored_password_errors()

    rotate_keys()

    setting.refresh_from_db()
    assert servers.current_params(setting).password == PASSWORD
    assert stored_password_errors() == []


def test_rotation_refuses_an_undecryptable_password_and_changes_nothing(
    settings, site, second_site
):
    kept_key, lost_key = new_key(), new_key()
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [kept_key]
    kept = stored_setting(site)  # first in line, so a half-done rotation would change it
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [lost_key]
    lost = stored_setting(second_site, password="only-the-lost-key-knows")
    before = raw_ciphertexts(kept), raw_ciphertexts(lost)

    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [new_key(), kept_key]
    with pytest.raises(CommandError) as info:
        rotate_keys()

    message = str(info.value)
    assert "survey.example" in message
    assert "localhost" not in message  # the site whose password is fine
    assert "Nothing was changed" in message
    assert "only-the-lost-key-knows" not in message
    assert (raw_ciphertexts(kept), raw_ciphertexts(lost)) == before


def test_undecryptable_stored_password_is_error_e002(settings, site):
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [new_key()]
    stored_setting(site)
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [new_key()]

    [error] = stored_password_errors()
    assert "localhost" in error.msg
    assert PASSWORD not in error.msg + error.hint


def test_rotation_with_a_malformed_key_stops_at_the_system_check(settings, site):
    stored_setting(site)
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = ["this-is-not-a-fernet-key", new_key()]

    with pytest.raises(SystemCheckError) as info:
        call_command("own_smtp_rotate_keys", skip_checks=False, stdout=io.StringIO())
    assert "wagtail_own_smtp.E001" in str(info.value)
    assert "this-is-not-a-fernet-key" not in str(info.value)


# -- nothing in the database gives the password away ---------------------------------------


def _plaintext_forms(password):
    return [password.encode("utf-8"), password.encode("utf-16-le"), password.encode("latin-1")]


def _all_stored_values():
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                yield from row


def test_raw_database_values_never_contain_the_password(site):
    password = f"Raw-Bytes-Passwört-{uuid.uuid4().hex}"
    setting = stored_setting(site, password=password)
    setting.host = "smtp.changed.example"
    setting.save()

    found = []
    for value in _all_stored_values():
        if isinstance(value, memoryview):
            value = bytes(value)
        if isinstance(value, str):
            value = value.encode("utf-8")
        if isinstance(value, bytes) and any(form in value for form in _plaintext_forms(password)):
            found.append(value)
    assert found == []
    assert crypto.decrypt(SmtpSettings.objects.get(pk=setting.pk).password_ciphertext) == password


@pytest.mark.skipif(connection.vendor != "sqlite", reason="scans the SQLite database file")
@pytest.mark.django_db(transaction=True)
def test_sqlite_file_never_contains_the_password():
    password = f"File-Bytes-Passwört-{uuid.uuid4().hex}"
    stored_setting(make_site(), password=password)  # committed

    database_file = Path(connection.settings_dict["NAME"])
    assert database_file.is_file()
    content = database_file.read_bytes()
    assert b"smtp.customer.example" in content  # the row did reach the file
    for form in _plaintext_forms(password):
        assert form not in content
