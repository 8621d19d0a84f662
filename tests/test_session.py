"""A site's session: outcomes written while the next message is under way, and a pause when
the stored password cannot be opened."""

import threading

import pytest

from tests.delivery_helpers import make_site, own_server, queue_mail, real_backend, statuses
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import OutboundMessage, SmtpSettings

pytestmark = pytest.mark.usefixtures("real_backend")
__all__ = ["real_backend"]


@pytest.mark.django_db
def test_undecryptable_password_pauses_the_site(starttls_server):
    site = make_site()
    smtp_settings = own_server(site, starttls_server)
    # as after SECRET_KEY changed with no key kept: no configured key opens the stored password
    SmtpSettings.objects.filter(pk=smtp_settings.pk).update(
        verified_password_ciphertext=b"gAAAAAB-not-a-token-of-any-key"
    )
    queue_mail(2)
    report = dispatch(budget_seconds=5)
    assert report.paused_sites == [site.pk]
    assert statuses() == {"queued": 2}
    assert "cannot be decrypted" in SmtpSettings.objects.get(site=site).last_error
    assert starttls_server.auth_attempts == 0


@pytest.mark.django_db(transaction=True)
def test_every_message_the_server_accepts_finds_the_ones_before_it_marked_sent(starttls_server):
    """The outcome of a message is written while the next one of its site is under way, but
    always before that next one is complete: on each site's connection at most the one in flight
    is accepted and not marked sent (the two sites' conversations go side by side)."""
    from django.db import connection as db

    sites = [make_site(), make_site("second.example", default=False)]
    for site in sites:
        own_server(site, starttls_server)
        queue_mail(15, prefix=f"s{site.pk}m", site=site)
    seen = {site.pk: [] for site in sites}  # per acceptance: the site's messages marked sent
    store = starttls_server.store

    def count_sent(site_pk):
        try:  # a thread of its own: its own connection, committed rows only
            found = OutboundMessage.objects.filter(status="sent", site_id=site_pk).count()
            seen[site_pk].append(found)
        finally:
            db.close()

    def store_and_look(received):
        # the server's event loop runs this before it answers "250": look from a plain thread
        site_pk = int(received.rcpt_tos[0].split("m")[0][1:])
        looker = threading.Thread(target=count_sent, args=(site_pk,))
        looker.start()
        looker.join()
        store(received)

    starttls_server.store = store_and_look
    report = dispatch(until_empty=True)
    assert report.sent == 30 and statuses() == {"sent": 30}
    assert seen == {site.pk: list(range(15)) for site in sites}
