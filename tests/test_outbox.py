"""The outbox: listing, filters, search, counts, forecast, its actions (retry a site's deferred
mail, delete old sent mail), and who may see and do what (per site). One message's page and its
buttons: test_outbox_message.py."""

import csv
import io
from datetime import timedelta
from html import unescape

import pytest
from django.core.mail import EmailMessage
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.delivery_helpers import own_server, real_backend
from tests.helpers_admin import make_site
from tests.helpers_outbox import (
    OUTBOX,
    GroupSitePermission,
    count_of,
    denied,
    editor_a,
    listed,
    outsider,
    per_site,
    site_a,
    site_b,
    stored,
)
from wagtail_own_smtp import forecast, limits, using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import OutboundMessage, SiteSendState

pytestmark = pytest.mark.django_db
__all__ = ["real_backend", "site_a", "site_b", "editor_a", "outsider"]


# -- listing, filters, search, counts ---------------------------------------------------------


@per_site
def test_listing_shows_the_messages_of_the_editors_sites_only(
    admin_client, editor_a, site_a, site_b
):
    mine = [stored(site_a, f"A{i}") for i in range(3)]
    theirs = stored(site_b, "Survey of the second site")

    assert set(listed(admin_client.get(OUTBOX))) == {m.pk for m in mine} | {theirs.pk}
    response = editor_a.get(OUTBOX)
    assert set(listed(response)) == {m.pk for m in mine}
    assert "Survey of the second site" not in response.content.decode()
    assert count_of(response, "queued") == 3
    # The site filter offers only the editor's sites.
    assert "Second site" not in response.content.decode()


def test_newest_first_and_paginated(admin_client, site_a):
    messages = [stored(site_a, f"M{i}") for i in range(55)]
    first_page = listed(admin_client.get(OUTBOX))
    assert first_page == [m.pk for m in reversed(messages)][:50]
    second_page = listed(admin_client.get(OUTBOX, {"p": 2}))
    assert second_page == [m.pk for m in reversed(messages)][50:]


def test_filters_by_site_status_and_date(admin_client, site_a, site_b):
    queued_a = stored(site_a, "queued A")
    deferred_a = stored(site_a, "deferred A", status="deferred")
    deferred_b = stored(site_b, "deferred B", status="deferred")
    old = stored(site_a, "old A")
    OutboundMessage.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))

    assert set(listed(admin_client.get(OUTBOX, {"site": site_a.pk}))) == {
        queued_a.pk,
        deferred_a.pk,
        old.pk,
    }
    assert set(listed(admin_client.get(OUTBOX, {"status": "deferred"}))) == {
        deferred_a.pk,
        deferred_b.pk,
    }
    both = admin_client.get(OUTBOX, {"site": site_a.pk, "status": ["deferred", "queued"]})
    assert set(listed(both)) == {queued_a.pk, deferred_a.pk, old.pk}
    today = timezone.localdate().isoformat()
    recent = admin_client.get(OUTBOX, {"created_at_from": today, "created_at_to": today})
    assert old.pk not in listed(recent) and queued_a.pk in listed(recent)
    # The results view (what Wagtail's filter drawer reloads) filters the same way.
    results = admin_client.get(OUTBOX + "results/", {"status": "deferred", "site": site_b.pk})
    assert listed(results) == [deferred_b.pk]
    assert count_of(results, "queued") == 0 and count_of(results, "deferred") == 1


def test_search_by_recipient_and_subject(admin_client, site_a):
    invitation = stored(site_a, "Your survey invitation", to=["anna@customer.example"])
    reminder = stored(site_a, "Reminder", to=["bob@other.example", "carla@customer.example"])
    umlaut = stored(site_a, "Umlaut", to=["jürgen@müller.example"])

    def found(term):
        return set(listed(admin_client.get(OUTBOX, {"q": term})))

    assert found("customer.example") == {invitation.pk, reminder.pk}
    assert found("CARLA@") == {reminder.pk}
    assert found("invitation") == {invitation.pk}
    assert found("jürgen") == {umlaut.pk}
    assert found("nobody") == set()


def test_counts_per_status_follow_site_and_search_but_not_the_status_filter(
    admin_client, site_a, site_b
):
    for status, n in (("queued", 3), ("deferred", 2), ("failed", 1), ("sent", 4)):
        for i in range(n):
            stored(site_a, f"{status} {i}", status=status)
    stored(site_b, "queued elsewhere")

    everything = admin_client.get(OUTBOX)
    assert count_of(everything, "queued") == 4
    only_a = admin_client.get(OUTBOX, {"site": site_a.pk, "status": "deferred"})
    assert [count_of(only_a, s) for s in ("queued", "deferred", "failed", "sent")] == [3, 2, 1, 4]
    assert len(listed(only_a)) == 2
    searched = admin_client.get(OUTBOX, {"q": "failed"})
    assert count_of(searched, "failed") == 1 and count_of(searched, "queued") == 0
    # Each count links to the listing filtered by that status, other filters kept.
    assert f'href="{OUTBOX}?site={site_a.pk}&amp;status=failed"' in only_a.content.decode()


def test_export_as_csv_follows_the_filters(admin_client, site_a, site_b):
    stored(site_a, "Invitation A", to=["anna@customer.example", "bob@customer.example"])
    stored(site_b, "Invitation B", status="deferred", last_error="451 4.3.0 Try later")
    response = admin_client.get(OUTBOX, {"export": "csv", "status": "deferred"})
    assert response["Content-Disposition"].startswith('attachment; filename="outbox-')
    rows = b"".join(response.streaming_content).decode().splitlines()
    assert rows[0] == (
        "ID,Site,Status,Subject,Recipients,Queued at,Attempts,Last attempt,Sent at,"
        "Last server reply,Lane"
    )
    assert len(rows) == 2 and "Invitation B,someone@example.org" in rows[1]
    assert "Deferred" in rows[1] and "451 4.3.0 Try later" in rows[1]


def test_csv_export_neutralises_formula_cells(admin_client, site_a):
    # Anyone who can get a message queued chooses its subject; the server chooses its reply.
    stored(
        site_a, '=HYPERLINK("http://evil.example","x")', last_error="@SUM(1+1)*cmd|' /C calc'!A0"
    )
    stored(site_a, "-2+3", status="deferred", last_error="\t=1+1")

    response = admin_client.get(OUTBOX, {"export": "csv"})

    text = b"".join(response.streaming_content).decode()
    rows = {row[0]: row for row in csv.reader(io.StringIO(text)) if row[0] != "ID"}
    cells = sorted((row[3], row[9]) for row in rows.values())
    assert cells == [
        ("'-2+3", "'\t=1+1"),
        ('\'=HYPERLINK("http://evil.example","x")', "'@SUM(1+1)*cmd|' /C calc'!A0"),
    ]
    # Other cells stay as they are.
    assert sorted((row[2], row[4]) for row in rows.values()) == [
        ("Deferred", "someone@example.org"),
        ("Queued", "someone@example.org"),
    ]


def test_listing_queries_do_not_grow_with_the_rows(admin_client, site_a, site_b):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    stored(site_a)
    stored(site_b)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(OUTBOX)
    for i in range(40):
        stored(site_a if i % 2 else site_b, f"more {i}", status="deferred" if i % 3 else "sent")
    with CaptureQueriesContext(connection) as many:
        admin_client.get(OUTBOX)
    assert len(many) == len(few)
    # The listing never loads the raw messages.
    listing_query = next(
        q["sql"] for q in many if '"wagtail_own_smtp_outboundmessage"."subject"' in q["sql"]
    )
    assert "raw_message" not in listing_query


# -- the forecast -----------------------------------------------------------------------------


def test_forecast_states_the_pace_and_when_the_queue_drains(admin_client, site_a):
    own_server(site_a, None, min_interval=30, max_per_hour=100)
    now = timezone.now()
    OutboundMessage.objects.bulk_create(
        OutboundMessage(
            site=site_a,
            subject=f"Invitation {i}",
            recipients=[f"p{i}@example.org"],
            raw_message=b"Subject: x\r\n\r\nx",
            next_attempt_at=now,
        )
        for i in range(312)
    )
    SiteSendState.objects.create(site=site_a, last_sent_at=now)

    html = admin_client.get(OUTBOX).content.decode()

    # The dispatcher's own figures: 100 recipients an hour, one every 30 s, from the last send.
    site_limits = limits.Limits(timedelta(seconds=30), 100, None)
    drained = limits.drain_eta([1] * 312, now, now, [], site_limits)
    assert drained - now > timedelta(hours=3)  # four hourly windows for 312
    sentence = (
        "312 messages waiting — at one message every 30 s and at most 100 recipients an hour, "
        "the last goes out " + forecast.moment(drained, now) + "."
    )
    assert sentence in html
    assert f'data-own-smtp-forecast data-site="{site_a.pk}" data-state="sending"' in html
    assert "Next send slot: within a minute." in html


def test_forecast_words():
    now = timezone.now()
    assert forecast.pace(limits.Limits()) == "with no limits"
    assert forecast.pace(limits.Limits(timedelta(seconds=2.5))) == "at one message every 2.5 s"
    assert (
        forecast.pace(limits.Limits(timedelta(0), 100, 2000))
        == "at most 100 recipients an hour and 2,000 a day"
    )
    assert forecast.moment(now + timedelta(seconds=30), now) == "within a minute"
    tomorrow = timezone.localtime(now) + timedelta(days=1)
    assert forecast.moment(tomorrow, now).endswith("tomorrow")


def test_forecast_says_why_mail_waits(admin_client, site_a, site_b):
    own_server(site_a, None, verified=False)
    stored(site_a)
    own_server(site_b, None, mode="platform")
    stored(site_b)
    html = unescape(admin_client.get(OUTBOX).content.decode())
    assert "1 message waiting until a server is verified." in html
    assert "sends via the platform's mail service now" in html


# -- the listing's actions, with real servers -----------------------------------------------


@pytest.mark.usefixtures("real_backend")
def test_retry_deferred_of_a_site_makes_them_all_due(admin_client, site_a, starttls_server):
    own_server(site_a, starttls_server)
    with using_site(site_a):
        for i in range(3):
            EmailMessage(f"D{i}", "Body", "surveys@platform.example", [f"p{i}@ex.org"]).send()
    OutboundMessage.objects.update(
        status="deferred", attempts=1, next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    response = admin_client.post(
        reverse("wagtail_own_smtp_admin:outbox_retry_site", args=[site_a.pk]), follow=True
    )
    assert "3 deferred messages are due now." in response.content.decode()
    assert dispatch(budget_seconds=5).sent == 3
    assert len(starttls_server.received) == 3


@per_site
def test_delete_old_sent_removes_only_old_sent_mail_of_permitted_sites(
    admin_client, editor_a, site_a, site_b
):
    now = timezone.now()
    stored(site_a, "old A", status="sent", sent_at=now - timedelta(days=40))
    recent_a = stored(site_a, "recent A", status="sent", sent_at=now - timedelta(days=10))
    failed_a = stored(site_a, "failed A", status="failed", last_attempt_at=now - timedelta(days=40))
    queued_a = stored(site_a, "queued A")
    old_b = stored(site_b, "old B", status="sent", sent_at=now - timedelta(days=40))
    url = reverse("wagtail_own_smtp_admin:outbox_delete_sent")

    page = editor_a.get(url).content.decode()
    assert 'name="older_than_days"' in page and "Second site" not in page
    # Another site is not a valid choice for this editor: nothing happens.
    refused = editor_a.post(url, {"site": site_b.pk, "older_than_days": 30})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert OutboundMessage.objects.filter(pk=old_b.pk).exists()

    response = editor_a.post(url, {"site": "", "older_than_days": 30}, follow=True)
    assert "Deleted 1 sent message older than 30 days." in response.content.decode()
    remaining = set(OutboundMessage.objects.values_list("pk", flat=True))
    assert remaining == {recent_a.pk, failed_a.pk, queued_a.pk, old_b.pk}

    admin_client.post(url, {"site": "", "older_than_days": 5})
    assert set(OutboundMessage.objects.values_list("pk", flat=True)) == {
        failed_a.pk,
        queued_a.pk,
    }


def test_delete_old_sent_form_errors_sit_next_to_the_field(admin_client, site_a):
    response = admin_client.post(
        reverse("wagtail_own_smtp_admin:outbox_delete_sent"), {"older_than_days": 0}
    )
    html = response.content.decode()
    field = html[html.index('data-contentpath="older_than_days"') :]
    errors = field[: field.index('name="older_than_days"')]
    assert "Ensure this value is greater than or equal to 1." in errors


# -- who may see and do what ------------------------------------------------------------------


@pytest.fixture
def clients(admin_client, editor_a, outsider):
    return {
        "superuser": admin_client,
        "editor of site A": editor_a,
        "editor without permission": outsider,
        "anonymous": Client(),
    }


def _outcome(response):
    if response.status_code == 302 and "/login/" in response.url:
        return "login"
    if denied(response):
        return "denied"
    return response.status_code


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("superuser", {"list A": 200, "list B": 200, "page A": 200, "page B": 200, "act B": 302}),
        (
            "editor of site A",
            {"list A": 200, "list B": 0, "page A": 200, "page B": "denied", "act B": "denied"},
        ),
        (
            "editor without permission",
            {"list A": "denied", "page A": "denied", "page B": "denied", "act B": "denied"},
        ),
        (
            "anonymous",
            {"list A": "login", "page A": "login", "page B": "login", "act B": "login"},
        ),
    ],
)
def test_permission_matrix(clients, site_a, site_b, who, expected):
    if who == "editor of site A" and GroupSitePermission is None:
        pytest.skip("per-site setting permissions came with Wagtail 8")
    client = clients[who]
    message_a = stored(site_a, "Message of A", status="deferred")
    message_b = stored(site_b, "Message of B", status="deferred")
    outcomes = {}
    listing = client.get(OUTBOX)
    outcomes["list A"] = _outcome(listing)
    if listing.status_code == 200:
        shown = listed(listing)
        assert message_a.pk in shown
        outcomes["list B"] = 200 if message_b.pk in shown else 0
    for key, message in (("page A", message_a), ("page B", message_b)):
        outcomes[key] = _outcome(
            client.get(reverse("wagtail_own_smtp_admin:outbox_message", args=[message.pk]))
        )
    actions = [
        reverse("wagtail_own_smtp_admin:outbox_retry", args=[message_b.pk]),
        reverse("wagtail_own_smtp_admin:outbox_cancel", args=[message_b.pk]),
        reverse("wagtail_own_smtp_admin:outbox_retry_site", args=[site_b.pk]),
    ]
    act = {_outcome(client.post(url)) for url in actions}
    assert len(act) == 1, act
    outcomes["act B"] = act.pop()
    assert outcomes == expected
    message_b.refresh_from_db()
    if who != "superuser":
        assert message_b.status == "deferred"  # nobody else touched site B's mail
    delete_page = _outcome(client.get(reverse("wagtail_own_smtp_admin:outbox_delete_sent")))
    assert delete_page == (200 if who in ("superuser", "editor of site A") else expected["page B"])


def test_reports_menu_offers_the_outbox_to_permitted_users_only(rf, editor_a, outsider):
    from django.contrib.auth import get_user_model
    from wagtail.admin.menu import reports_menu

    def offered(username):
        request = rf.get("/admin/")
        request.user = get_user_model().objects.get(username=username)
        return "own-smtp-outbox" in [
            item.name for item in reports_menu.menu_items_for_request(request)
        ]

    assert offered("editor-a")
    assert not offered("outsider")


@pytest.mark.django_db
def test_forecasts_of_many_sites_read_the_queue_at_once(
    starttls_server, django_assert_max_num_queries
):
    """The outbox forecasts ten sites: their counts, due times and send states are read for all
    of them at once, so the page costs the same few queries however many sites it shows."""
    from wagtail.models import Site

    sites = [make_site()] + [
        make_site(f"f{n}.example", default=False, name=f"F{n}") for n in range(1, 8)
    ]
    now = timezone.now()
    for n, site in enumerate(sites):
        own_server(site, starttls_server, min_interval="10")
        OutboundMessage.objects.bulk_create(
            OutboundMessage(
                site=site, recipients=[f"p{i}@example.org"], raw_message=b"x", next_attempt_at=now
            )
            for i in range(n + 1)
        )
    chosen = list(Site.objects.filter(pk__in=[s.pk for s in sites]).order_by("pk"))
    # settings, counts, due times, send states: none per site (no caps set)
    with django_assert_max_num_queries(4):
        shown = forecast.forecasts(chosen, now)
    assert [f.waiting for f in shown] == list(range(1, 9))
    # eight messages ten seconds apart: the last goes 70 s from now
    assert shown[-1].drained_at == now + timedelta(seconds=70)
    assert all(f.state == "sending" for f in shown)
