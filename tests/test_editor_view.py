"""What an editor sees: no template syntax on any page, the app's own words in German, hints in
the viewer's language, one expected time per message, and the picture of the sending."""

from datetime import datetime, timedelta
from html.parser import HTMLParser

import pytest
from bs4 import BeautifulSoup
from django.conf import settings as django_settings
from django.contrib.messages import constants
from django.test import Client
from django.urls import reverse
from django.utils import formats, timezone, translation

from tests.conftest import SMTP_USER
from tests.delivery_helpers import own_server, real_backend
from tests.helpers_admin import (
    action_url,
    edit_url,
    link_token,
    make_site,
    messages_of,
    save_settings,
    verify_url,
)
from tests.helpers_outbox import stored
from tests.test_locale import PO_FILE, _editor, read_po
from wagtail_own_smtp import chart, forecast, timeline
from wagtail_own_smtp.models import OutboundMessage, SendRecord, SiteSendState, SmtpSettings
from wagtail_own_smtp.views import outbox_table

pytestmark = pytest.mark.django_db
__all__ = ["real_backend"]
DASHBOARD = reverse("wagtailadmin_home")
OUTBOX = reverse("wagtail_own_smtp_admin:outbox")


class _VisibleText(HTMLParser):
    """The text a reader sees: everything outside script, style and template elements."""

    HIDDEN = {"script", "style", "template"}

    def __init__(self):
        super().__init__()
        self.depth, self.parts = 0, []

    def handle_starttag(self, tag, attrs):
        self.depth += tag in self.HIDDEN

    def handle_endtag(self, tag):
        self.depth -= tag in self.HIDDEN

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)


def soup(content):
    return BeautifulSoup(content, "html.parser")


def visible_text(response):
    parser = _VisibleText()
    parser.feed(response.content.decode())
    return " ".join(" ".join(parser.parts).split())


def assert_no_template_syntax(response, page):
    assert response.status_code in (200, 404, 410), (page, response.status_code)
    text = visible_text(response)
    for syntax in ("{#", "#}", "{%", "%}", "{{", "}}"):
        assert syntax not in text, f"{page} shows {syntax!r}: …{text[text.find(syntax) - 80 :]}"


@pytest.fixture
def site():
    return make_site()


# -- 1. no template text on any page ------------------------------------------------------------


def test_no_page_the_app_renders_shows_template_syntax(admin_client, client, site, starttls_server):
    pages = {}
    pages["dashboard before the first save"] = admin_client.get(DASHBOARD)
    pages["settings, never saved"] = admin_client.get(edit_url(site))
    pages["settings saved: confirmation sent"] = save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[-1])
    pages["public confirm page"] = client.get(verify_url(token))
    pages["public confirmed page"] = client.post(verify_url(token), follow=True)
    pages["public used link page"] = client.get(verify_url(token))
    pages["public unknown link page"] = client.get(verify_url("x" * 43))
    pages["connection test result"] = admin_client.post(
        action_url("test_connection", site), follow=True
    )
    pages["settings, verified"] = admin_client.get(edit_url(site))
    message = stored(site)
    stored(site, status="sent", sent_at=timezone.now())
    pages["outbox"] = admin_client.get(OUTBOX)
    pages["outbox results"] = admin_client.get(reverse("wagtail_own_smtp_admin:outbox_results"))
    pages["message page"] = admin_client.get(
        reverse("wagtail_own_smtp_admin:outbox_message", args=[message.pk])
    )
    pages["delete old sent"] = admin_client.get(
        reverse("wagtail_own_smtp_admin:outbox_delete_sent")
    )
    pages["dashboard"] = admin_client.get(DASHBOARD)
    pages["settings, failed"] = save_settings(
        admin_client, site, starttls_server, password="wrong-password"
    )
    pages["resend result"] = admin_client.post(action_url("resend", site), follow=True)
    with translation.override("de"):
        pages["public confirm page, German"] = client.get(verify_url("y" * 43))
    for page, response in pages.items():
        assert_no_template_syntax(response, page)
    assert "Confirm" in visible_text(pages["public confirm page"])


# -- 2. the app's words win over Wagtail's ------------------------------------------------------


def test_the_app_comes_after_wagtail_as_the_readme_wires_it():
    apps = django_settings.INSTALLED_APPS
    assert apps.index("wagtail_own_smtp") > apps.index("wagtail.admin")
    assert apps.index("wagtail_own_smtp") > apps.index("wagtail")


def test_every_german_word_of_the_app_is_the_apps_own_not_wagtails():
    """With the app after Wagtail, Django's merged catalogue gives Wagtail's translation of a
    shared msgid; every entry of the app's catalogue must come out as the app wrote it."""
    wrong = []
    with translation.override("de"):
        for entry in read_po(PO_FILE):
            if entry["obsolete"] or entry["msgid_plural"] is not None:
                continue
            if entry.get("msgctxt") is not None:
                shown = translation.pgettext(entry["msgctxt"], entry["msgid"])
            else:
                shown = translation.gettext(entry["msgid"])
            if shown != entry["msgstr"][0]:
                wrong.append((entry["msgid"], shown, entry["msgstr"][0]))
    assert wrong == []


def test_the_german_admin_shows_abgebrochen_website_and_keine(django_user_model, site):
    german = _editor(django_user_model, "redakteurin", "de")
    own_server(site, None, security="none")
    stored(site, status="cancelled")

    settings_page = soup(german.get(edit_url(site)).content)
    [security] = settings_page.select('[name="security"] option[value="none"]')
    assert security.get_text().strip() == "Keine"  # Wagtail's catalogue says "Nichts"

    listing = soup(german.get(OUTBOX).content)
    headers = [" ".join(th.get_text().split()) for th in listing.select("table th")]
    assert "Website" in headers and "Seite" not in headers
    status = listing.select("[data-own-smtp-status-tag]")[0].get_text().strip()
    assert status == "Abgebrochen"
    filters = visible_text(german.get(OUTBOX))
    assert "Gelöscht" not in filters


def test_wagtails_catalogue_would_have_won_without_the_context():
    """The defect this guards against is real: Wagtail's German for the bare words differs."""
    with translation.override("de"):
        assert translation.gettext("Cancelled") == "Gelöscht"
        assert translation.pgettext("own smtp message status", "Cancelled") == "Abgebrochen"


# -- 3. a hint follows the viewer's language ----------------------------------------------------


def test_a_failures_hint_is_shown_in_each_viewers_language(
    django_user_model, site, starttls_server
):
    german = _editor(django_user_model, "redakteurin", "de")
    english = _editor(django_user_model, "editor", "en")
    save_settings(german, site, starttls_server, password="wrong-password")
    assert SmtpSettings.objects.get(site=site).verification_status == "failed"

    def hint(client):
        page = soup(client.get(edit_url(site)).content)
        return page.select("[data-own-smtp-status] [data-own-smtp-hint]")[0].get_text()

    assert hint(english) == "The server rejected the username or password."
    assert hint(german) == "Der Server hat Benutzername oder Passwort abgelehnt."


# -- 4. the red confirmation banner has no "Go to the first error" target -----------------------


def test_the_red_confirmation_banner_has_nothing_to_go_to(admin_client, site, starttls_server):
    response = save_settings(admin_client, site, starttls_server)

    [text] = [text for level, text in messages_of(response) if level == constants.ERROR]
    # red (error level), as the help page and DESIGN.md want
    assert text.startswith("A test message with a confirmation link was sent to")
    page = soup(response.content)
    # What Wagtail's button counts (data-w-count-find-value): a visible critical help or error.
    targets = page.select(".error-message, .help-critical")
    assert [element for element in targets if element.get("hidden") is None] == []


def test_a_failures_reply_and_hint_are_separate_lines_of_the_banner(
    admin_client, site, starttls_server
):
    response = save_settings(admin_client, site, starttls_server, password="wrong-password")

    page = soup(response.content)
    [banner] = page.select(".messages li.error")
    [hint] = banner.select("[data-own-smtp-hint]")
    assert hint.get_text() == "The server rejected the username or password."
    reply = banner.get_text().replace(hint.get_text(), "")
    assert "535 5.7.8 Authentication credentials invalid" in reply
    assert "w-block" in hint.get("class")


# -- 5. one expected time per message -----------------------------------------------------------


def _held_back_by_the_hourly_cap(site):
    """Cap 2 an hour, reached 20 minutes ago; three one-recipient messages due now."""
    own_server(site, None, max_per_hour=2)
    sent_at = timezone.now() - timedelta(minutes=20)
    SendRecord.objects.create(site=site, sent_at=sent_at, recipients=2)
    SiteSendState.objects.update_or_create(site=site, defaults={"last_sent_at": sent_at})
    messages = [stored(site, subject=f"Invitation {n}") for n in range(3)]
    return sent_at, messages


def test_held_back_rows_show_the_time_the_forecast_gives(admin_client, site):
    sent_at, messages = _held_back_by_the_hourly_cap(site)

    html = soup(admin_client.get(OUTBOX).content)
    rows = {
        int(row.get("data-own-smtp-message")): " ".join(row.select("td")[-1].get_text().split())
        for row in html.select("tr[data-own-smtp-message]")
    }
    outlook = forecast.site_forecast(SmtpSettings.objects.get(site=site))

    def shown(moment):
        return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")

    # the first two when the hour of the earlier sends is over, the last an hour later
    assert rows[messages[0].pk] == shown(outlook.next_slot) == shown(sent_at + timedelta(hours=1))
    assert rows[messages[1].pk] == shown(sent_at + timedelta(hours=1))
    assert rows[messages[2].pk] == shown(outlook.drained_at) == shown(sent_at + timedelta(hours=2))
    # and the forecast above says that time in words
    assert formats.time_format(timezone.localtime(outlook.drained_at), "TIME_FORMAT") in (
        outlook.text
    )
    # the message page says the same
    page = admin_client.get(reverse("wagtail_own_smtp_admin:outbox_message", args=[messages[2].pk]))
    assert shown(outlook.drained_at) in visible_text(page)


def test_a_page_shows_one_date_format(admin_client, site):
    _held_back_by_the_hourly_cap(site)
    message = OutboundMessage.objects.first()
    text = visible_text(admin_client.get(OUTBOX))
    short = formats.date_format(timezone.localtime(message.created_at), "SHORT_DATE_FORMAT")
    assert short not in text
    assert formats.date_format(timezone.localtime(message.created_at), "DATETIME_FORMAT") in text


@pytest.mark.usefixtures("real_backend")
def test_a_sent_messages_page_shows_the_verified_sender_it_went_with(
    admin_client, site, starttls_server
):
    from django.core.mail import EmailMessage

    from wagtail_own_smtp import using_site
    from wagtail_own_smtp.dispatch import dispatch

    own_server(site, starttls_server)
    with using_site(site):
        EmailMessage(
            "Survey", "Body", "Survey Team <surveys@platform.example>", ["p@example.org"]
        ).send()
    dispatch(budget_seconds=3)
    [received] = starttls_server.wait_for(1)
    message = OutboundMessage.objects.get()
    assert message.status == "sent"

    page = soup(
        admin_client.get(
            reverse("wagtail_own_smtp_admin:outbox_message", args=[message.pk])
        ).content
    )
    shown = page.select('[data-own-smtp-field="envelope-from"]')[0].get_text()
    assert shown == received.mail_from == SMTP_USER


# -- 6. smaller things --------------------------------------------------------------------------


def test_the_help_under_one_button_speaks_of_one(admin_client, site, starttls_server):
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[-1])
    admin_client.post(verify_url(token))

    text = visible_text(admin_client.get(edit_url(site)))
    assert "Send the confirmation again" not in text
    assert "The buttons use" not in text
    assert "The connection test uses the saved settings" in text


def test_after_a_failed_change_the_panel_says_until_when_the_old_server_sends(
    admin_client, site, starttls_server
):
    save_settings(admin_client, site, starttls_server)
    admin_client.post(verify_url(link_token(starttls_server.wait_for(1)[-1])))
    response = save_settings(admin_client, site, starttls_server, password="wrong-password")

    text = visible_text(response)
    assert "Until then" not in text
    assert (
        "Until new server settings are saved and confirmed by link, mail is still sent through "
        f"the verified server localhost:{starttls_server.port} as {SMTP_USER}." in text
    )


def test_the_dashboard_panel_is_there_before_the_first_save(admin_client, site):
    page = soup(admin_client.get(DASHBOARD).content)
    [empty] = page.select("[data-own-smtp-dashboard-empty]")
    assert "No site sends its mail through its own SMTP server yet." in empty.get_text()
    link = empty.select("a")[0].get("href")
    assert Client().get(link).status_code == 302  # a real address (login first)
    assert admin_client.get(link, follow=True).redirect_chain[-1][0] == edit_url(site)


# -- 7. the picture of the sending --------------------------------------------------------------


def test_the_chart_counts_recipients_per_hour_against_the_cap():
    tz = timezone.get_fixed_timezone(60)
    now = datetime(2026, 12, 2, 10, 30, tzinfo=tz)
    records = [
        (datetime(2026, 12, 1, 11, 5, tzinfo=tz), 4),  # 23 hours before this hour: the first bar
        (datetime(2026, 12, 2, 9, 10, tzinfo=tz), 30),
        (datetime(2026, 12, 2, 9, 50, tzinfo=tz), 20),
        (datetime(2026, 12, 2, 10, 1, tzinfo=tz), 50),
        (datetime(2026, 12, 1, 10, 59, tzinfo=tz), 7),  # before the chart: left out
    ]
    expected = [
        (datetime(2026, 12, 2, 10, 40, tzinfo=tz), 1),
        (datetime(2026, 12, 2, 11, 1, tzinfo=tz), 50),
        (datetime(2026, 12, 2, 12, 1, tzinfo=tz), 25),
        (datetime(2026, 12, 3, 2, 0, tzinfo=tz), 9),  # after the last bar
    ]
    result = chart.sending_chart(records, expected, now, cap=50)

    assert len(result.bars) == 36
    assert result.bars[0].start == datetime(2026, 12, 1, 11, 0, tzinfo=tz)
    by_hour = {bar.start.strftime("%d %H"): (bar.sent, bar.expected) for bar in result.bars}
    assert by_hour["01 11"] == (4, 0)
    assert by_hour["02 09"] == (50, 0)
    assert by_hour["02 10"] == (50, 1)
    assert by_hour["02 11"] == (0, 50)
    assert by_hour["02 12"] == (0, 25)
    assert result.later == 9
    assert (result.sent_total, result.expected_total) == (104, 85)
    assert result.cap_reached
    # geometry: the cap line at 50 of a 100 scale, a full-cap bar reaches it
    assert result.scale_max == 100
    nine = next(bar for bar in result.bars if bar.start.hour == 9 and bar.start.day == 2)
    assert nine.sent_y == result.cap_y
    assert result.plot_left < result.now_x < result.plot_right


def test_the_outbox_and_the_settings_panel_draw_the_chart(admin_client, site):
    sent_at, _messages = _held_back_by_the_hourly_cap(site)

    for url in (OUTBOX, edit_url(site)):
        page = soup(admin_client.get(url).content)
        [figure] = page.select(f'[data-own-smtp-chart][data-site="{site.pk}"]')
        assert (
            figure.select("svg line[data-own-smtp-chart-cap]")[0].get("data-own-smtp-chart-cap")
            == "2"
        )
        sent = [
            int(r.get("data-own-smtp-chart-sent"))
            for r in figure.select("rect[data-own-smtp-chart-sent]")
        ]
        expected = [
            int(r.get("data-own-smtp-chart-expected"))
            for r in figure.select("rect[data-own-smtp-chart-expected]")
        ]
        assert sum(sent) == 2 and sum(expected) == 3
        # the text equivalent says the same for screen readers
        table = figure.select("table[data-own-smtp-chart-table]")[0]
        assert "w-sr-only" in table.get("class")
        cells = [[td.get_text() for td in tr.select("td")] for tr in table.select("tbody tr")]
        assert sum(int(sent) for sent, _expected in cells) == 2
        assert sum(int(expected) for _sent, expected in cells) == 3
        assert "var(--w-color-" in figure.select("svg style")[0].get_text()


def test_the_expected_times_walk_the_queue_in_sending_order(site):
    sent_at, messages = _held_back_by_the_hourly_cap(site)
    times = timeline.expected_times([site.pk])
    assert [times[m.pk] for m in messages] == [
        sent_at + timedelta(hours=1),
        sent_at + timedelta(hours=1),
        sent_at + timedelta(hours=2),
    ]
    SmtpSettings.objects.filter(site=site).update(sending_paused=True)
    assert timeline.expected_times([site.pk]) == {}
    assert outbox_table.sent_or_expected(OutboundMessage.objects.get(pk=messages[0].pk)) == ""
