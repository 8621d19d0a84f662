"""An editor in a real browser sees the site's queued invitations in the outbox, with the forecast
of when the last one goes out."""

import re

import pytest
from django.core.mail import send_mail

from tests.browser.conftest import log_in, make_editor, screenshot
from tests.delivery_helpers import own_server, real_backend  # noqa: F401 (fixture)
from wagtail_own_smtp import using_site

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("real_backend")]

INVITEES = [f"participant{number}@example.org" for number in range(1, 6)]


def test_queued_invitations_show_in_the_outbox_with_the_forecast(
    page, live_server, site, starttls_server, django_user_model
):
    # A site that sends exclusively via its verified server, one message every 30 s at most.
    own_server(site, starttls_server, min_interval=30, max_per_hour=100)
    with using_site(site):
        for address in INVITEES:
            send_mail(
                "Your invitation to the customer survey 2026",
                "Please take part: it takes five minutes.",
                "surveys@platform.example",
                [address],
            )
    assert starttls_server.received == []  # queued, not sent at once

    editor = make_editor(django_user_model, site, "editor")
    log_in(page, live_server, editor)
    page.goto(f"{live_server.url}/admin/own-smtp/outbox/")

    rows = page.locator("[data-own-smtp-message-status=queued]")
    assert rows.count() == len(INVITEES)
    listed = page.inner_text("[data-own-smtp-outbox] table")
    assert "Your invitation to the customer survey 2026" in listed
    for address in INVITEES:
        assert address in listed
    queued = page.locator("[data-own-smtp-count=queued] [data-own-smtp-count-value]")
    assert queued.inner_text() == "5"

    forecast = page.locator(f"[data-own-smtp-forecast][data-site='{site.pk}']")
    assert forecast.get_attribute("data-state") == "sending"
    text = forecast.locator("[data-own-smtp-forecast-text]").inner_text()
    assert re.fullmatch(
        r"5 messages waiting — at one message every 30 s and at most 100 recipients an hour, "
        r"the last goes out (within a minute|around .+ (today|tomorrow))\.",
        text,
    ), text
    # Five messages 30 s apart: the last leaves two minutes after the first.
    assert "within a minute" not in text
    screenshot(page, "outbox", for_readme=True)
