"""Status at a glance: the dashboard panel, and the outbox summary on the settings screen."""

import re
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse

from tests.delivery_helpers import own_server
from tests.helpers_admin import edit_url
from tests.helpers_outbox import editor_client, per_site, site_a, site_b, stored
from wagtail_own_smtp.models import SmtpSettings

pytestmark = pytest.mark.django_db
__all__ = ["site_a", "site_b"]

DASHBOARD = reverse("wagtailadmin_home")


def panel_rows(response):
    """site pk -> the panel's row HTML, or None when the panel is not there."""
    html = response.content.decode()
    if "data-own-smtp-dashboard" not in html:
        return None
    table = html[html.index("data-own-smtp-dashboard") :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<tr data-own-smtp-site="(\d+)".*?</tr>', table, flags=re.S)
    return {
        int(pk): re.search(rf'data-own-smtp-site="{pk}".*?</tr>', table, re.S).group(0)
        for pk in rows
    }


def cell(row, marker):
    match = re.search(rf"<td {marker}[^>]*>(.*?)</td>", row, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


@pytest.fixture
def two_sites_in_use(site_a, site_b):
    own_server(site_a, None, min_interval=30)
    for status, n in (("queued", 3), ("deferred", 2), ("failed", 1), ("sent", 5)):
        for _i in range(n):
            stored(site_a, status=status)
    own_server(site_b, None)
    # The dispatcher paused site B after its server refused the login.
    SmtpSettings.objects.filter(site=site_b).update(
        sending_paused=True, verification_status="failed", last_error="535 5.7.8 Bad login"
    )
    stored(site_b)


def test_superuser_sees_every_site_in_use(admin_client, two_sites_in_use, site_a, site_b):
    rows = panel_rows(admin_client.get(DASHBOARD))
    assert set(rows) == {site_a.pk, site_b.pk}

    a = rows[site_a.pk]
    assert 'data-own-smtp-mode="own"' in a
    assert re.search(r'data-own-smtp-verification="verified".*?w-text-positive-100', a, re.S)
    assert [cell(a, f'data-own-smtp-count="{s}"') for s in ("queued", "deferred", "failed")] == [
        "3",
        "2",
        "1",
    ]
    assert cell(a, "data-own-smtp-forecast").startswith(
        "5 messages waiting — at one message every 30 s, the last goes out"
    )

    b = rows[site_b.pk]
    assert re.search(r'data-own-smtp-verification="failed".*?w-text-critical-200', b, re.S)
    assert "sending paused" in cell(b, 'data-own-smtp-verification="failed"')
    assert "sending is paused" in cell(b, "data-own-smtp-forecast")
    # Each count leads to the outbox, filtered.
    assert f"/admin/own-smtp/outbox/?site={site_a.pk}&amp;status=deferred" in a


@per_site
def test_an_editor_sees_only_their_sites(django_user_model, two_sites_in_use, site_a, site_b):
    editor = editor_client(django_user_model, "editor-a", [site_a])
    rows = panel_rows(editor.get(DASHBOARD))
    assert set(rows) == {site_a.pk}


def test_no_panel_without_the_permission(django_user_model, two_sites_in_use):
    outsider = editor_client(django_user_model, "outsider")
    response = outsider.get(DASHBOARD)
    assert response.status_code == 200
    assert panel_rows(response) is None
    assert "/admin/own-smtp/outbox/" not in response.content.decode()
    assert Client().get(DASHBOARD).status_code == 302  # anonymous: to the login


def test_before_the_first_save_the_panel_points_to_the_setting(admin_client, site_a):
    response = admin_client.get(DASHBOARD)
    assert "data-own-smtp-site=" not in response.text  # no rows, but the panel and its way in
    assert "No site sends its mail through its own SMTP server yet." in response.text


def test_settings_screen_shows_the_sites_outbox_in_one_sentence(admin_client, site_a):
    own_server(site_a, None, max_per_day=2000)
    for _i in range(4):
        stored(site_a)
    html = unescape(admin_client.get(edit_url(site_a)).content.decode())
    summary = html[html.index("data-own-smtp-outbox-summary") :]
    assert "4 messages waiting — at most 2,000 recipients a day, the last goes out" in summary
    assert f'href="/admin/own-smtp/outbox/?site={site_a.pk}"' in summary
    # Inside the settings form: no nested form.
    assert "<form" not in summary[: summary.index("data-own-smtp-outbox-link")]
