"""German and English: the catalogue is complete and compiled, the admin follows the editor's
language, the confirmation message follows the site's."""

import ast
import gettext
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from wagtail.models import Locale, Page, Site
from wagtail.users.models import UserProfile

from tests.conftest import SMTP_USER
from tests.helpers_admin import edit_url, errors, link_token, save_settings, successes, verify_url

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "wagtail_own_smtp"
PO_FILE = PACKAGE / "locale" / "de" / "LC_MESSAGES" / "django.po"
MO_FILE = PO_FILE.with_suffix(".mo")

# DESIGN.md §7: the words of the German help page the product reproduces.
GERMAN_SETTINGS_WORDS = [
    "Eigener SMTP-Server",
    "Über die Mailcloud der Plattform versenden",
    "Ausschließlich über eigenen Mailserver versenden",
    "SMTP-Host",
    "Port",
    "Absenderadresse",
    "Benutzername",
    "Passwort",
    "Verschlüsselung",
    "Keine",
    "STARTTLS",
    "SSL/TLS",
    "Mindestabstand / Limitierung",
    "Validierung",
]
ENGLISH_SETTINGS_WORDS = [
    "Own SMTP server",
    "Send via the platform&#x27;s mail service",
    "Send exclusively via own mail server",
    "SMTP host",
    "Sender address",
    "Username",
    "Password",
    "Encryption",
    "Minimum interval / limits",
    "Verification",
]


# -- the catalogue ------------------------------------------------------------------------------


def read_po(path):
    """The entries of a .po file as dicts: msgid, msgid_plural, msgstr (list), flags, obsolete."""
    entries, entry, field = [], None, None

    def start():
        return {"msgid": "", "msgid_plural": None, "msgstr": [], "flags": set(), "obsolete": False}

    for raw in path.read_text(encoding="utf-8").splitlines() + [""]:
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            if entry is not None:
                entries.append(entry)
            entry, field = None, None
            continue
        if entry is None:
            entry = start()
        entry["obsolete"] |= obsolete
        if line.startswith("#,"):
            entry["flags"].update(flag.strip() for flag in line[2:].split(","))
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            value = ast.literal_eval(line)
            if field == "msgstr":
                entry["msgstr"][-1] += value
            else:
                entry[field] += value
        else:
            keyword, _, value = line.partition(" ")
            field = "msgstr" if keyword.startswith("msgstr") else keyword
            if field == "msgstr":
                entry["msgstr"].append(ast.literal_eval(value))
            else:
                entry[field] = ast.literal_eval(value)
    return [entry for entry in entries if entry["msgid"] or entry["obsolete"]]


def problems(entries):
    """Entries a German editor would see in English (or wrongly): untranslated or fuzzy.

    Obsolete entries (strings no longer in the source) are harmless: they are not compiled.
    """
    found = []
    for entry in entries:
        if entry["obsolete"]:
            continue
        if "fuzzy" in entry["flags"]:
            found.append(("fuzzy", entry["msgid"]))
        elif not entry["msgstr"] or not all(entry["msgstr"]):
            found.append(("untranslated", entry["msgid"]))
    return found


def test_every_german_entry_is_translated():
    entries = read_po(PO_FILE)
    assert len(entries) > 150
    assert problems(entries) == []


def test_compiled_catalogue_matches_the_po_file():
    """The committed .mo is what compilemessages makes of the committed .po."""
    with MO_FILE.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for entry in read_po(PO_FILE):
        if entry["obsolete"]:
            continue
        if entry["msgid_plural"] is not None:
            for count, msgstr in enumerate(entry["msgstr"][:2], start=1):
                if compiled.ngettext(entry["msgid"], entry["msgid_plural"], count) != msgstr:
                    stale.append(entry["msgid"])
        elif entry.get("msgctxt") is not None:
            if compiled.pgettext(entry["msgctxt"], entry["msgid"]) != entry["msgstr"][0]:
                stale.append(entry["msgid"])
        elif compiled.gettext(entry["msgid"]) != entry["msgstr"][0]:
            stale.append(entry["msgid"])
    assert stale == [], "run compilemessages inside wagtail_own_smtp/"


def test_catalogue_covers_every_string_in_the_source(tmp_path):
    """makemessages over the current source adds nothing untranslated to the committed .po."""
    if not shutil.which("xgettext") or not shutil.which("msgmerge"):
        pytest.fail("GNU gettext (xgettext, msgmerge) is needed: apt-get install gettext")
    copy = tmp_path / "wagtail_own_smtp"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "de"],
        cwd=copy,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
        },
        check=True,
        capture_output=True,
    )
    assert problems(read_po(copy / "locale" / "de" / "LC_MESSAGES" / "django.po")) == []


# -- the admin and the messages ----------------------------------------------------------------


def _site_in(language, hostname, default):
    """A site whose home page (and so whose default language) is in ``language``."""
    locale, _ = Locale.objects.get_or_create(language_code=language)
    root = Page.get_first_root_node()
    home = root.add_child(instance=Page(title=f"Home of {hostname}", locale=locale))
    Site.objects.filter(hostname=hostname).delete()
    if default:
        Site.objects.filter(is_default_site=True).update(is_default_site=False)
    return Site.objects.create(
        hostname=hostname, port=80, root_page=home, is_default_site=default, site_name=hostname
    )


@pytest.fixture
def i18n_sites(settings, db):
    """Wagtail i18n on: an English default site and a German site."""
    settings.WAGTAIL_I18N_ENABLED = True
    settings.WAGTAIL_CONTENT_LANGUAGES = [("en", "English"), ("de", "Deutsch")]
    Locale.objects.get_or_create(language_code=django_settings.LANGUAGE_CODE)
    return {
        "en": _site_in("en", "localhost", default=True),
        "de": _site_in("de", "umfrage.example", default=False),
    }


def _editor(django_user_model, name, language):
    user = django_user_model.objects.create_superuser(name, f"{name}@platform.example", "pw")
    profile = UserProfile.get_for_user(user)
    profile.preferred_language = language
    profile.save()
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def german_editor(django_user_model, db):
    return _editor(django_user_model, "redakteurin", "de")


@pytest.fixture
def english_editor(django_user_model, db):
    return _editor(django_user_model, "editor", "en")


def _text(response):
    return response.content.decode()


def test_settings_page_follows_the_editors_admin_language(
    i18n_sites, german_editor, english_editor
):
    german = _text(german_editor.get(edit_url(i18n_sites["en"])))
    english = _text(english_editor.get(edit_url(i18n_sites["en"])))
    for word in GERMAN_SETTINGS_WORDS:
        assert word in german
    for word in ENGLISH_SETTINGS_WORDS:
        assert word in english
    assert "Mindestabstand" not in english
    assert "Send exclusively via own mail server" not in german


def test_confirmation_mail_follows_the_site_and_messages_the_editor(
    i18n_sites, german_editor, english_editor, starttls_server
):
    # An English-speaking editor configures the German site: German mail, English admin.
    response = save_settings(english_editor, i18n_sites["de"], starttls_server)
    assert errors(response) == [
        f"A test message with a confirmation link was sent to {SMTP_USER}. The new settings "
        "take effect once you click the link in it."
    ]
    german_mail = starttls_server.wait_for(1)[0].message
    assert german_mail["Subject"] == "Mailserver für umfrage.example bestätigen"
    body = german_mail.get_body(("plain",)).get_content()
    assert "Dies ist eine Testnachricht von umfrage.example" in body
    assert "öffnen Sie diesen Bestätigungslink" in body
    assert "Absenderadresse: mailer@customer.example" in body
    assert "Bestätigungslink" in german_mail.get_body(("html",)).get_content()

    # A German-speaking editor configures the English site: English mail, German admin.
    response = save_settings(german_editor, i18n_sites["en"], starttls_server)
    assert errors(response) == [
        f"Eine Testnachricht mit Bestätigungslink wurde an {SMTP_USER} gesendet. Die neuen "
        "Einstellungen werden wirksam, sobald Sie den Link darin anklicken."
    ]
    english_mail = starttls_server.wait_for(2)[1].message
    assert english_mail["Subject"] == "Confirm the mail server for localhost"
    assert "open this link and confirm" in english_mail.get_body(("plain",)).get_content()


def test_confirmation_page_speaks_the_sites_language_to_a_visitor(
    i18n_sites, english_editor, starttls_server
):
    save_settings(english_editor, i18n_sites["de"], starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])
    visitor = Client()

    page = _text(visitor.get(verify_url(token)))
    assert "Mailserver bestätigen" in page
    assert "Absenderadresse" in page
    assert ">Bestätigen</button>" in page

    done = visitor.post(verify_url(token), follow=True)
    assert successes(done) == ["Die neuen Servereinstellungen sind nun aktiv."]
    assert "Mailserver bestätigt" in _text(done)


def test_german_editor_confirms_and_sees_the_admin_in_german(
    i18n_sites, german_editor, starttls_server
):
    save_settings(german_editor, i18n_sites["en"], starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])

    assert ">Bestätigen</button>" in _text(german_editor.get(verify_url(token)))
    done = german_editor.post(verify_url(token), follow=True)
    assert done.redirect_chain[-1][0] == edit_url(i18n_sites["en"])
    assert successes(done) == ["Die neuen Servereinstellungen sind nun aktiv."]
    assert "Validiert seit" in _text(done)


def test_server_reply_stays_verbatim_in_a_german_admin(i18n_sites, german_editor, starttls_server):
    response = save_settings(german_editor, i18n_sites["en"], starttls_server, password="wrong")
    [message] = errors(response)
    assert message.startswith(
        "Die Testnachricht konnte nicht gesendet werden. Der Server antwortete: 535"
    )
    page = _text(response)
    assert "Fehlgeschlagen" in page
    assert "Der Server antwortete:" in page
