"""An editor's server is hostile: it answers NUL bytes, drips, never ends, or answers 16 MB.

Each test is the attack, against a real server on loopback: the bad site is deferred or paused,
a healthy site still gets all its mail in the same run, and no worker or request is held longer
than the stated deadline or grows by more than the reply cap.
"""

import logging
import time
import tracemalloc

import pytest
from django.core.mail import EmailMessage
from django.db import connection

from example_project.local_smtp import LocalSmtpServer
from tests.delivery_helpers import make_site, own_server, real_backend, statuses
from tests.helpers_admin import action_url, edit_url, errors, save_settings, stored
from tests.hostile_servers import HostileServer
from wagtail_own_smtp import smtp_client, transport, using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import OutboundMessage, SmtpSettings

pytestmark = [pytest.mark.usefixtures("real_backend"), pytest.mark.django_db]
__all__ = ["real_backend"]

MARGIN = 1.0  # seconds of scheduling and database work on a shared, busy machine
MEMORY_CAP = 4 * 1024 * 1024  # bytes a hostile reply may make the process allocate at its peak


@pytest.fixture
def healthy():
    server = LocalSmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def hostile_factory():
    servers = []

    def start(**kwargs):
        server = HostileServer(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _two_sites(bad_server, good_server):
    """The bad site goes first: it sent longest ago (never), and has the lower primary key."""
    bad = make_site("bad.localhost", default=True)
    good = make_site("good.localhost", default=False)
    own_server(bad, bad_server)
    own_server(good, good_server)
    return bad, good


# The same answers to a client that sends its commands one by one and to one that pipelines.
pipelining = pytest.mark.parametrize(
    "offers_pipelining", [False, True], ids=["one-by-one", "pipelining"]
)


def _ehlo(offers_pipelining):
    extensions = b"250-PIPELINING\r\n" if offers_pipelining else b""
    return b"250-hostile\r\n" + extensions + b"250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"


def _queue(site, count, prefix):
    with using_site(site):
        for i in range(count):
            EmailMessage(
                f"{prefix}{i}", "Body", "x@platform.example", [f"{prefix}{i}@ex.org"]
            ).send()


@pipelining
def test_a_nul_in_a_rcpt_reply_defers_that_message_and_the_healthy_site_gets_all_its_mail(
    hostile_factory, healthy, offers_pipelining
):
    bad_server = hostile_factory(
        replies={"RCPT": b"451 4.3.0 bad\x00thing\r\n", "EHLO": _ehlo(offers_pipelining)}
    )
    bad, good = _two_sites(bad_server, healthy)
    _queue(bad, 2, "bad")
    _queue(good, 3, "good")

    report = dispatch(budget_seconds=10)

    assert len(healthy.wait_for(3)) == 3
    assert statuses(site=good) == {"sent": 3}
    assert statuses(site=bad) == {"deferred": 2}
    assert report.sent == 3
    for error in OutboundMessage.objects.filter(site=bad).values_list("last_error", flat=True):
        assert "451 4.3.0 badthing" in error
        assert "\x00" not in error


def _refuse_marking_sent(site):
    """A real write failure of one site: the database refuses to mark its messages sent."""
    table = connection.ops.quote_name(OutboundMessage._meta.db_table)
    when = f"NEW.status = 'sent' AND NEW.site_id = {int(site.pk)}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION own_smtp_refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER own_smtp_refuse BEFORE UPDATE ON {table} FOR EACH ROW "
                f"WHEN ({when}) EXECUTE FUNCTION own_smtp_refuse()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER own_smtp_refuse BEFORE UPDATE ON {table} FOR EACH ROW "
                f"WHEN {when} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )


def test_one_sites_failed_database_write_ends_only_that_sites_turn(healthy):
    bad_server = LocalSmtpServer().start()
    try:
        bad, good = _two_sites(bad_server, healthy)
        _queue(bad, 3, "bad")
        _queue(good, 3, "good")
        _refuse_marking_sent(bad)

        report = dispatch(budget_seconds=10)
    finally:
        bad_server.stop()

    assert len(healthy.wait_for(3)) == 3
    assert statuses(site=good) == {"sent": 3}
    assert report.sent == 3
    # The bad site's first message reached its server but could not be marked sent: it stays
    # claimed until its lease runs out (then goes again: at-least-once); nothing more was sent.
    assert len(bad_server.received) == 1
    assert statuses(site=bad) == {"sending": 1, "queued": 2}


@pipelining
@pytest.mark.parametrize("verb", ["MAIL", "AUTH"])
def test_a_nul_at_mail_from_or_auth_pauses_that_site_and_the_healthy_site_gets_all_its_mail(
    hostile_factory, healthy, verb, offers_pipelining
):
    bad_server = hostile_factory(
        replies={verb: b"553 5.7.1 not\x00yours\x1b[2J\r\n", "EHLO": _ehlo(offers_pipelining)}
    )
    bad, good = _two_sites(bad_server, healthy)
    _queue(bad, 2, "bad")
    _queue(good, 3, "good")

    report = dispatch(budget_seconds=10)

    assert len(healthy.wait_for(3)) == 3
    assert statuses(site=good) == {"sent": 3}
    assert statuses(site=bad) == {"queued": 2}
    assert report.paused_sites == [bad.pk]
    bad_settings = SmtpSettings.objects.get(site=bad)
    assert bad_settings.sending_paused
    assert bad_settings.last_error == "553 5.7.1 notyours[2J"


def test_saving_the_settings_against_a_nul_answering_server_shows_the_failure_not_a_500(
    admin_client, hostile_factory
):
    site = make_site()
    server = hostile_factory(replies={"AUTH": b"535 5.7.8 wrong\x00password\r\n"})
    response = save_settings(admin_client, site, server, security="none")

    assert response.status_code == 200
    assert stored(site).verification_status == "failed"
    assert stored(site).last_error == "535 5.7.8 wrongpassword"
    assert any("535 5.7.8 wrongpassword" in text for text in errors(response))


def test_a_dripped_greeting_is_cut_off_at_the_connection_deadline(
    admin_client, hostile_factory, settings
):
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 1
    server = hostile_factory(drip=0.5, greeting=b"220 " + b"s" * 200 + b"\r\n")
    site = make_site()
    own_server(site, server, verified=False)

    started = time.monotonic()
    response = admin_client.post(action_url("test_connection", site), follow=True)
    elapsed = time.monotonic() - started

    # A byte every half second never lets one read time out: only a deadline ends it.
    assert elapsed <= transport.request_seconds() + MARGIN, elapsed
    assert response.redirect_chain[-1][0] == edit_url(site)
    assert any("did not answer in time" in text for text in errors(response))


def test_resending_the_confirmation_to_a_dripping_server_is_cut_off_at_the_deadline(
    admin_client, hostile_factory, settings
):
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 1
    # The greeting and login go fine; the reply to DATA never ends its line.
    server = hostile_factory(replies={"DATA": b"354 g" + b"o" * 100})
    site = make_site()
    own_server(site, server, verified=False)
    SmtpSettings.objects.filter(site=site).update(verification_status="pending")

    started = time.monotonic()
    response = admin_client.post(action_url("resend", site), follow=True)
    elapsed = time.monotonic() - started

    assert elapsed <= transport.request_seconds() + MARGIN, elapsed
    assert stored(site).verification_status == "failed"
    assert response.status_code == 200


def test_an_endless_greeting_is_cut_off_within_the_deadline_and_the_memory_cap(
    hostile_factory, settings
):
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 2
    server = hostile_factory(endless=True)
    params = transport.ServerParams("localhost", server.port, "none", "mailer@customer.example")

    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(transport.SmtpFailure) as failure:
            transport.test_connection(params)
        elapsed = time.monotonic() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert elapsed <= 2 + MARGIN, elapsed
    assert peak < MEMORY_CAP, peak
    assert "too long" in failure.value.text
    assert len(failure.value.text) <= smtp_client.STORED_REPLY_CHARS


@pipelining
def test_a_16_mb_error_reply_is_never_stored(hostile_factory, healthy, offers_pipelining):
    huge = b"550-5.7.1 " + b"y" * 1000 + b"\r\n"
    bad_server = hostile_factory(
        replies={"MAIL": huge * 16 * 1024 + b"550 5.7.1 end\r\n", "EHLO": _ehlo(offers_pipelining)}
    )
    bad, good = _two_sites(bad_server, healthy)
    _queue(bad, 1, "bad")
    _queue(good, 1, "good")

    dispatch(budget_seconds=10)

    assert statuses(site=good) == {"sent": 1}
    assert statuses(site=bad) == {"deferred": 1}
    message = OutboundMessage.objects.get(site=bad)
    assert "too long" in message.last_error
    assert len(message.last_error) <= smtp_client.STORED_REPLY_CHARS
    assert len(SmtpSettings.objects.get(site=bad).last_error) <= smtp_client.STORED_REPLY_CHARS


def test_a_dispatch_run_with_a_dripping_site_keeps_its_budget_and_the_healthy_site_gets_its_mail(
    hostile_factory, healthy, settings
):
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 0.3
    bad_server = hostile_factory(drip=0.1, greeting=b"220 " + b"s" * 200 + b"\r\n")
    bad, good = _two_sites(bad_server, healthy)
    _queue(bad, 2, "bad")
    _queue(good, 3, "good")

    started = time.monotonic()
    dispatch(budget_seconds=1)
    elapsed = time.monotonic() - started

    assert elapsed <= 1 + 0.3 + MARGIN, elapsed
    assert statuses(site=good) == {"sent": 3}
    assert statuses(site=bad) == {"deferred": 2}


def test_a_run_that_meets_a_dripping_server_at_the_end_of_its_budget_overruns_by_one_deadline(
    hostile_factory, settings
):
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 2
    server = hostile_factory(drip=0.2, greeting=b"220 " + b"s" * 200 + b"\r\n")
    site = make_site()
    own_server(site, server)
    _queue(site, 1, "bad")

    started = time.monotonic()
    dispatch(budget_seconds=0.5)
    elapsed = time.monotonic() - started

    assert elapsed <= 0.5 + 2 + MARGIN, elapsed
    assert statuses(site=site) == {"deferred": 1}


def test_a_reply_with_newlines_and_escapes_cannot_forge_log_lines(hostile_factory, caplog):
    forged = b"553-5.7.1 no\r\n553 5.7.1 \x1b[31mINFO Sending resumed for site 1\r\n"
    server = hostile_factory(replies={"MAIL": forged})
    site = make_site()
    own_server(site, server)
    _queue(site, 1, "m")

    with caplog.at_level(logging.WARNING, logger="wagtail_own_smtp"):
        dispatch(budget_seconds=5)

    paused = [r.getMessage() for r in caplog.records if "Sending paused" in r.getMessage()]
    assert len(paused) == 1
    assert "\n" not in paused[0] and "\x1b" not in paused[0]
    assert paused[0].endswith("553 5.7.1 no\\n5.7.1 [31mINFO Sending resumed for site 1")


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"451 4.3.0 bad\x00thing", "451 4.3.0 badthing"),
        (b"550 caf\xe9 \xff\xfe", "550 caf\ufffd \ufffd\ufffd"),
        (b"550 a\x07b\x7fc\xc2\x9bd", "550 abcd"),
        (b"550-one\n550 two", "550-one\n550 two"),
    ],
)
def test_a_reply_is_cleaned_to_valid_text_without_controls(raw, expected):
    cleaned = smtp_client.clean_reply(raw)
    assert cleaned == expected
    cleaned.encode("utf-8")  # always valid UTF-8


def test_a_long_reply_is_capped_where_it_is_stored():
    assert len(smtp_client.clean_reply(b"550 " + b"z" * 100_000)) == smtp_client.STORED_REPLY_CHARS
