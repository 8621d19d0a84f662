"""Bounces end to end with real mail servers on loopback: the site sends a survey wave through
Debian's Postfix, Postfix returns real DSNs for the addresses that do not exist into the sender's
Dovecot mailbox, and one reading of that mailbox over IMAPS records exactly those, suppresses
them for the next wave, and leaves every other message unread and in place."""

import imaplib
import smtplib
import ssl
from pathlib import Path

import pytest
from django.core.mail import EmailMessage

from tests.conftest import MTA_SURVEYS, MTA_USERS
from tests.delivery_helpers import make_site, own_server, real_backend, statuses
from wagtail_own_smtp import bounces, using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import Bounce, OutboundMessage, Suppression

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("real_backend")]
__all__ = ["real_backend"]

SAMPLES = Path(__file__).parent / "bounce_samples"
DEAD = ["nobody1@remote.test", "nobody2@remote.test", "nobody3@remote.test"]
ALIVE = ["reader@remote.test", "colleague@example.test", "reader@example.test"]


def imap(dovecot, user=MTA_SURVEYS):
    client = imaplib.IMAP4_SSL(
        "localhost",
        dovecot.imaps_port,
        ssl_context=ssl.create_default_context(cafile=dovecot.ca_file),
    )
    client.authenticate("PLAIN", lambda _: f"\0{user}\0{MTA_USERS[user]}".encode())
    return client


def empty_mailbox(dovecot):
    client = imap(dovecot)
    _status, data = client.select("INBOX")
    if int(data[0]):
        client.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
        client.expunge()
    if client.list('""', '"Reports"')[1] == [None]:
        client.create('"Reports"')
    client.logout()


def inbox(dovecot):
    """(subject, seen) of every message in the sender's INBOX."""
    client = imap(dovecot)
    client.select("INBOX", readonly=True)
    _status, data = client.uid("SEARCH", "ALL")
    found = []
    for uid in data[0].split():
        _status, parts = client.uid("FETCH", uid, "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        flags, header = parts[0][0].decode(), parts[0][1].decode()
        found.append((header.strip().removeprefix("Subject: "), r"\Seen" in flags))
    client.logout()
    return found


def deliver(postfix, raw, to=MTA_SURVEYS):
    """Into the sender's mailbox through Postfix's port-25 listener, as other servers would."""
    with smtplib.SMTP("localhost", postfix.smtp_port, timeout=10) as client:
        client.sendmail("someone@remote.test", [to], raw)


def wave(site, subject):
    with using_site(site):
        for index, address in enumerate(ALIVE * 6):
            if index == 17:
                break
            EmailMessage(f"{subject} {index}", "Please take part.", "s@p.example", [address]).send()
        for address in DEAD:
            EmailMessage(
                f"{subject} to {address}", "Please take part.", "s@p.example", [address]
            ).send()


@pytest.fixture
def site_on_postfix(postfix, dovecot):
    empty_mailbox(dovecot)
    site = make_site("surveys.example")
    smtp_settings = own_server(
        site,
        None,
        port=postfix.submission_port,
        security="starttls",
        from_email=MTA_SURVEYS,
        username=MTA_SURVEYS,
        bounce_processing=True,
        imap_host="localhost",
        imap_port=dovecot.imaps_port,
        imap_security="ssl",
        imap_move_to="Reports",
    )
    smtp_settings.set_password(MTA_USERS[MTA_SURVEYS])
    smtp_settings.verified_password_ciphertext = smtp_settings.password_ciphertext
    smtp_settings.save()
    return site, smtp_settings


def test_a_wave_with_three_dead_addresses_suppresses_exactly_those_for_the_next_wave(
    site_on_postfix, postfix, dovecot
):
    site, smtp_settings = site_on_postfix
    other = make_site("other.example", default=False)
    own_server(other, None, port=postfix.submission_port, security="starttls")
    forged_target = OutboundMessage.objects.create(
        site=other,
        subject="theirs",
        recipients=["reader@example.test"],
        raw_message=b"x",
        next_attempt_at="2026-01-01T00:00:00Z",
        status="sent",
    )

    wave(site, "Invitation")
    dispatch(budget_seconds=30)
    assert statuses(site=site) == {"sent": 20}
    dovecot.wait_for_messages(MTA_SURVEYS, count=3, timeout=30)

    # Beside the DSNs: an auto-reply, a vacation notice, an ordinary reply, and a forged report
    # naming the other site's message.
    for name in ("exchange_automatic_reply.eml", "vacation_notice.eml", "ordinary_reply.eml"):
        deliver(postfix, (SAMPLES / name).read_bytes())
    forged = (
        (SAMPLES / "postfix_unknown_user.eml")
        .read_bytes()
        .replace(
            b"Subject: Your survey invitation\n",
            f"Subject: Your survey invitation\n{bounces.REFERENCE_HEADER}: "
            f"{bounces.reference(other.pk, forged_target.pk)}\n".encode(),
        )
        .replace(b"nobody@example.org", b"reader@example.test")
    )
    deliver(postfix, forged)
    dovecot.wait_for_messages(MTA_SURVEYS, count=7, timeout=30)

    reading = bounces.read_mailbox(smtp_settings)

    assert (reading.read, reading.failure) == (7, "")
    recorded = Bounce.objects.filter(site=site).order_by("recipient")
    assert [b.recipient for b in recorded] == DEAD
    assert {b.kind for b in recorded} == {"hard"} and {b.status_code for b in recorded} == {"5.1.1"}
    assert all("unknown" in b.diagnostic.lower() for b in recorded), [
        b.diagnostic for b in recorded
    ]
    assert sorted(Suppression.objects.filter(site=site).values_list("address", flat=True)) == DEAD
    assert not Bounce.objects.filter(site=other).exists()
    # The reports moved to their folder; everything else unread where it was.
    assert sorted(inbox(dovecot)) == sorted(
        [
            ("Automatic reply: Your survey invitation", False),
            ("Abwesenheitsnotiz: Your survey invitation", False),
            ("Re: Your survey invitation", False),
            ("Undelivered Mail Returned to Sender", False),
        ]
    )

    # Read again: nothing new, nothing counted twice.
    assert bounces.read_mailbox(smtp_settings).read == 0
    assert Bounce.objects.count() == 3

    wave(site, "Reminder")
    dispatch(budget_seconds=30)
    reminders = OutboundMessage.objects.filter(site=site, subject__startswith="Reminder")
    assert {m.status for m in reminders if m.recipients[0] in DEAD} == {"failed"}
    assert {m.status for m in reminders if m.recipients[0] not in DEAD} == {"sent"}
    assert reminders.filter(status="sent").count() == 17


def test_the_mailbox_button_opens_the_folder_read_only_and_shows_a_failure_without_the_password(
    site_on_postfix, dovecot, admin_client
):
    site, smtp_settings = site_on_postfix
    url = f"/admin/own-smtp/{site.pk}/test-mailbox/"
    deliver_count = len(inbox(dovecot))

    works = admin_client.post(url, follow=True).content.decode()
    smtp_settings.set_password("a-wrong-Pässword")
    smtp_settings.save()
    fails = admin_client.post(url, follow=True).content.decode()

    assert f"INBOX on localhost holds {deliver_count} messages" in works
    assert "The mailbox test failed" in fails and "a-wrong-Pässword" not in fails
    assert not Bounce.objects.exists()
