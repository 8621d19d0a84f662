"""An editor in a real browser: enter the own server, get the red message, click the confirmation
link, see the green one; a wrong password shows the server's own reply. Once in German."""

import pytest

from tests.browser.conftest import (
    confirmation_link,
    is_green,
    is_red,
    log_in,
    make_editor,
    message,
    open_settings,
    rgb,
    save,
    screenshot,
)
from tests.conftest import SMTP_PASSWORD, SMTP_USER
from wagtail_own_smtp.models import SmtpSettings

pytestmark = pytest.mark.browser


# How far below the text that carries the server's reply the hint starts, inside a message
# (measured at once: the messages above may still move).
HINT_BELOW_REPLY = """element => {
    const hint = element.querySelector("[data-own-smtp-hint]").getBoundingClientRect();
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.textContent.includes("535")) {
            const range = document.createRange();
            range.selectNodeContents(node);
            return hint.top - range.getBoundingClientRect().bottom;
        }
    }
    return -Infinity;
}"""


def fill_server(page, server, *, password=SMTP_PASSWORD):
    page.locator("#id_host").fill("localhost")
    page.locator("#id_port").fill(str(server.port))
    page.locator("#id_security").select_option("starttls")
    page.locator("#id_from_email").fill(SMTP_USER)
    page.locator("#id_from_name").fill("Customer Surveys")
    page.locator("#id_username").fill(SMTP_USER)
    page.locator("#id_password").fill(password)


def test_editor_verifies_own_server_by_link(
    page, live_server, site, starttls_server, django_user_model
):
    editor = make_editor(django_user_model, site, "editor")
    log_in(page, live_server, editor)
    open_settings(page, live_server, site)
    assert page.locator("h2, legend, .w-panel__heading").filter(has_text="Own SMTP server").count()

    page.get_by_label("Send exclusively via own mail server").check()
    fill_server(page, starttls_server)
    save(page)

    red = message(page, "error")
    assert (
        red.inner_text()
        .strip()
        .startswith(f"A test message with a confirmation link was sent to {SMTP_USER}.")
    )
    assert is_red(rgb(red))
    # Nothing is wrong: Wagtail's "Go to the first error" button finds nothing to show.
    assert red.locator("button").count() == 1
    assert not red.locator("button").is_visible()
    assert page.locator("[data-own-smtp-status=pending]").is_visible()
    # Nothing of the password comes back to the browser.
    assert SMTP_PASSWORD not in page.content()
    assert page.locator("#id_password").input_value() == ""
    screenshot(page, "red", for_readme=True)

    # The confirmation message arrived at the sender address through the new server.
    [received] = starttls_server.wait_for(1)
    assert received.rcpt_tos == [SMTP_USER] and received.tls
    page.goto(confirmation_link(received))
    assert "Confirm that the mail of" in page.inner_text("main")
    assert "{#" not in page.inner_text("body") and "#}" not in page.inner_text("body")
    assert page.locator("dd", has_text=f"{starttls_server.port}").count() == 1
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm").click()

    # Back in the settings (this editor may change them): green message, green "verified".
    green = message(page, "success")
    assert green.inner_text().strip() == "The new server settings are now active."
    assert is_green(rgb(green))
    verified = page.locator("[data-own-smtp-verified]")
    assert verified.inner_text().strip().startswith("Verified since")
    assert is_green(rgb(verified, "color"))
    screenshot(page, "green", for_readme=True)
    assert SmtpSettings.objects.get(site=site).verification_status == "verified"

    # A wrong password: the server's original reply is on the page, the verified server stays.
    page.locator("#id_password").fill("wrong-password")
    save(page)
    error = message(page, "error")
    assert "535 5.7.8 Authentication credentials invalid" in error.inner_text()
    # the hint on a line of its own under the server's reply
    hint = error.locator("[data-own-smtp-hint]")
    assert hint.inner_text() == "The server rejected the username or password."
    assert error.evaluate(HINT_BELOW_REPLY) >= -1
    assert page.locator("[data-own-smtp-last-error]").inner_text() == (
        "535 5.7.8 Authentication credentials invalid"
    )
    assert (
        "Until new server settings are saved and confirmed by link, mail is still sent through "
        "the verified server" in page.inner_text("[data-own-smtp-status]")
    )
    screenshot(page, "wrong-password", for_readme=True)
    assert SmtpSettings.objects.get(site=site).verified_host == "localhost"


def test_german_editor_sees_german_words(
    page, live_server, site, starttls_server, django_user_model
):
    editor = make_editor(django_user_model, site, "redakteurin", language="de")
    log_in(page, live_server, editor)
    open_settings(page, live_server, site)
    panel = page.inner_text("main")
    for words in (
        "Eigener SMTP-Server",
        "Über die Mailcloud der Plattform versenden",
        "Mindestabstand / Limitierung",
        "Validierung",
        "Absenderadresse",
    ):
        assert words in panel

    labels = {
        "id_host": "SMTP-Host",
        "id_port": "Port*",  # required fields are marked with "*"
        "id_security": "Verschlüsselung*",
        "id_from_email": "Absenderadresse",
        "id_username": "Benutzername",
        "id_password": "Passwort",
        "id_min_interval": "Mindestabstand*",
    }
    for field, label in labels.items():
        assert page.inner_text(f"label[for={field}]").strip() == label
    assert [option.strip() for option in page.locator("#id_security option").all_inner_texts()] == [
        "Keine",
        "STARTTLS",
        "SSL/TLS",
    ]

    page.get_by_label("Ausschließlich über eigenen Mailserver versenden").check()
    fill_server(page, starttls_server)
    page.locator("#id_min_interval").fill("2")
    save(page)

    red = message(page, "error")
    assert (
        red.inner_text()
        .strip()
        .startswith(f"Eine Testnachricht mit Bestätigungslink wurde an {SMTP_USER} gesendet.")
    )
    assert is_red(rgb(red))
    assert not red.locator("button").is_visible()
    screenshot(page, "red-de")

    page.goto(confirmation_link(starttls_server.wait_for(1)[0]))
    assert "Mailserver bestätigen" in page.inner_text("main")
    assert "{#" not in page.inner_text("body")
    with page.expect_navigation():
        page.get_by_role("button", name="Bestätigen").click()
    green = message(page, "success")
    assert green.inner_text().strip() == "Die neuen Servereinstellungen sind nun aktiv."
    assert is_green(rgb(green))
    assert (
        page.locator("[data-own-smtp-verified]").inner_text().strip().startswith("Validiert seit")
    )
    screenshot(page, "green-de")
    # the outbox summary and its chart speak German too
    summary = page.inner_text("[data-own-smtp-outbox-summary]")
    assert "Gesendete Empfänger pro Stunde" in summary

    # a wrong password: the server's reply, and the hint in German on its own line
    page.locator("#id_password").fill("falsches-passwort")
    save(page)
    error = message(page, "error")
    assert "535 5.7.8" in error.inner_text()
    assert error.locator("[data-own-smtp-hint]").inner_text() == (
        "Der Server hat Benutzername oder Passwort abgelehnt."
    )
    status = page.inner_text("[data-own-smtp-status]")
    assert "Der Server hat Benutzername oder Passwort abgelehnt." in status
    assert "Bis neue Servereinstellungen gespeichert und per Link bestätigt sind" in status
    screenshot(page, "wrong-password-de")
