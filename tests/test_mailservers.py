"""The test mail system itself: Debian's Postfix and Dovecot on loopback behave as later tests
expect (example_project/local_mta.py, fixtures in conftest.py). Only Python's smtplib and imaplib
talk to them here."""

import base64
import imaplib
import smtplib
import ssl
import time
import uuid
from email.message import EmailMessage

import pytest

from example_project import mail_processes
from example_project.local_mta import MailServerUnavailable, process_group, require_mail_servers
from tests.conftest import MTA_EDITOR, MTA_SURVEYS, MTA_USERS

COLLEAGUE = "colleague@example.test"
READER = "reader@example.test"


def _tls(dovecot):
    return ssl.create_default_context(cafile=dovecot.ca_file)


def _submission(postfix, dovecot, login=MTA_EDITOR):
    """An SMTP session on the submission port after STARTTLS and AUTH PLAIN (UTF-8 password)."""
    client = smtplib.SMTP("localhost", postfix.submission_port, timeout=10)
    client.starttls(context=_tls(dovecot))
    client.ehlo()
    assert _auth_plain(client, login, MTA_USERS[login])[0] == 235
    return client


def _auth_plain(client, login, password):
    # smtplib encodes AUTH as ASCII; the editor's password is UTF-8 (RFC 4616).
    blob = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
    return client.docmd("AUTH", f"PLAIN {blob}")


def _message(sender, recipient, subject=None):
    message = EmailMessage()
    message["From"], message["To"] = sender, recipient
    message["Subject"] = subject or f"Survey {uuid.uuid4()}"
    message.set_content("Please take part in our survey.")
    return message


def test_submission_accepts_the_right_password_after_starttls_and_refuses_a_wrong_one(
    postfix, dovecot
):
    with smtplib.SMTP("localhost", postfix.submission_port, timeout=10) as client:
        client.starttls(context=_tls(dovecot))
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"]
        code, reply = _auth_plain(client, MTA_EDITOR, "wrong-password")
        assert (code, reply[:5]) == (535, b"5.7.8")
        assert _auth_plain(client, MTA_EDITOR, MTA_USERS[MTA_EDITOR])[0] == 235


def test_implicit_tls_submission_port_takes_the_login(postfix, dovecot):
    with smtplib.SMTP_SSL(
        "localhost", postfix.submissions_port, context=_tls(dovecot), timeout=10
    ) as client:
        client.login(COLLEAGUE, MTA_USERS[COLLEAGUE])
        client.send_message(_message(COLLEAGUE, READER))


def test_submission_offers_login_only_after_starttls(postfix):
    with smtplib.SMTP("localhost", postfix.submission_port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, reply = client.mail(MTA_EDITOR)
        assert code == 530
        assert b"STARTTLS" in reply


def test_a_sender_the_login_does_not_own_is_refused_at_rcpt_to(postfix, dovecot):
    with _submission(postfix, dovecot) as client:
        assert client.mail(COLLEAGUE)[0] == 250  # smtpd_delay_reject: refused at RCPT TO
        code, reply = client.rcpt(READER)
        assert code == 553
        assert reply.decode() == (
            f"5.7.1 <{COLLEAGUE}>: Sender address rejected: not owned by user {MTA_EDITOR}"
        )
        client.rset()
        # The alias the editor owns passes.
        assert client.mail(MTA_SURVEYS)[0] == 250
        assert client.rcpt(READER)[0] == 250


def test_rate_limit_answers_450_at_mail_from_after_the_limit_until_the_window_passes(
    make_postfix, dovecot
):
    postfix = make_postfix(
        main_cf={"smtpd_client_message_rate_limit": "3", "anvil_rate_time_unit": "3s"}
    )
    with _submission(postfix, dovecot) as client:
        for _ in range(3):
            client.send_message(_message(MTA_EDITOR, READER))
        code, reply = client.mail(MTA_EDITOR)
    assert (code, reply) == (450, b"4.7.1 Error: too much mail from 127.0.0.1")

    deadline = time.monotonic() + 10
    while code == 450 and time.monotonic() < deadline:
        time.sleep(0.5)
        with _submission(postfix, dovecot) as client:
            code, _ = client.mail(MTA_EDITOR)
    assert code == 250


def test_smtpd_tls_auth_only_alone_hides_auth_before_starttls(make_postfix, dovecot):
    postfix = make_postfix(submission_cf={"smtpd_tls_security_level": "may"})
    with smtplib.SMTP("localhost", postfix.submission_port, timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        client.starttls(context=_tls(dovecot))
        client.ehlo()
        assert client.has_extn("auth")
    postfix.reconfigure(submission_cf={"smtpd_tls_auth_only": "no"})
    with smtplib.SMTP("localhost", postfix.submission_port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("auth")


def test_log_shows_which_sessions_ended_with_quit(postfix, dovecot):
    mark = postfix.log_mark()
    with _submission(postfix, dovecot) as client:
        client.send_message(_message(MTA_EDITOR, READER))
    polite = postfix.wait_for_log(r"disconnect from localhost\[127\.0\.0\.1\] (.*)", since=mark)
    assert polite.group(1) == ("ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8")

    mark = postfix.log_mark()
    rude = smtplib.SMTP("localhost", postfix.submission_port, timeout=10)
    rude.ehlo()
    rude.close()  # hangs up without QUIT
    postfix.wait_for_log(r"lost connection after EHLO from localhost", since=mark)
    assert postfix.disconnects(since=mark) == ["ehlo=1 commands=1"]


def test_delivered_message_is_read_over_imaps_and_imap_starttls_with_the_test_ca(postfix, dovecot):
    subject = f"Invitation {uuid.uuid4()}"
    with _submission(postfix, dovecot) as client:
        client.send_message(_message(MTA_EDITOR, READER, subject))
    dovecot.wait_for_messages(READER, matching=lambda m: m["Subject"] == subject)

    with imaplib.IMAP4_SSL("localhost", dovecot.imaps_port, ssl_context=_tls(dovecot)) as imap:
        imap.login(READER, MTA_USERS[READER])
        imap.select("INBOX", readonly=True)
        _, found = imap.search(None, "SUBJECT", f'"{subject}"')
        assert len(found[0].split()) == 1
    with imaplib.IMAP4("localhost", dovecot.imap_port) as imap:
        imap.starttls(ssl_context=_tls(dovecot))
        assert imap.login(READER, MTA_USERS[READER])[0] == "OK"


def test_unknown_user_of_the_remote_domain_gets_a_dsn_into_the_senders_mailbox(postfix, dovecot):
    subject = f"Invitation {uuid.uuid4()}"
    with _submission(postfix, dovecot) as client:
        client.send_message(_message(MTA_EDITOR, "nobody@remote.test", subject))

    [report] = dovecot.wait_for_messages(
        MTA_EDITOR, matching=lambda m: subject in m.as_string() and m.is_multipart()
    )
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    assert "Status: 5.1.1" in status.as_string()
    assert "Final-Recipient: rfc822; nobody@remote.test" in status.as_string()


def test_unknown_user_of_the_local_domain_is_refused_at_rcpt_to(postfix, dovecot):
    with _submission(postfix, dovecot) as client:
        client.mail(MTA_EDITOR)
        code, reply = client.rcpt("nobody@example.test")
    assert code == 550
    assert reply.startswith(b"5.1.1 <nobody@example.test>: Recipient address rejected")


def test_stop_leaves_no_process_and_no_files(make_postfix):
    postfix = make_postfix()
    smtplib.SMTP("localhost", postfix.smtp_port, timeout=10).quit()  # an smtpd stays idle
    master = postfix.master_pid
    assert len(process_group(master)) > 1
    postfix.stop()
    assert process_group(master) == []
    assert not postfix.directory.exists()


def test_a_missing_package_names_the_apt_get_command(monkeypatch):
    monkeypatch.setattr(mail_processes, "REQUIRED_FILES", ("/usr/sbin/postfix-not-installed",))
    with pytest.raises(MailServerUnavailable, match="apt-get install postfix dovecot-core"):
        require_mail_servers()


def test_reconfigure_takes_an_alias_away_from_the_next_session(make_postfix, dovecot):
    postfix = make_postfix()
    with _submission(postfix, dovecot) as client:
        client.mail(MTA_SURVEYS)
        assert client.rcpt(READER)[0] == 250
    postfix.reconfigure(sender_logins={})
    with _submission(postfix, dovecot) as client:
        client.mail(MTA_SURVEYS)
        assert client.rcpt(READER)[0] == 553


def test_a_changed_password_counts_from_the_next_login(postfix, dovecot):
    old = MTA_USERS[COLLEAGUE]
    dovecot.set_password(COLLEAGUE, "changed-Pa55word")
    try:
        with smtplib.SMTP("localhost", postfix.submission_port, timeout=10) as client:
            client.starttls(context=_tls(dovecot))
            client.ehlo()
            assert _auth_plain(client, COLLEAGUE, old)[0] == 535
            assert _auth_plain(client, COLLEAGUE, "changed-Pa55word")[0] == 235
    finally:
        dovecot.set_password(COLLEAGUE, old)
