"""What Debian's Postfix (with Dovecot SASL) answers, and what the app does with it.

Real Postfix on loopback (example_project/local_mta.py): ``reject_sender_login_mismatch`` with
the default ``smtpd_delay_reject`` refuses a sender at RCPT TO, ``smtpd_client_message_rate_limit``
answers 450 at MAIL FROM, ``smtpd_tls_auth_only`` offers AUTH only after STARTTLS. Postfix logs
each session's commands as it ends: every session of the app ends with QUIT.
"""

import re
import time

import pytest
from django.core.mail import EmailMessage
from django.utils import timezone

from tests.conftest import MTA_EDITOR, MTA_SENDER_LOGINS, MTA_SURVEYS, MTA_USERS
from tests.delivery_helpers import make_site, real_backend, statuses
from tests.helpers_admin import errors, save_settings, stored
from wagtail_own_smtp import using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.forecast import site_forecast
from wagtail_own_smtp.models import OutboundMessage, SiteSendState, SmtpSettings

pytestmark = [pytest.mark.usefixtures("real_backend"), pytest.mark.django_db]
__all__ = ["real_backend"]

READER = "reader@example.test"


def _site_on(postfix, sender=MTA_SURVEYS, security="starttls"):
    """A site whose verified server is Postfix's submission port: the editor's login, sending as
    the alias it owns (as if the editor had saved and confirmed it)."""
    site = make_site()
    smtp_settings, _created = SmtpSettings.objects.get_or_create(site=site)
    smtp_settings.delivery_mode = "own"
    smtp_settings.host = smtp_settings.verified_host = "localhost"
    smtp_settings.port = smtp_settings.verified_port = postfix.submission_port
    smtp_settings.security = smtp_settings.verified_security = security
    smtp_settings.from_email = smtp_settings.verified_from_email = sender
    smtp_settings.username = smtp_settings.verified_username = MTA_EDITOR
    smtp_settings.set_password(MTA_USERS[MTA_EDITOR])
    smtp_settings.verified_password_ciphertext = smtp_settings.password_ciphertext
    smtp_settings.verification_status = "verified"
    smtp_settings.verified_at = timezone.now()
    smtp_settings.save()
    return site


def _wave(count):
    with using_site(make_site()):  # the default site, which sends through Postfix here
        for i in range(count):
            EmailMessage(f"Survey {i}", "Please take part.", "x@platform.example", [READER]).send()


def _sessions(postfix, mark):
    """The command counts of every session Postfix logged after ``mark`` (one line each)."""
    return postfix.disconnects(since=mark)


def _assert_every_session_ended_with_quit(postfix, mark):
    sessions = _sessions(postfix, mark)
    assert sessions, "Postfix logged no session"
    for session in sessions:
        assert "quit=1" in session, sessions
    assert "lost connection" not in postfix.log_text(mark)


def test_a_revoked_sender_pauses_the_site_with_every_message_still_queued(make_postfix):
    postfix = make_postfix()
    site = _site_on(postfix)
    _wave(1)
    assert dispatch(budget_seconds=10).sent == 1  # the alias is the editor's: it goes

    # The alias is taken away from the editor's login.
    postfix.reconfigure(sender_logins={})
    _wave(3)
    mark = postfix.log_mark()
    report = dispatch(budget_seconds=10)

    assert report.paused_sites == [site.pk]
    assert statuses() == {"sent": 1, "queued": 3}
    assert set(
        OutboundMessage.objects.filter(status="queued").values_list("attempts", flat=True)
    ) == {0}
    smtp_settings = SmtpSettings.objects.get(site=site)
    assert smtp_settings.sending_paused and smtp_settings.verification_status == "failed"
    assert f"<{MTA_SURVEYS}>: Sender address rejected: not owned by user {MTA_EDITOR}" in (
        smtp_settings.last_error
    )
    assert "send as" in smtp_settings.last_error_hint
    postfix.wait_for_log(r"disconnect from", since=mark)
    _assert_every_session_ended_with_quit(postfix, mark)

    # The alias given back and the server confirmed again: the wave goes, each message once.
    postfix.reconfigure(sender_logins=MTA_SENDER_LOGINS)
    SmtpSettings.objects.filter(site=site).update(
        sending_paused=False, verification_status="verified"
    )
    assert dispatch(budget_seconds=10).sent == 3
    assert statuses() == {"sent": 4}


def test_a_rate_limited_batch_stops_at_the_first_throttle_and_drains_once_the_window_passes(
    make_postfix, settings
):
    settings.WAGTAIL_OWN_SMTP_THROTTLE_SECONDS = 3
    postfix = make_postfix(
        main_cf={"smtpd_client_message_rate_limit": "3", "anvil_rate_time_unit": "3s"}
    )
    site = _site_on(postfix)
    _wave(8)
    mark = postfix.log_mark()

    report = dispatch(budget_seconds=10)

    assert report.sent == 3 and report.backed_off_sites == [site.pk]
    assert statuses() == {"sent": 3, "queued": 5}
    waiting = OutboundMessage.objects.filter(status="queued")
    assert set(waiting.values_list("attempts", flat=True)) == {0}  # no attempt spent
    state = SiteSendState.objects.get(site=site)
    assert "450 4.7.1 Error: too much mail from 127.0.0.1" in state.backoff_reply
    forecast = site_forecast(SmtpSettings.objects.get(site=site))
    assert forecast.state == "backoff" and "too much mail" in forecast.text
    postfix.wait_for_log(r"disconnect from", since=mark)
    # One session: three messages, then ONE refused MAIL FROM, then QUIT.
    (first,) = _sessions(postfix, mark)
    assert re.search(r"\bmail=3/4\b", first), first
    assert "quit=1" in first

    # Each run after the window has passed sends what the limit lets through, until all went.
    deadline = time.monotonic() + 60
    while statuses().get("queued") and time.monotonic() < deadline:
        until = SiteSendState.objects.get(site=site).backoff_until
        time.sleep(max(0.0, (until - timezone.now()).total_seconds()) + 0.2)
        dispatch(budget_seconds=10)

    assert statuses() == {"sent": 8}
    assert set(OutboundMessage.objects.values_list("attempts", flat=True)) == {1}
    time.sleep(0.5)
    for session in _sessions(postfix, mark):
        sent, tried = map(int, re.search(r"\bmail=(\d+)(?:/(\d+))?", session).groups("0"))
        # At most one refused MAIL FROM per session: the first throttle reply ends it.
        assert tried == 0 or tried - sent <= 1, session
    _assert_every_session_ended_with_quit(postfix, mark)


def test_security_none_on_the_submission_port_shows_the_starttls_hint(admin_client, postfix):
    site = make_site()
    mark = postfix.log_mark()

    response = save_settings(
        admin_client,
        site,
        port=postfix.submission_port,
        security="none",
        from_email=MTA_EDITOR,
        username=MTA_EDITOR,
        password=MTA_USERS[MTA_EDITOR],
    )

    assert stored(site).verification_status == "failed"
    assert stored(site).last_error == "The server does not offer SMTP AUTH."
    assert "choose STARTTLS" in stored(site).last_error_hint
    assert any("choose STARTTLS" in text for text in errors(response))
    postfix.wait_for_log(r"disconnect from", since=mark)
    _assert_every_session_ended_with_quit(postfix, mark)


def test_a_wrong_password_ends_with_quit_too(admin_client, postfix):
    site = make_site()
    mark = postfix.log_mark()

    save_settings(
        admin_client,
        site,
        port=postfix.submission_port,
        security="starttls",
        from_email=MTA_EDITOR,
        username=MTA_EDITOR,
        password="not-the-password",
    )

    assert stored(site).verification_status == "failed"
    assert stored(site).last_error.startswith("535 5.7.8")
    postfix.wait_for_log(r"disconnect from", since=mark)
    _assert_every_session_ended_with_quit(postfix, mark)
