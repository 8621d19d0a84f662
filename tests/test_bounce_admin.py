"""Bounces and suppressed addresses in the admin: per site, the report readable, a lift logged."""

import pytest
from wagtail.models import ModelLogEntry

from tests.helpers_outbox import denied, editor_client, per_site, site_a, site_b, stored
from wagtail_own_smtp import bounces
from wagtail_own_smtp.models import Bounce, Suppression

pytestmark = pytest.mark.django_db
__all__ = ["site_a", "site_b"]

BOUNCES = "/admin/own-smtp/bounces/"
SUPPRESSED = "/admin/own-smtp/suppressed/"


def bounced(site, address, kind="hard", report="Final-Recipient: rfc822; <b>x</b>"):
    message = stored(site, "Invitation", to=(address,), status="sent")
    bounce = Bounce.objects.create(
        site=site,
        message=message,
        recipient=address,
        kind=kind,
        status_code="5.1.1",
        diagnostic="550 5.1.1 <script>alert(1)</script> User unknown",
        report=report,
        report_key=f"k-{address}",
    )
    suppression = Suppression.objects.create(site=site, address=address, reason=kind, bounce=bounce)
    return bounce, suppression


@per_site
def test_an_editor_sees_the_bounces_and_suppressions_of_their_sites_only(
    django_user_model, site_a, site_b
):
    editor = editor_client(django_user_model, "editor-a", [site_a])
    mine, _ = bounced(site_a, "gone@example.org")
    theirs, their_suppression = bounced(site_b, "secret@example.net")

    listing = editor.get(BOUNCES).content.decode()
    assert "gone@example.org" in listing and "secret@example.net" not in listing
    assert "550 5.1.1 &lt;script&gt;" in listing and "<script>alert" not in listing
    assert "secret@example.net" not in editor.get(SUPPRESSED).content.decode()

    page = editor.get(f"{BOUNCES}{mine.pk}/").content.decode()
    assert "Final-Recipient: rfc822; &lt;b&gt;x&lt;/b&gt;" in page
    assert denied(editor.get(f"{BOUNCES}{theirs.pk}/"))
    assert denied(editor.post(f"{SUPPRESSED}{their_suppression.pk}/lift/"))
    assert Suppression.objects.filter(pk=their_suppression.pk).exists()


def test_filters_by_kind_and_search_by_address(admin_client, site_a):
    bounced(site_a, "gone@example.org", kind="hard")
    bounced(site_a, "full@example.org", kind="soft")

    hard = admin_client.get(BOUNCES, {"kind": "hard"}).content.decode()
    found = admin_client.get(SUPPRESSED, {"q": "FULL@"}).content.decode()

    assert "gone@example.org" in hard and "full@example.org" not in hard
    assert "full@example.org" in found and "gone@example.org" not in found


def test_lifting_a_suppression_asks_first_then_mails_the_address_again_and_is_logged(
    admin_client, site_a, admin_user
):
    _bounce, suppression = bounced(site_a, "back@example.org")
    url = f"{SUPPRESSED}{suppression.pk}/lift/"

    question = admin_client.get(url).content.decode()
    assert "back@example.org" in question and Suppression.objects.filter(pk=suppression.pk).exists()

    response = admin_client.post(url, follow=True)

    assert "back@example.org is mailed again" in response.content.decode()
    assert bounces.suppressed(site_a.pk, ["back@example.org"]) == set()
    entry = ModelLogEntry.objects.get(action="wagtail_own_smtp.lift_suppression")
    assert (entry.user_id, entry.label) == (admin_user.pk, "back@example.org")


def test_the_german_admin_speaks_german(admin_client, site_a, admin_user):
    from wagtail.users.models import UserProfile

    UserProfile.get_for_user(admin_user).__class__.objects.filter(user=admin_user).update(
        preferred_language="de"
    )
    bounced(site_a, "gone@example.org")

    listing = admin_client.get(BOUNCES).content.decode()
    suppressed = admin_client.get(SUPPRESSED).content.decode()

    assert "Dauerhaft unzustellbar" in listing and "Statuscode" in listing
    assert "Gesperrte Adressen" in suppressed


def test_the_outbox_marks_a_bounced_message_and_its_page_shows_the_diagnostic(admin_client, site_a):
    bounce, _suppression = bounced(site_a, "gone@example.org")
    fine = stored(site_a, "Fine", to=("fine@example.org",), status="sent")

    listing = admin_client.get("/admin/own-smtp/outbox/").content.decode()
    page = admin_client.get(f"/admin/own-smtp/outbox/{bounce.message_id}/").content.decode()

    rows = listing.split("data-own-smtp-message=")
    [bounced_row] = [row for row in rows if row.startswith(f'"{bounce.message_id}"')]
    [fine_row] = [row for row in rows if row.startswith(f'"{fine.pk}"')]
    assert "data-own-smtp-bounced" in bounced_row and "data-own-smtp-bounced" not in fine_row
    assert 'data-own-smtp-bounce="gone@example.org"' in page
    assert "550 5.1.1 &lt;script&gt;alert(1)&lt;/script&gt; User unknown" in page


def test_the_dashboard_shows_the_bounce_rate_of_a_site_that_reads_bounces(admin_client, site_a):
    from django.utils import timezone

    from tests.delivery_helpers import own_server

    own_server(site_a, None, bounce_processing=True)
    bounced(site_a, "gone@example.org")
    stored(site_a, "Fine", to=("fine@example.org",), status="sent")
    from wagtail_own_smtp.models import OutboundMessage

    OutboundMessage.objects.filter(site=site_a).update(sent_at=timezone.now())

    html = admin_client.get("/admin/").content.decode()

    cell = html[html.index("data-own-smtp-bounce-rate") :]
    assert "1 of 2" in cell[: cell.index("</td>")]


@pytest.mark.parametrize(
    "fields, field, words",
    [
        ({"imap_host": ""}, "imap_host", "Required to read bounces."),
        ({"imap_host": "not a host!"}, "imap_host", "Enter a host name such as imap.example.org"),
        ({"imap_folder": "Gelöschte Elemente"}, "imap_folder", "plain ASCII letters"),
        ({"imap_move_to": "Bounces\x07"}, "imap_move_to", "plain ASCII letters"),
    ],
)
def test_the_mailbox_fields_get_a_clear_error_next_to_them(
    admin_client, site_a, fields, field, words
):
    from tests.helpers_admin import save_settings

    data = {"bounce_processing": "on", "imap_host": "localhost", **fields}
    html = save_settings(
        admin_client, site_a, None, delivery_mode="platform", **data
    ).content.decode()

    block = html[html.index(f'data-contentpath="{field}"') :]
    assert words in block[: block.index("</section>") if "</section>" in block else 3000]
