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
    listed = page.inner_text("[data-own-smtp-outbox] table.listing")
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


def test_rows_held_back_by_the_hourly_cap_show_the_forecasts_time(
    page, live_server, site, starttls_server, django_user_model
):
    from datetime import timedelta

    from django.utils import formats, timezone

    from wagtail_own_smtp.models import SendRecord, SiteSendState

    # Invitations 2 s apart, at most 3 recipients an hour; the hour's 3 went ten minutes ago.
    own_server(site, starttls_server, min_interval=2, max_per_hour=3)
    sent_at = timezone.now() - timedelta(minutes=10)
    SendRecord.objects.create(site=site, sent_at=sent_at, recipients=3)
    SiteSendState.objects.update_or_create(site=site, defaults={"last_sent_at": sent_at})
    with using_site(site):
        for address in INVITEES[:4]:
            send_mail("Your invitation", "Please take part.", "surveys@platform.example", [address])

    editor = make_editor(django_user_model, site, "editor")
    log_in(page, live_server, editor)
    page.goto(f"{live_server.url}/admin/own-smtp/outbox/?site={site.pk}")

    forecast = page.locator(f"[data-own-smtp-forecast][data-site='{site.pk}']")
    last = timezone.localtime(sent_at + timedelta(hours=2))
    assert formats.time_format(last, "TIME_FORMAT") in forecast.inner_text()
    # newest first: the last invitation goes when the forecast says the queue has drained
    rows = page.locator("tr[data-own-smtp-message-status=queued]")
    assert rows.first.locator("td").last.inner_text().strip() == formats.date_format(
        last, "DATETIME_FORMAT"
    )
    first = timezone.localtime(sent_at + timedelta(hours=1))
    assert rows.last.locator("td").last.inner_text().strip() == formats.date_format(
        first, "DATETIME_FORMAT"
    )
    chart = page.locator(f"[data-own-smtp-chart][data-site='{site.pk}'] svg[role=img]")
    assert chart.is_visible()
    assert page.locator("[data-own-smtp-chart-cap='3']").count() == 1
    screenshot(page, "outbox-chart", for_readme=True)
