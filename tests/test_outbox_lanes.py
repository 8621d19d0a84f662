"""The outbox and the lanes: the lane column and filter, the forecast of a wave, stopping a wave
(cancel the waiting bulk mail of one site), and ``own_smtp_status``."""

import io
import re
from datetime import timedelta
from html import unescape

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from wagtail.models import ModelLogEntry

from tests.delivery_helpers import own_server
from tests.helpers_outbox import (
    OUTBOX,
    denied,
    editor_a,
    listed,
    outsider,
    per_site,
    site_a,
    site_b,
    stored,
)
from wagtail_own_smtp.models import OutboundMessage

pytestmark = pytest.mark.django_db
__all__ = ["site_a", "site_b", "editor_a", "outsider"]


def cancel_url(site):
    return f"{OUTBOX}site/{site.pk}/cancel-bulk/"


def statuses_by_subject():
    return dict(OutboundMessage.objects.values_list("subject", "status"))


def test_the_listing_shows_and_filters_the_lane(admin_client, site_a):
    notification = stored(site_a, "Form notification")
    invitation = stored(site_a, "Invitation", lane="bulk")
    page = admin_client.get(OUTBOX).content.decode()
    assert f'data-own-smtp-message="{invitation.pk}" data-own-smtp-message-status="queued" ' in page
    assert 'data-own-smtp-message-lane="bulk"' in page
    assert re.search(r"<th[^>]*>\s*Lane\s*</th>", page)
    assert re.search(r"<td[^>]*>\s*Bulk\s*</td>", page)
    assert re.search(r"<td[^>]*>\s*Normal\s*</td>", page)
    assert listed(admin_client.get(OUTBOX, {"lane": "bulk"})) == [invitation.pk]
    assert listed(admin_client.get(OUTBOX, {"lane": "normal"})) == [notification.pk]


def test_the_forecast_says_when_the_wave_drains_and_that_normal_mail_goes_first(
    admin_client, site_a
):
    own_server(site_a, None, min_interval="60")
    for n in range(3):
        stored(site_a, f"Invitation {n}", lane="bulk")
    stored(site_a, "Thank you")
    page = unescape(admin_client.get(OUTBOX).content.decode())
    assert "4 messages waiting" in page
    assert "3 of them are bulk mail: normal mail goes first, at the next slot" in page
    assert "the bulk lane drains around" in page
    assert "Cancel the waiting bulk mail of this site" in page


def test_cancelling_a_wave_cancels_exactly_the_waiting_bulk_mail_of_that_site(
    admin_client, admin_user, site_a, site_b
):
    for n in range(3):
        stored(site_a, f"a-bulk-{n}", lane="bulk")
    stored(site_a, "a-bulk-deferred", lane="bulk", status="deferred", attempts=1)
    stored(site_a, "a-bulk-sending", lane="bulk", status="sending", claimed_by="worker")
    stored(site_a, "a-bulk-sent", lane="bulk", status="sent", sent_at=timezone.now())
    stored(site_a, "a-normal")
    stored(site_a, "a-normal-deferred", status="deferred", attempts=1)
    stored(site_b, "b-bulk", lane="bulk")
    stored(site_b, "b-normal")

    question = unescape(admin_client.get(cancel_url(site_a)).content.decode())
    assert 'data-own-smtp-cancel-bulk-count="4"' in question
    name = site_a.site_name or site_a.hostname
    assert f"4 bulk messages of {name} wait to be sent" in question
    assert statuses_by_subject()["a-bulk-0"] == "queued"  # asking changes nothing

    response = admin_client.post(cancel_url(site_a), follow=True)
    assert f"Cancelled 4 waiting bulk messages of {name}" in unescape(response.content.decode())
    assert statuses_by_subject() == {
        "a-bulk-0": "cancelled",
        "a-bulk-1": "cancelled",
        "a-bulk-2": "cancelled",
        "a-bulk-deferred": "cancelled",
        "a-bulk-sending": "sending",  # the one in flight goes on
        "a-bulk-sent": "sent",
        "a-normal": "queued",
        "a-normal-deferred": "deferred",
        "b-bulk": "queued",
        "b-normal": "queued",
    }
    entry = ModelLogEntry.objects.get(action="wagtail_own_smtp.cancel_bulk")
    assert entry.user_id == admin_user.pk and entry.data["count"] == 4
    assert entry.data["site"] == site_a.pk
    history = unescape(admin_client.get("/admin/reports/site-history/").content.decode())
    assert "Cancelled 4 waiting bulk messages" in history
    # nothing left to cancel: the page says so and offers no button
    again = admin_client.get(cancel_url(site_a)).content.decode()
    assert (
        'data-own-smtp-cancel-bulk-count="0"' in again and "data-own-smtp-cancel-bulk>" not in again
    )


@per_site
def test_only_the_sites_editors_may_cancel_its_wave(editor_a, outsider, site_a, site_b):
    stored(site_a, "a-bulk", lane="bulk")
    stored(site_b, "b-bulk", lane="bulk")
    assert denied(editor_a.get(cancel_url(site_b)))
    assert denied(editor_a.post(cancel_url(site_b)))
    assert denied(outsider.post(cancel_url(site_a)))
    assert statuses_by_subject() == {"a-bulk": "queued", "b-bulk": "queued"}
    assert editor_a.post(cancel_url(site_a)).status_code == 302
    assert statuses_by_subject() == {"a-bulk": "cancelled", "b-bulk": "queued"}
    assert editor_a.get(f"{OUTBOX}site/999/cancel-bulk/").status_code == 404


def test_the_german_outbox_speaks_of_lanes(admin_client, admin_user, site_a):
    from wagtail.users.models import UserProfile

    UserProfile.get_for_user(admin_user).__class__.objects.filter(user=admin_user).update(
        preferred_language="de"
    )
    own_server(site_a, None, min_interval="60")
    stored(site_a, "Einladung", lane="bulk")
    stored(site_a, "Danke")
    page = unescape(admin_client.get(OUTBOX).content.decode())
    assert "Massenversand" in page and "Spur" in page
    assert "Die wartenden Massenmails dieser Website abbrechen" in page
    question = unescape(admin_client.get(cancel_url(site_a)).content.decode())
    name = site_a.site_name or site_a.hostname
    assert f"1 Massenmail von {name} wartet auf den Versand" in question
    done = unescape(admin_client.post(cancel_url(site_a), follow=True).content.decode())
    assert f"1 wartende Massenmail von {name} abgebrochen" in done


def test_status_shows_both_lanes(site_a):
    own_server(site_a, None, max_per_hour=20)
    for n in range(3):
        stored(site_a, f"Invitation {n}", lane="bulk")
    stored(site_a, "Thank you")
    out = io.StringIO()
    call_command("own_smtp_status", stdout=out)
    text = out.getvalue()
    assert "lanes: normal 1 waiting, bulk 3 waiting" in text, text
    assert "bulk lane drained by:" in text and "normal mail goes first" in text


@override_settings(WAGTAIL_OWN_SMTP_BULK_RESERVE=120)
def test_a_reserve_out_of_range_is_a_system_check_error():
    from django.core import checks

    errors = [e for e in checks.run_checks() if e.id == "wagtail_own_smtp.E009"]
    assert errors and "from 0 to 100" in errors[0].msg


def test_a_wave_that_waits_for_the_bulk_share_is_expected_after_the_normal_mail(
    admin_client, site_a
):
    from wagtail_own_smtp import timeline
    from wagtail_own_smtp.sendstate import record_delivery

    smtp_settings = own_server(site_a, None, max_per_hour=20)
    record_delivery(site_a.pk, 18, timezone.now() - timedelta(minutes=10))
    wave = stored(site_a, "Invitation", lane="bulk")
    thanks = stored(site_a, "Thank you")
    expected = {pk: moment for pk, moment, _count in timeline.expected_sends(smtp_settings)}
    assert expected[thanks.pk] <= timezone.now() + timedelta(seconds=1)
    assert expected[wave.pk] >= timezone.now() + timedelta(minutes=49)
