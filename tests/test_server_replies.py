"""What real mail servers answer, each at the stage its provider answers it, and what it does.

Three scopes (docs/server-replies.md): this message; this site for a while (a throttle or quota:
the session ends with QUIT, every message stays queued with no attempt spent, the site backs
off and the forecast says why and until when); this site until the editor acts (pause, mail
queued, the server's words with a hint). No message of a wave ends ``failed`` for a reply about
the account.
"""

import io
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.utils import timezone

from tests.conftest import SMTP_USER
from tests.delivery_helpers import make_site, own_server, real_backend, statuses
from tests.helpers_admin import errors, save_settings, stored
from wagtail_own_smtp import replies, using_site
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.forecast import site_forecast
from wagtail_own_smtp.models import OutboundMessage, SiteSendState, SmtpSettings

pytestmark = [pytest.mark.usefixtures("real_backend"), pytest.mark.django_db]
__all__ = ["real_backend"]

WAVE = 4

PAUSE, BACK_OFF = "pause", "back off"

# (provider reply, the stage it comes at, the outcome, words of its hint)
ACCOUNT_REPLIES = [
    (
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
        "auth",
        PAUSE,
        "sign in",
    ),
    (
        "535 5.7.30 Authentication unsuccessful, basic authentication is not supported.",
        "auth",
        PAUSE,
        "sign in",
    ),
    (
        "554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.Mapi",
        "data",
        PAUSE,
        "Sent Items",
    ),
    (
        f"554 5.2.252 SendAsDenied; {SMTP_USER} not allowed to send as surveys@customer.example",
        "data",
        PAUSE,
        "Send As",
    ),
    (
        "550 5.7.705 Access denied, tenant has exceeded threshold.",
        "mail",
        PAUSE,
        "tenant",
    ),
    (
        "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
        "mail",
        PAUSE,
        "tenant",
    ),
    (
        "550 5.2.251 Sender throttled due to continuous send as denied errors.",
        "mail",
        PAUSE,
        "many errors",
    ),
    (
        "550 5.2.253 Sender throttled due to continuous invalid recipient errors.",
        "data",
        PAUSE,
        "many errors",
    ),
    (
        "550 5.2.255 Sender throttled due to continuous errors.",
        "mail",
        PAUSE,
        "many errors",
    ),
    (
        f"553 5.7.1 <{SMTP_USER}>: Sender address rejected: not owned by user {SMTP_USER}",
        "rcpt",
        PAUSE,
        "send as",
    ),
    (
        "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail sending "
        "limits go to https://support.google.com/a/answer/166852",
        "data",
        BACK_OFF,
        "quota",
    ),
    (
        "550 5.4.5 Daily user sending limit exceeded.",
        "rcpt",
        BACK_OFF,
        "quota",
    ),
    (
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
        "process message due to a permanent exception",
        "data",
        BACK_OFF,
        "10,000 recipients",
    ),
    (
        "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending",
        "auth",
        BACK_OFF,
        "connections",
    ),
    ("450 4.7.1 Error: too much mail from 127.0.0.1", "mail", BACK_OFF, "how fast"),
]


def _answer(server, stage, reply):
    behaviour = server.behaviour
    if stage == "auth":
        behaviour.auth_reply = reply
    elif stage == "mail":
        behaviour.mail_reply = reply
    elif stage == "rcpt":
        behaviour.rcpt_reply = reply
    else:
        behaviour.data_reply = reply


def _wave(count=WAVE):
    with using_site(make_site()):  # the default site, which the tests' server belongs to
        for i in range(count):
            EmailMessage(f"Survey {i}", "Body", "x@platform.example", [f"p{i}@ex.org"]).send()


@pytest.mark.parametrize(("reply", "stage", "outcome", "hint"), ACCOUNT_REPLIES)
def test_an_account_level_reply_keeps_the_whole_wave_queued(
    starttls_server, reply, stage, outcome, hint
):
    site = make_site()
    own_server(site, starttls_server)
    _answer(starttls_server, stage, reply)
    _wave()

    report = dispatch(budget_seconds=10)

    # No message of the wave failed, and none spent an attempt on the account's refusal.
    assert statuses() == {"queued": WAVE}
    assert set(OutboundMessage.objects.values_list("attempts", flat=True)) == {0}
    assert starttls_server.received == []
    # One try, then the session ended politely.
    assert starttls_server.mail_commands <= 1
    assert starttls_server.sessions == starttls_server.quit_sessions != set()
    smtp_settings = SmtpSettings.objects.get(site=site)
    forecast = site_forecast(smtp_settings)
    if outcome == PAUSE:
        assert report.paused_sites == [site.pk]
        assert smtp_settings.sending_paused
        assert smtp_settings.verification_status == "failed"
        assert reply in smtp_settings.last_error
        assert hint.lower() in smtp_settings.last_error_hint.lower()
        assert forecast.state == "paused"
    else:
        assert report.backed_off_sites == [site.pk]
        assert not smtp_settings.sending_paused
        assert smtp_settings.verification_status == "verified"
        state = SiteSendState.objects.get(site=site)
        assert state.backoff_until > timezone.now()
        assert reply in state.backoff_reply
        assert hint.lower() in state.backoff_hint.lower()
        # The forecast and the settings panel say why, and until when.
        assert forecast.state == "backoff"
        assert reply in forecast.text and "sending resumes" in forecast.text
        assert forecast.drained_at >= state.backoff_until


@pytest.mark.parametrize(
    ("reply", "stage"),
    [
        ("550 5.1.1 <p0@ex.org>: Recipient address rejected: User unknown", "rcpt"),
        ("552 5.3.4 Message size exceeds fixed limit", "data"),
        ("554 5.7.1 Message rejected as spam", "data"),
        ("552 5.2.2 <p0@ex.org>: Mailbox full", "rcpt"),
    ],
)
def test_a_message_level_refusal_fails_only_that_message(starttls_server, reply, stage):
    site = make_site()
    own_server(site, starttls_server)
    if stage == "rcpt":
        starttls_server.behaviour.refuse_recipients = {"p0@ex.org": reply}
    else:
        starttls_server.behaviour.data_reply = reply
    _wave(1)

    report = dispatch(budget_seconds=10)

    assert statuses() == {"failed": 1}
    assert report.paused_sites == [] and report.backed_off_sites == []
    assert not SmtpSettings.objects.get(site=site).sending_paused


def test_a_throttle_at_mail_from_ends_the_session_and_the_wave_drains_once_the_window_passes(
    starttls_server, settings
):
    settings.WAGTAIL_OWN_SMTP_THROTTLE_SECONDS = 60
    site = make_site()
    own_server(site, starttls_server)
    _wave(6)
    starttls_server.behaviour.mail_reply = "450 4.7.1 Error: too much mail from 127.0.0.1"

    dispatch(budget_seconds=10)

    assert starttls_server.mail_commands == 1  # not hammered: one MAIL FROM, then QUIT
    assert statuses() == {"queued": 6}
    status = io.StringIO()
    call_command("own_smtp_status", stdout=status)
    assert "the server asked the site to wait until" in status.getvalue()
    assert "450 4.7.1 Error: too much mail from 127.0.0.1" in status.getvalue()
    # While the window is closed, a run leaves the site alone.
    starttls_server.behaviour.mail_reply = None
    assert dispatch(budget_seconds=2).sent == 0
    assert starttls_server.mail_commands == 1

    # The window passes.
    SiteSendState.objects.filter(site=site).update(
        backoff_until=timezone.now() - timedelta(seconds=1)
    )
    report = dispatch(budget_seconds=10)

    assert report.sent == 6
    assert statuses() == {"sent": 6}
    assert set(OutboundMessage.objects.values_list("attempts", flat=True)) == {1}
    assert len(starttls_server.received) == 6


def test_a_daily_quota_backs_off_until_the_oldest_recipient_leaves_the_window(starttls_server):
    site = make_site()
    own_server(site, starttls_server)
    _wave(2)
    dispatch(budget_seconds=10)
    first_sent = OutboundMessage.objects.order_by("sent_at").first().sent_at
    starttls_server.behaviour.data_reply = "550 5.4.5 Daily user sending limit exceeded."
    _wave(1)

    dispatch(budget_seconds=10)

    until = SiteSendState.objects.get(site=site).backoff_until
    assert abs(until - (first_sent + timedelta(days=1))) < timedelta(seconds=5)
    assert statuses() == {"sent": 2, "queued": 1}


def test_security_none_on_a_port_that_offers_login_only_after_starttls_hints_starttls(
    admin_client, starttls_server
):
    site = make_site()
    response = save_settings(admin_client, site, starttls_server, security="none")

    assert stored(site).verification_status == "failed"
    assert "The server does not offer SMTP AUTH." in stored(site).last_error
    assert "choose STARTTLS" in stored(site).last_error_hint
    assert any("choose STARTTLS" in text for text in errors(response))
    assert starttls_server.sessions == starttls_server.quit_sessions != set()


def test_a_refused_login_ends_with_quit(admin_client, starttls_server):
    site = make_site()
    save_settings(admin_client, site, starttls_server, password="wrong")

    assert stored(site).verification_status == "failed"
    assert starttls_server.sessions == starttls_server.quit_sessions != set()


@pytest.mark.parametrize(
    ("stage", "code", "text", "kind"),
    [
        ("mail", 421, "421 4.7.0 Error: too many errors", replies.TRANSIENT),
        ("rcpt", 450, "450 4.2.0 <p@ex.org>: Recipient address rejected: Greylisted", "transient"),
        ("rcpt", 550, "550 5.1.1 <p@ex.org>: User unknown", replies.MESSAGE),
        ("rcpt", 553, "553 5.1.8 <s@x>: Domain of sender address does not exist", "server"),
        ("mail", 552, "552 5.3.4 Message size exceeds fixed limit", replies.MESSAGE),
        ("data", 552, "552 5.2.2 Mailbox full", replies.MESSAGE),
        ("greeting", 554, "554 5.7.1 You are not allowed to connect", replies.SERVER),
    ],
)
def test_the_scope_of_other_replies(stage, code, text, kind):
    assert replies.reply_scope(stage, code, text, "s@x")[0] == kind
