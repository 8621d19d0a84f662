"""Many sites' servers at once: one dispatcher keeps their conversations going side by side,
never more than WAGTAIL_OWN_SMTP_CONNECTIONS, and a stalling server holds back only its own site."""

import threading
import time

import pytest
from django.core.mail import EmailMessage
from django.db.backends.signals import connection_created

from example_project.local_smtp import SilentServer
from tests.delivery_helpers import own_server, real_backend, statuses  # noqa: F401
from tests.helpers_admin import make_site
from tests.hostile_servers import HostileServer
from wagtail_own_smtp import using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.session import SiteSession

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("real_backend")]


def sites_on(server, count, **limits):
    sites = [make_site()] + [make_site(f"s{n}.example", default=False) for n in range(1, count)]
    for site in sites:
        own_server(site, server, **limits)
    return sites


def queue(site, count):
    with using_site(site):
        for n in range(count):
            EmailMessage(f"{site.hostname} {n}", "Body", None, [f"r{n}@example.org"]).send()


def test_the_sites_conversations_go_side_by_side(starttls_server):
    starttls_server.behaviour.delay = 0.3  # a distant server: every DATA waits
    sites = sites_on(starttls_server, 6)
    for site in sites:
        queue(site, 2)

    report = dispatch(until_empty=True)

    assert report.sent == 12 and statuses() == {"sent": 12}
    assert len(starttls_server.wait_for(12)) == 12
    # Every site's conversation was under way at the same moment (one per site, never two).
    assert starttls_server.peak_in_data == 6


def test_connections_bound_the_conversations_under_way(starttls_server, settings):
    settings.WAGTAIL_OWN_SMTP_CONNECTIONS = 2
    starttls_server.behaviour.delay = 0.2
    sites = sites_on(starttls_server, 5)
    for site in sites:
        queue(site, 2)

    report = dispatch(until_empty=True)

    assert report.sent == 10 and statuses() == {"sent": 10}
    assert starttls_server.peak_in_data == 2


def test_a_site_is_sent_for_over_one_connection_at_a_time(starttls_server):
    starttls_server.behaviour.delay = 0.2
    [site] = sites_on(starttls_server, 1)
    queue(site, 4)

    report = dispatch(until_empty=True)

    assert report.sent == 4
    assert starttls_server.peak_in_data == 1
    assert len(starttls_server.sessions) == 1  # the four went over one connection


STALLING = {
    "silent": lambda: SilentServer(),  # accepts the connection, never answers
    "dripping": lambda: HostileServer(drip=0.5, greeting=b"220 " + b"s" * 200 + b"\r\n"),
}


@pytest.mark.parametrize("kind", sorted(STALLING))
def test_a_stalling_server_holds_back_only_its_own_site(starttls_server, settings, kind):
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 2
    # The stalling site comes first in the turn order (the oldest site, nothing sent yet).
    stalling, *others = sites_on(starttls_server, 4)
    bad_server = STALLING[kind]().start()
    own_server(stalling, bad_server)
    for site in [stalling, *others]:
        queue(site, 2)
    outcomes = []

    try:
        report = dispatch(
            until_empty=True,
            progress=lambda outcome, site_id, _message: outcomes.append((outcome, site_id)),
        )
    finally:
        bad_server.stop()

    assert report.sent == 6 and report.deferred == 2
    assert len(starttls_server.wait_for(6)) == 6
    # Every other site's mail was sent while the stalling server was still being waited for.
    assert [outcome for outcome, _site in outcomes] == ["sent"] * 6 + ["deferred"] * 2
    assert {site_id for outcome, site_id in outcomes if outcome == "deferred"} == {stalling.id}


def test_only_the_dispatchers_thread_uses_the_database(starttls_server):
    starttls_server.behaviour.delay = 0.1
    sites = sites_on(starttls_server, 4)
    for site in sites:
        queue(site, 2)
    threads = []

    def opened(sender, connection, **kwargs):
        threads.append(threading.current_thread().name)

    connection_created.connect(opened)
    try:
        report = dispatch(until_empty=True)
    finally:
        connection_created.disconnect(opened)

    assert report.sent == 8
    # One database connection per dispatcher, however many conversations it keeps going.
    assert not [name for name in threads if name.startswith("own-smtp-agent")]


@pytest.fixture
def slow_goodbye(certificates):
    """A server that answers QUIT after 2 s (TIMEOUT is 3 s here)."""
    from example_project.local_smtp import LocalSmtpServer
    from tests.conftest import SMTP_PASSWORD, SMTP_USER

    server = LocalSmtpServer(
        security="starttls", credentials=(SMTP_USER, SMTP_PASSWORD), certificates=certificates
    ).start()
    server.behaviour.quit_delay = 2
    yield server
    server.stop()


def test_a_server_slow_to_say_goodbye_holds_back_no_other_site(starttls_server, slow_goodbye):
    starttls_server.behaviour.delay = 0.3
    leaving, staying = sites_on(starttls_server, 2)
    own_server(leaving, slow_goodbye)
    queue(leaving, 1)
    queue(staying, 4)

    report = dispatch(until_empty=True)

    assert report.sent == 5 and statuses() == {"sent": 5}
    arrivals = [item.arrived_at for item in starttls_server.wait_for(4)]
    # The other site's four messages (about 1.2 s) all went while the first site's server
    # still took its time to answer QUIT: saying goodbye is the closing site's own business.
    assert max(arrivals) < slow_goodbye.quit_answered_at


def test_a_connection_saying_goodbye_still_counts_toward_connections(
    starttls_server, slow_goodbye, settings, monkeypatch
):
    settings.WAGTAIL_OWN_SMTP_CONNECTIONS = 1
    # The leaving site comes first in the turn order (the oldest site, nothing sent yet).
    leaving, waiting = sites_on(starttls_server, 2)
    own_server(leaving, slow_goodbye)
    queue(leaving, 1)
    queue(waiting, 1)
    opened = {}
    real_open = SiteSession.open

    def open_and_note(session, now):
        opened[session.site_id] = time.monotonic()
        return real_open(session, now)

    monkeypatch.setattr(SiteSession, "open", open_and_note)

    report = dispatch(until_empty=True)

    assert report.sent == 2
    [arrived] = starttls_server.wait_for(1)
    # One connection at a time: the second site's session (its lease and claims, which another
    # worker could otherwise use) opened once the first one's server had said goodbye.
    assert opened[waiting.pk] > slow_goodbye.quit_answered_at
    assert arrived.arrived_at > slow_goodbye.quit_answered_at
