"""A site's session: outcomes written while the next message is under way, and a pause when
the stored password cannot be opened."""

import threading
import time
from decimal import Decimal

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


def _went_on_events(monkeypatch):
    """Counts the deliveries an agent went on from without waiting for the dispatcher."""
    from wagtail_own_smtp import agents

    events, post = [], agents.Inbox.post

    def counting_post(self, event):
        if event[0] == "went_on":
            events.append(event)
        post(self, event)

    monkeypatch.setattr(agents.Inbox, "post", counting_post)
    return events


@pytest.mark.django_db
def test_an_agent_goes_on_with_the_next_message_only_where_the_limits_allow_it(
    starttls_server, monkeypatch
):
    """Without limits, an agent goes from one message of its site to the next on its own (the
    dispatcher books the first meanwhile); with a minimum interval every message waits for the
    dispatcher's word, and the gaps hold."""
    went_on = _went_on_events(monkeypatch)
    site = make_site()
    smtp_settings = own_server(site, starttls_server)
    queue_mail(12)
    assert dispatch(until_empty=True).sent == 12
    assert len(went_on) >= 6 and statuses() == {"sent": 12}

    went_on.clear()
    smtp_settings.min_interval = Decimal("0.1")
    smtp_settings.save()
    starttls_server.received.clear()
    queue_mail(4, prefix="spaced")
    started = time.monotonic()
    assert dispatch(until_empty=True).sent == 4
    assert went_on == [] and time.monotonic() - started >= 0.3


@pytest.mark.django_db(transaction=True)
def test_a_message_an_agent_went_on_with_waits_for_the_previous_outcome(
    starttls_server, monkeypatch
):
    """When the outcome of a message cannot be written, the message the agent went on with never
    reaches the server complete: at most the one in flight is accepted and not marked sent."""
    from django.db import DatabaseError

    from wagtail_own_smtp import session

    went_on = _went_on_events(monkeypatch)
    site = make_site()
    own_server(site, starttls_server)
    queue_mail(8)
    writes, record_sent = [], session.record_sent

    def failing_third(*args, **kwargs):
        writes.append(args[0])
        if len(writes) == 3:
            raise DatabaseError("the database went away")
        return record_sent(*args, **kwargs)

    monkeypatch.setattr(session, "record_sent", failing_third)
    report = dispatch(budget_seconds=10)
    assert went_on  # the agent went on on its own before the failure
    assert report.sent == 2 and len(starttls_server.received) == 3
    # the third: accepted, not marked (it goes again when its claim runs out); the rest go back
    assert statuses() == {"sent": 2, "sending": 1, "queued": 5}
