"""An editor in a real browser sees a site's survey wave in the bulk lane of the outbox, filters
by lane, and stops the wave: the waiting bulk mail is cancelled, the form notification goes on.
In English and in German."""

import pytest
from django.core.mail import send_mail

from tests.browser.conftest import log_in, make_editor, screenshot
from tests.delivery_helpers import own_server, real_backend  # noqa: F401 (fixture)
from wagtail_own_smtp import using_site
from wagtail_own_smtp.models import OutboundMessage

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("real_backend")]

WORDS = {
    "en": {
        "bulk": "Bulk",
        "normal": "Normal",
        "lane": "Lane",
        "forecast": "3 of them are bulk mail: normal mail goes first, at the next slot",
        "action": "Cancel the waiting bulk mail of this site",
        "question": "3 bulk messages of Customer survey wait to be sent.",
        "button": "Cancel the bulk mail",
        "done": "Cancelled 3 waiting bulk messages of Customer survey; normal mail goes on.",
    },
    "de": {
        "bulk": "Massenversand",
        "normal": "Normal",
        "lane": "Spur",
        "forecast": "3 davon sind Massenversand: normale Mails gehen zuerst",
        "action": "Die wartenden Massenmails dieser Website abbrechen",
        "question": "3 Massenmails von Customer survey warten auf den Versand.",
        "button": "Massenversand abbrechen",
        "done": "3 wartende Massenmails von Customer survey abgebrochen; normale Mails gehen "
        "weiter.",
    },
}


@pytest.mark.parametrize("language", ["en", "de"])
def test_an_editor_sees_and_stops_a_wave(
    page, live_server, site, starttls_server, django_user_model, language
):
    words = WORDS[language]
    own_server(site, starttls_server, min_interval=30)
    with using_site(site, bulk=True):
        for number in range(3):
            send_mail("Invitation", "Take part", None, [f"p{number}@participants.example"])
    with using_site(site):
        send_mail("New form entry", "Someone answered", None, ["owner@example.org"])

    editor = make_editor(django_user_model, site, "editor", language=language)
    log_in(page, live_server, editor)
    page.goto(f"{live_server.url}/admin/own-smtp/outbox/?site={site.pk}")

    table = page.locator("[data-own-smtp-outbox] table.listing")
    assert words["lane"] in table.locator("thead").inner_text()
    bulk_rows = page.locator("tr[data-own-smtp-message-lane=bulk]")
    assert bulk_rows.count() == 3
    assert words["bulk"] in bulk_rows.first.inner_text()
    normal_row = page.locator("tr[data-own-smtp-message-lane=normal]")
    assert words["normal"] in normal_row.inner_text()
    forecast = page.locator(f"[data-own-smtp-forecast][data-site='{site.pk}']")
    assert words["forecast"] in forecast.inner_text()

    # the lane filter: only the wave
    page.goto(f"{live_server.url}/admin/own-smtp/outbox/?site={site.pk}&lane=bulk")
    assert page.locator("tr[data-own-smtp-message]").count() == 3
    assert page.locator("tr[data-own-smtp-message-lane=normal]").count() == 0

    # stop the wave: the page asks first, with the count
    page.get_by_role("link", name=words["action"]).click()
    assert words["question"] in page.locator("[data-own-smtp-cancel-bulk-form]").inner_text()
    assert OutboundMessage.objects.filter(status="cancelled").count() == 0
    screenshot(page, f"outbox-cancel-bulk-{language}")
    page.get_by_role("button", name=words["button"]).click()
    page.wait_for_url(f"**/admin/own-smtp/outbox/?site={site.pk}")
    assert words["done"] in page.inner_text("body")
    assert page.locator("tr[data-own-smtp-message-status=cancelled]").count() == 3
    queued = page.locator("tr[data-own-smtp-message-status=queued]")
    assert queued.count() == 1 and "New form entry" in queued.inner_text()
    statuses = dict(OutboundMessage.objects.values_list("subject", "status").distinct())
    assert statuses == {"Invitation": "cancelled", "New form entry": "queued"}
