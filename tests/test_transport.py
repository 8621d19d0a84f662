"""transport.py against real SMTP servers on loopback (aiosmtpd): TLS, AUTH, failures, timeouts."""

import socket
import time

import pytest

from example_project.local_smtp import LocalSmtpServer
from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.hostile_servers import HostileServer
from wagtail_own_smtp import hints, replies, transport
from wagtail_own_smtp.exceptions import SmtpFailure
from wagtail_own_smtp.replies import MESSAGE, SERVER, TRANSIENT
from wagtail_own_smtp.transport import ServerParams

RAW = (
    b"From: Survey team <mailer@customer.example>\r\n"
    b"To: reader@example.org\r\n"
    b"Subject: Your survey invitation\r\n"
    b"\r\n"
    b"Please take part.\r\n"
)
READER = "reader@example.org"


def params(server, security, **changes):
    values = dict(
        host="localhost",
        port=server.port,
        security=security,
        from_email=SMTP_USER,
        username=SMTP_USER,
        password=SMTP_PASSWORD,
    )
    values.update(changes)
    return ServerParams(**values)


def deliver(server_params, recipients=(READER,), raw=RAW):
    """Open, send one message, close: what the dispatcher does per connection."""
    connection = transport.open_connection(server_params)
    try:
        return transport.send(
            connection, server_params, server_params.from_email, list(recipients), raw
        )
    finally:
        transport.close_quietly(connection)


def failure(call, *args, **kwargs):
    with pytest.raises(SmtpFailure) as info:
        call(*args, **kwargs)
    return info.value


@pytest.fixture
def plain_auth_server():
    """No TLS at all, but AUTH offered in clear text (a server that would take the password)."""
    server = LocalSmtpServer(security="none", credentials=(SMTP_USER, SMTP_PASSWORD)).start()
    yield server
    server.stop()


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelining"])
def mail_server(request, starttls_server):
    """The STARTTLS server, taking commands one by one or offering PIPELINING (RFC 2920)."""
    starttls_server.behaviour.pipelining = request.param
    return starttls_server


@pytest.fixture
def fake_dns(monkeypatch):
    """Stand-in for DNS (no DNS server here): answers for made-up names, counts the lookups.

    Everything else, including the IP literals socket.create_connection looks up, goes to the
    real resolver.
    """
    real_getaddrinfo = socket.getaddrinfo
    answers, lookups = {}, []

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            lookups.append(host)
            address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            return real_getaddrinfo(address, port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, lookups


# -- sending that works ----------------------------------------------------------------------


def test_starttls_with_auth_delivers(starttls_server):
    refused = deliver(params(starttls_server, "starttls"))

    assert refused == {}
    [received] = starttls_server.wait_for(1)
    assert received.mail_from == SMTP_USER
    assert received.rcpt_tos == [READER]
    assert received.authenticated_as == SMTP_USER
    assert received.tls
    assert received.message["Subject"] == "Your survey invitation"


def test_utf8_password_logs_in_with_plain_and_login(certificates):
    password = "пароль-密码-Grüße"
    with LocalSmtpServer(
        security="starttls", credentials=(SMTP_USER, password), certificates=certificates
    ) as server:
        # AUTH PLAIN, the mechanism chosen when offered.
        deliver(params(server, "starttls", password=password))
        # AUTH LOGIN: the same server, with the client told that only LOGIN is offered.
        connection = transport.open_connection(params(server, "starttls", username=""))
        try:
            connection.esmtp_features["auth"] = "LOGIN"
            transport.login(connection, SMTP_USER, password)
            transport.send(connection, params(server, "starttls"), SMTP_USER, [READER], RAW)
        finally:
            transport.close_quietly(connection)

        received = server.wait_for(2)
    assert [r.authenticated_as for r in received] == [SMTP_USER, SMTP_USER]


def test_implicit_tls_delivers(ssl_server):
    deliver(params(ssl_server, "ssl"))

    [received] = ssl_server.wait_for(1)
    assert received.authenticated_as == SMTP_USER
    assert received.rcpt_tos == [READER]


def test_plain_without_login_delivers(plain_server):
    deliver(params(plain_server, "none", username="", password=""))

    [received] = plain_server.wait_for(1)
    assert received.authenticated_as is None
    assert not received.tls
    assert received.data.endswith(b"Please take part.\r\n")


def test_partly_refused_recipients_are_returned(mail_server):
    mail_server.behaviour.refuse_recipients = {"gone@example.org": "550 5.1.1 No such user"}

    refused = deliver(params(mail_server, "starttls"), recipients=[READER, "gone@example.org"])

    assert refused == {"gone@example.org": (550, b"5.1.1 No such user")}
    assert mail_server.wait_for(1)[0].rcpt_tos == [READER]


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_server_offering_pipelining_gets_the_envelope_in_one_round_trip(
    starttls_server, pipelining
):
    """MAIL FROM, every RCPT TO and DATA go together (two round trips a message, not 2 + the
    recipients: over a server 30 ms away, 60 ms instead of 120 for one recipient)."""
    starttls_server.behaviour.pipelining = pipelining
    recipients = [READER, "second@example.org"]

    assert deliver(params(starttls_server, "starttls"), recipients=recipients) == {}

    assert starttls_server.wait_for(1)[0].rcpt_tos == recipients
    assert starttls_server.sent_with_mail == ([3] if pipelining else [0])


def test_a_pipelined_refusal_leaves_the_connection_ready_for_the_next_message(starttls_server):
    starttls_server.behaviour.pipelining = True
    starttls_server.behaviour.refuse_recipients = {"gone@example.org": "550 5.1.1 No such user"}
    server_params = params(starttls_server, "starttls")
    connection = transport.open_connection(server_params)
    try:
        refused_all = failure(
            transport.send, connection, server_params, SMTP_USER, ["gone@example.org"], RAW
        )
        starttls_server.behaviour.mail_reply = "553 5.7.1 Sender not allowed"
        refused_sender = failure(
            transport.send, connection, server_params, SMTP_USER, [READER], RAW
        )
        starttls_server.behaviour.mail_reply = None
        refused = transport.send(
            connection, server_params, SMTP_USER, [READER, "gone@example.org"], RAW
        )
    finally:
        transport.close_quietly(connection)

    assert (refused_all.kind, refused_all.code) == (MESSAGE, 550)
    assert (refused_sender.kind, refused_sender.code) == (SERVER, 553)
    assert refused == {"gone@example.org": (550, b"5.1.1 No such user")}
    assert [r.rcpt_tos for r in starttls_server.wait_for(1)] == [[READER]]
    assert len(starttls_server.sent_with_mail) == 3


def test_a_server_that_takes_data_without_recipients_gets_an_empty_end_not_the_message():
    """RFC 2920: a pipelining server may answer DATA with 354 though it refused every recipient;
    the client then ends the (empty) data at once and the conversation goes on."""
    server = HostileServer(
        replies={
            "EHLO": b"250-hostile\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "RCPT": b"550 5.1.1 No such user\r\n",
        }
    ).start()
    server_params = ServerParams(
        host="127.0.0.1", port=server.port, security="none", from_email=SMTP_USER
    )
    try:
        error = failure(deliver, server_params)
        time.sleep(0.2)
    finally:
        server.stop()

    assert (error.kind, error.code) == (MESSAGE, 550)
    assert server.commands == ["EHLO", "MAIL", "RCPT", "DATA", "RSET", "QUIT"]
    assert server.data_lines == [[]]


def test_work_given_to_a_send_runs_once_before_the_message_is_complete(mail_server):
    """The dispatcher writes the previous outcome while the server reads the next MAIL FROM."""
    server_params = params(mail_server, "starttls")
    connection = transport.open_connection(server_params)
    seen = []
    try:
        transport.send(
            connection,
            server_params,
            SMTP_USER,
            [READER],
            RAW,
            meanwhile=lambda: seen.append(len(mail_server.received)),
        )
        transport.send(connection, server_params, SMTP_USER, [READER], RAW)
    finally:
        transport.close_quietly(connection)
    assert seen == [0]  # once, and the message had not arrived yet
    assert len(mail_server.wait_for(2)) == 2


def test_that_work_waits_for_the_server_to_take_the_recipients(mail_server):
    """It overlaps MAIL, RCPT and DATA; a message whose every recipient is refused never gets
    to its data, and the work is not done for it."""
    mail_server.behaviour.refuse_recipients = {"gone@example.org": "550 5.1.1 No such user"}
    server_params = params(mail_server, "starttls")
    connection = transport.open_connection(server_params)
    seen = []
    try:
        with pytest.raises(SmtpFailure):
            transport.send(
                connection,
                server_params,
                SMTP_USER,
                ["gone@example.org"],
                RAW,
                meanwhile=lambda: seen.append("called"),
            )
    finally:
        transport.close_quietly(connection)
    assert seen == []


def test_what_that_work_raises_ends_the_send_and_the_message_never_arrives(mail_server):
    class NotWritten(Exception):
        pass

    def fail():
        raise NotWritten

    server_params = params(mail_server, "starttls")
    connection = transport.open_connection(server_params)
    try:
        with pytest.raises(NotWritten):
            transport.send(connection, server_params, SMTP_USER, [READER], RAW, meanwhile=fail)
    finally:
        connection.close()  # the message is incomplete: dropped with the connection
    time.sleep(0.2)
    assert mail_server.received == []


# -- the server's configuration is wrong: SERVER --------------------------------------------


def test_wrong_password_is_a_server_failure_with_the_original_reply(ssl_server):
    wrong = "wrong-Pässwort-42"

    error = failure(transport.open_connection, params(ssl_server, "ssl", password=wrong))

    assert error.kind == SERVER
    assert error.code == 535
    assert error.text == "535 5.7.8 Authentication credentials invalid"
    assert "username or password" in error.hint
    assert ssl_server.auth_attempts == 1
    for shown in (str(error), error.hint, repr(error)):
        assert wrong not in shown


@pytest.mark.parametrize("server_fixture", ["plain_server", "plain_auth_server"])
def test_starttls_never_falls_back_to_plain_text(request, server_fixture):
    server = request.getfixturevalue(server_fixture)

    error = failure(transport.open_connection, params(server, "starttls"))

    assert error.kind == SERVER
    assert "STARTTLS" in error.text
    assert error.hint
    assert server.auth_attempts == 0  # the credentials never left the client
    assert server.received == []


def test_the_clear_text_auth_server_does_count_logins(plain_auth_server):
    # Control for the test above: with security "none" the same server sees the login.
    deliver(params(plain_auth_server, "none"))

    assert plain_auth_server.auth_attempts == 1
    assert plain_auth_server.wait_for(1)[0].authenticated_as == SMTP_USER


def test_certificate_for_another_name_is_refused(foreign_cert_server):
    error = failure(transport.open_connection, params(foreign_cert_server, "starttls"))

    assert error.kind == SERVER
    assert "Hostname mismatch" in error.text
    assert "'localhost'" in error.text
    assert "another host name" in error.hint
    assert foreign_cert_server.auth_attempts == 0


def test_certificate_from_an_untrusted_ca_is_refused(untrusted_cert_server):
    error = failure(transport.open_connection, params(untrusted_cert_server, "ssl"))

    assert error.kind == SERVER
    assert "certificate" in error.text
    assert "trusted certificate authority" in error.hint
    assert untrusted_cert_server.auth_attempts == 0


def test_certificates_are_verified_without_a_ca_file(settings, ssl_server):
    # The test CA is trusted only through WAGTAIL_OWN_SMTP_CA_FILE; without it, it is not.
    settings.WAGTAIL_OWN_SMTP_CA_FILE = None

    error = failure(transport.open_connection, params(ssl_server, "ssl"))

    assert error.kind == SERVER
    assert ssl_server.auth_attempts == 0


def test_unreadable_ca_file_makes_mail_wait(settings, ssl_server, tmp_path):
    settings.WAGTAIL_OWN_SMTP_CA_FILE = str(tmp_path / "missing.pem")

    error = failure(transport.open_connection, params(ssl_server, "ssl"))

    assert error.kind == TRANSIENT
    assert "WAGTAIL_OWN_SMTP_CA_FILE" in error.hint


def test_ssl_against_a_starttls_port_explains_itself(starttls_server):
    error = failure(transport.open_connection, params(starttls_server, "ssl"))

    assert error.kind == SERVER
    assert "WRONG_VERSION_NUMBER" in error.text
    assert "STARTTLS" in error.hint and "587" in error.hint
    assert starttls_server.auth_attempts == 0


def test_starttls_against_an_implicit_tls_port_explains_itself(settings, ssl_server):
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 0.5
    started = time.monotonic()

    error = failure(transport.open_connection, params(ssl_server, "starttls"))

    assert time.monotonic() - started < 1.5
    assert error.kind == TRANSIENT
    assert "no greeting" in error.hint
    assert "465" in error.hint
    assert ssl_server.auth_attempts == 0


def test_sender_refused_at_mail_from_is_a_server_failure(mail_server):
    mail_server.behaviour.mail_reply = "553 5.7.1 Sender not allowed"

    error = failure(deliver, params(mail_server, "starttls"))

    assert error.kind == SERVER
    assert error.code == 553
    assert error.text == "553 5.7.1 Sender not allowed"
    assert mail_server.received == []


def test_private_address_is_refused_without_connecting(settings, silent_server):
    settings.WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = False

    for host in ("localhost", "127.0.0.1"):
        error = failure(
            transport.open_connection, params(silent_server, "none", host=host, username="")
        )
        assert error.kind == SERVER
        assert "private or reserved" in error.text

    time.sleep(0.3)  # the server's accept loop polls every 0.2 s
    assert silent_server.connections == []


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "127.0.0.1",
        "127.1",
        "2130706433",
        "10.0.0.1",
        "192.168.1.10",
        "172.16.0.1",
        "100.64.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "fd00::1",
        "169.254.1.1",
        "fe80::1",
        "224.0.0.1",
        "0.0.0.0",
        "240.0.0.1",
    ],
)
def test_resolve_refuses_private_and_reserved_addresses(settings, host):
    settings.WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = False

    with pytest.raises(transport.PrivateHostError):
        transport.resolve(host, 587)


def test_resolve_accepts_public_addresses_and_allowed_private_ones(settings):
    settings.WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = False
    assert transport.resolve("93.184.216.34", 587) == "93.184.216.34"

    settings.WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = True
    assert transport.resolve("127.0.0.1", 587) == "127.0.0.1"


# -- the connection goes to the checked address, TLS checks the name --------------------------


def test_connection_goes_to_the_checked_address_with_the_name_kept_for_tls(
    fake_dns, foreign_cert_server
):
    # The certificate is for "other.example"; DNS answers 127.0.0.1 first, 127.0.0.2 after.
    answers, lookups = fake_dns
    answers["other.example"] = ["127.0.0.1", "127.0.0.2"]

    deliver(params(foreign_cert_server, "starttls", host="other.example"))

    assert foreign_cert_server.wait_for(1)[0].authenticated_as == SMTP_USER
    assert lookups == ["other.example"]  # resolved once; a second lookup would hit 127.0.0.2


def test_tls_checks_the_host_name_not_the_address(fake_dns, starttls_server):
    answers, _lookups = fake_dns
    answers["mail.customer.example"] = ["127.0.0.1"]

    error = failure(
        transport.open_connection, params(starttls_server, "starttls", host="mail.customer.example")
    )

    assert error.kind == SERVER
    assert "'mail.customer.example'" in error.text
    assert starttls_server.auth_attempts == 0


def test_dns_rebinding_cannot_redirect_the_connection(
    settings, fake_dns, silent_server, monkeypatch
):
    # First answer public (passes the check), every later answer loopback (where the server is).
    settings.WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = False
    answers, lookups = fake_dns
    answers["smtp.customer.example"] = ["93.184.216.34", "127.0.0.1"]
    # Nothing but loopback may be reached from here: record where the connection would go and
    # refuse it instead of sending a packet there.
    attempted = []
    real_create_connection = socket.create_connection

    def create_connection(address, *args, **kwargs):
        attempted.append(address[0])
        if not address[0].startswith("127."):
            raise ConnectionRefusedError(111, "Connection refused")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)

    error = failure(
        transport.open_connection,
        params(silent_server, "none", host="smtp.customer.example", username=""),
    )

    assert error.kind == TRANSIENT
    assert lookups == ["smtp.customer.example"]
    assert attempted == ["93.184.216.34"]
    time.sleep(0.3)
    assert silent_server.connections == []


# -- failures of one message: MESSAGE / TRANSIENT ----------------------------------------------


def test_recipient_refused_is_a_message_failure(mail_server):
    mail_server.behaviour.refuse_recipients = {READER: "550 5.1.1 No such user"}

    error = failure(deliver, params(mail_server, "starttls"))

    assert error.kind == MESSAGE
    assert error.code == 550
    assert "550 5.1.1 No such user" in error.text
    assert mail_server.received == []


def test_recipient_deferred_is_transient(mail_server):
    mail_server.behaviour.refuse_recipients = {READER: "450 4.2.1 Mailbox busy"}

    error = failure(deliver, params(mail_server, "starttls"))

    assert error.kind == TRANSIENT
    assert "450 4.2.1 Mailbox busy" in error.text


def test_data_451_is_transient(mail_server):
    mail_server.behaviour.data_reply = "451 4.3.0 Try again later"

    error = failure(deliver, params(mail_server, "starttls"))

    assert error.kind == TRANSIENT
    assert error.code == 451
    assert error.text == "451 4.3.0 Try again later"
    assert mail_server.received == []


def test_data_554_is_a_message_failure(mail_server):
    mail_server.behaviour.data_reply = "554 5.7.1 Message rejected as spam"

    error = failure(deliver, params(mail_server, "starttls"))

    assert error.kind == MESSAGE
    assert error.text == "554 5.7.1 Message rejected as spam"


def test_non_ascii_address_goes_out_with_smtputf8(mail_server):
    deliver(params(mail_server, "starttls"), recipients=["jürgen@example.org"])

    assert mail_server.wait_for(1)[0].rcpt_tos == ["jürgen@example.org"]


def test_non_ascii_address_without_smtputf8_fails_the_message_only(mail_server):
    server_params = params(mail_server, "starttls")
    connection = transport.open_connection(server_params)
    try:
        # As if the server had not offered SMTPUTF8.
        del connection.esmtp_features["smtputf8"]
        error = failure(
            transport.send, connection, server_params, SMTP_USER, ["jürgen@example.org"], RAW
        )
        # The connection stays usable for the next message.
        transport.send(connection, server_params, SMTP_USER, [READER], RAW)
    finally:
        transport.close_quietly(connection)

    assert error.kind == MESSAGE
    assert "SMTPUTF8" in error.text
    assert [r.rcpt_tos for r in mail_server.wait_for(1)] == [[READER]]


# -- no answer: TRANSIENT within the timeout ---------------------------------------------------


@pytest.mark.parametrize("security", ["none", "starttls", "ssl"])
def test_silent_server_times_out(settings, silent_server, security):
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 0.5
    started = time.monotonic()

    error = failure(transport.open_connection, params(silent_server, security))

    assert time.monotonic() - started < 0.5 + 1
    assert error.kind == TRANSIENT
    assert error.text == "The server did not answer in time."


def test_explicit_timeout_argument_wins(silent_server):
    started = time.monotonic()

    failure(transport.open_connection, params(silent_server, "starttls"), timeout=0.3)

    assert time.monotonic() - started < 1.3


@pytest.mark.parametrize("security", ["none", "starttls", "ssl"])
def test_dropping_server_is_transient(dropping_server, security):
    error = failure(transport.open_connection, params(dropping_server, security))

    assert error.kind == TRANSIENT
    assert error.text == "The server closed the connection."


def test_nothing_listening_is_transient(plain_server):
    port = plain_server.port
    plain_server.stop()

    error = failure(
        transport.open_connection,
        ServerParams(host="localhost", port=port, security="none", from_email=SMTP_USER),
    )

    assert error.kind == TRANSIENT
    assert "refused the connection" in error.text


def test_unknown_host_is_transient():
    error = failure(
        transport.open_connection,
        ServerParams(
            host="no-such-host.invalid", port=587, security="starttls", from_email="a@b.c"
        ),
    )

    assert error.kind == TRANSIENT
    assert "could not be resolved" in error.text


# -- test_connection: everything but sending -----------------------------------------------


def test_test_connection_sends_nothing(starttls_server):
    transport.test_connection(params(starttls_server, "starttls"))

    assert starttls_server.auth_attempts == 1
    time.sleep(0.2)
    assert starttls_server.received == []


def test_test_connection_detects_a_refused_sender(starttls_server):
    starttls_server.behaviour.mail_reply = "553 5.7.1 Sender not allowed"

    error = failure(transport.test_connection, params(starttls_server, "starttls"))

    assert error.kind == SERVER
    assert error.text == "553 5.7.1 Sender not allowed"


def test_test_connection_reports_a_wrong_password(starttls_server):
    error = failure(transport.test_connection, params(starttls_server, "starttls", password="x"))

    assert error.kind == SERVER
    assert error.code == 535


# -- hints keyed on the port ---------------------------------------------------------------


def hint(port, security, **kwargs):
    return hints.hint_for(
        ServerParams(host="smtp.example.org", port=port, security=security, from_email="a@b.c"),
        **kwargs,
    )


def test_port_hints():
    assert "465" in hint(465, "starttls") and "SSL/TLS" in hint(465, "starttls")
    assert "465" in hint(465, "none")
    assert "587" in hint(587, "ssl") and "STARTTLS" in hint(587, "ssl")
    assert "25" in hint(25, "ssl")
    assert hint(587, "starttls") == ""
    assert hint(465, "ssl") == ""
    assert hint(25, "none") == ""


def test_reply_hints_come_before_port_hints():
    assert "username or password" in hint(465, "starttls", code=535, text="535 5.7.8 Bad")
    assert "Microsoft 365" in hint(587, "starttls", code=535, text="535 5.7.139 Denied")
    assert "quota" in hint(587, "starttls", code=452, text="452 4.5.4 hmm 5.4.5 quota")


def test_server_params_repr_hides_the_password():
    assert SMTP_PASSWORD not in repr(
        ServerParams("h", 587, "starttls", "a@b.c", "u", SMTP_PASSWORD)
    )


def test_a_daily_quota_reply_backs_the_site_off_for_a_day(starttls_server):
    # Gmail answers a used-up daily quota with a 5xx code; the quota resets, so mail must wait.
    starttls_server.behaviour.refuse_recipients = {
        READER: "550 5.4.5 Daily user sending quota exceeded."
    }

    error = failure(deliver, params(starttls_server, "starttls"))

    assert error.kind == replies.THROTTLE and error.window == replies.DAY
    assert "550 5.4.5 Daily user sending quota exceeded." in error.text
    assert "quota" in error.hint
