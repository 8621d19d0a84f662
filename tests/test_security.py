"""Attack and abuse: wrong confirmation links (and the per-client limit on them), who may do what
on which site, header injection and oversized mail, DNS tricks, and one scan for the password
over every place it could leak to.

Covered elsewhere and not repeated here: the private, loopback, link-local, mapped and reserved
addresses, DNS rebinding at connect time, STARTTLS never falling back and certificates for
another name (test_transport.py); CSRF on the confirmation and the admin actions (test_admin.py);
the outbox's permission matrix (test_outbox.py); the HTML, logs, database rows, SQLite file,
mail and template proxy of the admin flow (test_secrets.py).
"""

import logging
import socket
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.messages import constants
from django.core import mail
from django.core.mail import EmailMessage
from django.db import connection
from django.template import RequestContext, Template
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from tests.conftest import SMTP_USER
from tests.delivery_helpers import own_server, real_backend
from tests.helpers_admin import (
    action_url,
    edit_url,
    form_data,
    link_token,
    make_site,
    save_settings,
    stored,
    verify_url,
)
from tests.helpers_outbox import editor_client
from tests.test_secrets import WRONG_PASSWORD, assert_no_secret
from wagtail_own_smtp import servers, transport, using_site
from wagtail_own_smtp.backends import MessageTooLarge
from wagtail_own_smtp.models import OutboundMessage, SendRecord, SmtpSettings

pytestmark = pytest.mark.django_db
__all__ = ["real_backend"]


@pytest.fixture
def site():
    return make_site()


@pytest.fixture
def second_site():
    return make_site("second.example", default=False, name="Second site")


def snapshot(site):
    """Every stored column of the site's settings, and what else a confirmation could change."""
    smtp_settings = SmtpSettings.objects.get(site=site)
    row = {}
    for field in SmtpSettings._meta.concrete_fields:
        value = getattr(smtp_settings, field.attname)
        row[field.attname] = bytes(value) if isinstance(value, memoryview) else value
    return row, SendRecord.objects.count(), OutboundMessage.objects.count()


@pytest.fixture
def pending(admin_client, site, starttls_server):
    """A confirmation sent and waiting; returns its token."""
    save_settings(admin_client, site, starttls_server)
    return link_token(starttls_server.wait_for(1)[0])


# -- confirmation links: refused without a 500 and without a change ---------------------------


def _expire(site, settings):
    settings.WAGTAIL_OWN_SMTP_VERIFICATION_MAX_AGE = 60
    SmtpSettings.objects.filter(site=site).update(
        token_sent_at=timezone.now() - timedelta(seconds=61)
    )


def _void(site, settings):
    # A later change of a verified parameter, made outside the admin (no new link sent).
    SmtpSettings.objects.filter(site=site).update(username="someone-else")


@pytest.mark.parametrize(
    "how, status",
    [("wrong", 404), ("expired", 410), ("reused", 404), ("voided", 410)],
)
def test_unusable_links_change_nothing(client, site, pending, settings, how, status):
    token = pending
    if how == "wrong":
        token = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    elif how == "expired":
        _expire(site, settings)
    elif how == "voided":
        _void(site, settings)
    elif how == "reused":
        assert Client().post(verify_url(token)).status_code == 302
    before = snapshot(site)

    for method in (client.get, client.head, client.post):
        response = method(verify_url(token))
        assert response.status_code == status, (method, response.status_code)
    page = client.get(verify_url(token))
    assert "Nothing was changed." in page.text

    assert snapshot(site) == before


def test_opening_a_valid_link_changes_nothing(client, site, pending):
    before = snapshot(site)

    assert client.get(verify_url(pending)).status_code == 200
    assert client.head(verify_url(pending)).status_code == 200

    assert snapshot(site) == before
    assert before[0]["verification_status"] == "pending"


def test_other_methods_are_refused(client, site, pending):
    before = snapshot(site)
    for method in (client.put, client.patch, client.delete, client.options):
        assert method(verify_url(pending)).status_code == 405
    assert snapshot(site) == before


# -- the per-client limit on wrong links ------------------------------------------------------

ATTACKER = "203.0.113.7"
EDITOR = "198.51.100.20"


def _wrong(client, n, address=ATTACKER, method="get"):
    token = f"{n:043d}"
    return getattr(client, method)(verify_url(token), REMOTE_ADDR=address)


def test_many_wrong_links_are_slowed_down_per_client(client, site, pending, settings):
    settings.WAGTAIL_OWN_SMTP_VERIFY_FAILURE_LIMIT = 5
    settings.WAGTAIL_OWN_SMTP_VERIFY_FAILURE_WINDOW = 600

    assert [_wrong(client, n, method=("get", "post")[n % 2]).status_code for n in range(5)] == [
        404
    ] * 5
    refused = _wrong(client, 5)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "600"
    assert "Too many invalid confirmation links" in refused.text
    assert "Wait 10 minutes" in refused.text
    assert "Nothing was changed." in refused.text
    assert stored(site).verification_status == "pending"

    # Anyone else is not affected: the editor's click works.
    editor = Client()
    assert editor.get(verify_url(pending), REMOTE_ADDR=EDITOR).status_code == 200
    assert editor.post(verify_url(pending), REMOTE_ADDR=EDITOR).status_code == 302
    assert stored(site).verification_status == "verified"


def test_a_valid_link_still_works_from_a_client_that_opened_many_wrong_ones(
    site, pending, settings
):
    # One office behind one address: a colleague's typos must not lock the editor out.
    settings.WAGTAIL_OWN_SMTP_VERIFY_FAILURE_LIMIT = 3
    office = Client()
    assert [_wrong(office, n, address=EDITOR).status_code for n in range(4)] == [404] * 3 + [429]

    page = office.get(verify_url(pending), REMOTE_ADDR=EDITOR)
    assert page.status_code == 200 and "Confirm" in page.text
    confirmed = office.post(verify_url(pending), REMOTE_ADDR=EDITOR, follow=True)
    assert confirmed.status_code == 200
    assert "The new server settings are now active." in confirmed.text
    assert stored(site).verification_status == "verified"
    # Wrong links from there are still refused.
    assert _wrong(office, 9, address=EDITOR).status_code == 429


def test_the_limit_ends_with_its_window(client, site, settings):
    settings.WAGTAIL_OWN_SMTP_VERIFY_FAILURE_LIMIT = 2
    settings.WAGTAIL_OWN_SMTP_VERIFY_FAILURE_WINDOW = 1
    _wrong(client, 1)
    _wrong(client, 2)
    assert _wrong(client, 3).status_code == 429
    time.sleep(1.1)
    assert _wrong(client, 4).status_code == 404


def test_an_ipv6_client_is_counted_by_its_64_network(client, site, settings):
    settings.WAGTAIL_OWN_SMTP_VERIFY_FAILURE_LIMIT = 3
    for n, address in enumerate(["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ff::ff"]):
        _wrong(client, n, address=address)
    assert _wrong(client, 9, address="2001:db8:1:2::99").status_code == 429
    assert _wrong(client, 9, address="2001:db8:1:3::1").status_code == 404


def test_expired_and_voided_links_do_not_count(client, site, pending, settings):
    # Only the holder of a real token can open those: an editor with an old message.
    settings.WAGTAIL_OWN_SMTP_VERIFY_FAILURE_LIMIT = 2
    _void(site, settings)
    for _ in range(4):
        assert client.get(verify_url(pending), REMOTE_ADDR=EDITOR).status_code == 410


def test_the_limit_can_be_switched_off(client, site, settings):
    settings.WAGTAIL_OWN_SMTP_VERIFY_FAILURE_LIMIT = None
    assert {_wrong(client, n).status_code for n in range(15)} == {404}


# -- who may do what, on which site ----------------------------------------------------------

WHO = ["superuser", "editor of site A", "editor without permission", "anonymous"]
ALLOWED = {
    "superuser": {"A", "B"},
    "editor of site A": {"A"},
    "editor without permission": set(),
    "anonymous": set(),
}


@pytest.fixture
def users(admin_client, django_user_model, site):
    return {
        "superuser": admin_client,
        "editor of site A": editor_client(django_user_model, "editor-a", [site]),
        "editor without permission": editor_client(django_user_model, "outsider"),
        "anonymous": Client(),
    }


def _saved(site, server, name):
    """The settings of ``site`` saved for ``server``, no confirmation sent."""
    SmtpSettings.for_site(site)
    SmtpSettings.objects.filter(site=site).update(
        host="localhost", port=server.port, from_email=SMTP_USER, username="", from_name=name
    )


def _outcome(response):
    if response.status_code == 302 and reverse("wagtailadmin_login") in response.url:
        return "login"
    if response.status_code == 302 and response.url == reverse("wagtailadmin_home"):
        return "denied"  # Wagtail's answer to PermissionDenied in the admin
    return "allowed" if response.status_code in (200, 302) else response.status_code


@pytest.mark.parametrize("who", WHO)
def test_permission_matrix_of_the_settings_and_its_actions(users, who, site, second_site):
    from example_project.local_smtp import LocalSmtpServer

    client = users[who]
    sites = {"A": site, "B": second_site}
    with LocalSmtpServer(security="none") as server:
        for label, target in sites.items():
            _saved(target, server, f"site {label}")
        for label, target in sites.items():
            allowed = label in ALLOWED[who]
            expected = "allowed" if allowed else ("login" if who == "anonymous" else "denied")
            before, contacted = snapshot(target)[0], len(server.received)

            actions = {
                "view settings": client.get(edit_url(target)),
                "test connection": client.post(action_url("test_connection", target)),
                "send confirmation": client.post(action_url("resend", target)),
                "save settings": client.post(
                    edit_url(target),
                    form_data(
                        server, security="none", username="", password="", from_name="changed"
                    ),
                ),
            }

            outcomes = {name: _outcome(response) for name, response in actions.items()}
            assert outcomes == dict.fromkeys(actions, expected), (who, label)
            after = snapshot(target)[0]
            if allowed:
                assert after["from_name"] == "changed"
                assert len(server.received) == contacted + 1  # the confirmation, once
            else:
                assert after == before, (who, label)
                assert len(server.received) == contacted
    assert server.auth_attempts == 0  # no login offered; nothing else reached the server


# -- header injection and size ----------------------------------------------------------------

ORIGINAL_FROM = "Survey Team <surveys@platform.example>"
INJECTION = "\r\nBcc: victim@example.org"


@pytest.mark.usefixtures("real_backend")
@pytest.mark.parametrize(
    "where",
    ["subject", "from name", "from address", "to", "cc", "bcc", "reply-to", "header value"],
)
def test_header_injection_anywhere_is_refused(site, starttls_server, where):
    own_server(site, starttls_server)
    kwargs = {
        "subject": "Invitation",
        "body": "Body",
        "from_email": ORIGINAL_FROM,
        "to": ["a@example.org"],
    }
    if where == "subject":
        kwargs["subject"] += INJECTION
    elif where == "from name":
        kwargs["from_email"] = f"Survey{INJECTION} <surveys@platform.example>"
    elif where == "from address":
        kwargs["from_email"] = f"surveys@platform.example{INJECTION}"
    elif where == "header value":
        kwargs["headers"] = {"X-Survey": f"42{INJECTION}"}
    else:
        kwargs[{"reply-to": "reply_to"}.get(where, where)] = [f"x@example.org{INJECTION}"]

    with pytest.raises(ValueError), using_site(site):
        EmailMessage(**kwargs).send()
    assert not OutboundMessage.objects.exists()


@pytest.mark.usefixtures("real_backend")
def test_an_attachment_filename_cannot_inject_headers(site, starttls_server):
    own_server(site, starttls_server)
    message = EmailMessage("Report", "Body", ORIGINAL_FROM, ["a@example.org"])
    message.attach(f"report.pdf{INJECTION}", b"%PDF-1.4", "application/pdf")

    try:
        with using_site(site):
            message.send()
    except ValueError:
        assert not OutboundMessage.objects.exists()
        return
    # Accepted: the name is encoded into the parameter, no header line of its own.
    raw = bytes(OutboundMessage.objects.get().raw_message)
    assert b"\r\nBcc:" not in raw


@pytest.mark.usefixtures("real_backend")
def test_a_batch_with_one_oversized_message_stores_none(site, starttls_server, settings):
    own_server(site, starttls_server)
    settings.WAGTAIL_OWN_SMTP_MAX_MESSAGE_SIZE = 50_000
    small = EmailMessage("Small", "Body", ORIGINAL_FROM, ["a@example.org"])
    big = EmailMessage("Big", "Body", ORIGINAL_FROM, ["b@example.org"])
    big.attach("data.bin", b"\0" * 60_000, "application/octet-stream")

    with pytest.raises(MessageTooLarge) as error, using_site(site):
        mail.get_connection().send_messages([small, big])

    # A clear error: how big, and the limit; base64 makes the attachment a third larger.
    assert "larger than the 50000 bytes this site may send" in str(error.value)
    assert int(str(error.value).split()[3]) > 80_000
    assert not OutboundMessage.objects.exists()


@pytest.mark.usefixtures("real_backend")
def test_fail_silently_skips_only_the_bad_message(site, starttls_server, settings):
    own_server(site, starttls_server)
    settings.WAGTAIL_OWN_SMTP_MAX_MESSAGE_SIZE = 2000
    good = EmailMessage("Good", "Body", ORIGINAL_FROM, ["a@example.org"])
    big = EmailMessage("Big", "x" * 5000, ORIGINAL_FROM, ["b@example.org"])
    injected = EmailMessage("Bad" + INJECTION, "Body", ORIGINAL_FROM, ["c@example.org"])

    with using_site(site):
        sent = mail.get_connection(fail_silently=True).send_messages([good, big, injected])

    assert sent == 1
    assert list(OutboundMessage.objects.values_list("subject", flat=True)) == ["Good"]


# -- DNS tricks and what the error texts tell an editor ---------------------------------------


@pytest.fixture
def fake_dns(monkeypatch):
    """Made-up names answer from ``answers`` (a list per lookup, the last one repeats); any other
    name fails as unknown, so no query ever leaves this machine. Connections beyond loopback are
    refused before a packet is sent, and recorded."""
    real_getaddrinfo = socket.getaddrinfo
    real_create_connection = socket.create_connection
    answers, lookups, attempted = {}, [], []

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            lookups.append(host)
            found = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            infos = []
            for address in found.split(","):
                infos += real_getaddrinfo(address, port, *args, **kwargs)
            return infos
        try:
            return real_getaddrinfo(host, port, *args, flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None

    def create_connection(address, *args, **kwargs):
        attempted.append(address[0])
        if not address[0].startswith("127."):
            raise ConnectionRefusedError(111, "Connection refused")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return answers, lookups, attempted


@pytest.mark.parametrize(
    "answer",
    [
        "93.184.216.34,10.1.2.3",  # one private address among public ones
        "10.1.2.3,93.184.216.34",
        "2002:a01:203::1",  # 6to4 of 10.1.2.3 (global to Python < 3.12)
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo
        "64:ff9b::a01:203",  # NAT64 of 10.1.2.3
        "fec0::1",  # IPv6 site-local (global to Python)
        "ff0e::1",  # global-scope multicast
    ],
)
def test_any_private_or_tunnelled_answer_is_refused(settings, fake_dns, answer):
    settings.WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = False
    answers, _lookups, attempted = fake_dns
    answers["smtp.customer.example"] = [answer]

    with pytest.raises(transport.SmtpFailure) as error:
        transport.open_connection(
            transport.ServerParams("smtp.customer.example", 587, "starttls", SMTP_USER)
        )

    assert "private or reserved" in error.value.text
    assert attempted == []


def test_rebinding_between_the_form_check_and_the_confirmation(
    admin_client, site, settings, fake_dns
):
    # The form's check sees a public address; the confirmation's own lookup gets loopback.
    settings.WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = False
    answers, lookups, attempted = fake_dns
    answers["smtp.customer.example"] = ["93.184.216.34", "127.0.0.1"]

    response = save_settings(admin_client, site, host="smtp.customer.example", port=587)

    assert lookups == ["smtp.customer.example", "smtp.customer.example"]
    assert attempted == []  # not even the public address: the second answer was refused
    assert stored(site).verification_status == "failed"
    errors = [text for level, text in _messages(response) if level == constants.ERROR]
    assert any("resolves to a private or reserved address" in text for text in errors)


def test_error_texts_do_not_tell_the_internal_address(admin_client, site, settings, fake_dns):
    # The editor learns that the name is internal, not where it points or what listens there.
    settings.WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = False
    answers, _lookups, attempted = fake_dns
    answers["intranet.customer.example"] = ["10.20.30.40"]

    response = admin_client.post(
        edit_url(site), form_data(host="intranet.customer.example", port=25)
    )

    assert response.status_code == 200
    [error] = response.context["form"].errors["host"]
    assert "intranet.customer.example resolves to a private or reserved address" in error
    assert "10.20.30.40" not in response.text
    assert attempted == []


def _messages(response):
    return [(message.level, str(message)) for message in response.context["messages"]]


# -- the password, wherever it could end up ---------------------------------------------------


def _scan_rows(cursor, table):
    cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
    rows = cursor.fetchall()
    for row in rows:
        for value in row:
            if isinstance(value, memoryview):
                value = bytes(value)
            assert_no_secret(value if isinstance(value, bytes) else str(value), table)
    return len(rows)


def _postgres_files():
    """The files of this database's tables and indexes, and the write-ahead log, after a
    checkpoint; None when they cannot be read here (not the database server's machine)."""
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
        cursor.execute("SHOW data_directory")
        (data_directory,) = cursor.fetchone()
        cursor.execute(
            "SELECT pg_relation_filepath(oid) FROM pg_class "
            "WHERE relkind IN ('r', 't', 'i', 'm') AND pg_relation_filepath(oid) IS NOT NULL"
        )
        relations = [Path(data_directory, path) for (path,) in cursor.fetchall()]
    wal = sorted(Path(data_directory, "pg_wal").glob("0*"), key=lambda p: p.stat().st_mtime)
    files = relations + wal[-3:]
    try:
        return [(path, path.read_bytes()) for path in files if path.exists()]
    except PermissionError:
        return None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("real_backend")
def test_the_password_shows_nowhere(admin_client, site, starttls_server, settings, caplog):
    """Every page an editor opens from a failed login to sent mail and a paused server, every log
    record, the exception texts, django-q2's task rows, Wagtail's log entries, the settings
    template proxy, every database row and, on PostgreSQL, the database's files."""
    from django_q.models import Task
    from django_q.tasks import async_task
    from wagtail.models import ModelLogEntry

    from wagtail_own_smtp import mailqueue

    pages, exceptions = {}, []
    with caplog.at_level(logging.DEBUG):
        pages["failed login"] = save_settings(
            admin_client, site, starttls_server, password=WRONG_PASSWORD
        )
        pages["saved"] = save_settings(admin_client, site, starttls_server)
        token = link_token(starttls_server.wait_for(1)[0])
        pages["test"] = admin_client.post(action_url("test_connection", site), follow=True)
        pages["confirm page"] = admin_client.get(verify_url(token))
        pages["confirmed"] = admin_client.post(verify_url(token), follow=True)

        # Mail through the verified server, dispatched by a django-q2 task (stored as a row).
        with using_site(site):
            EmailMessage("Invitation", "Body", ORIGINAL_FROM, ["a@example.org"]).send()
        async_task(mailqueue.DISPATCH_TASK, sync=True)
        # The server's password changes: the next dispatch fails the login and pauses the site.
        starttls_server.credentials = (SMTP_USER, "changed on the server")
        with using_site(site):
            EmailMessage("Reminder", "Body", ORIGINAL_FROM, ["b@example.org"]).send()
        async_task(mailqueue.DISPATCH_TASK, sync=True)
        message = OutboundMessage.objects.get(subject="Reminder")
        for name, url in {
            "settings, paused": edit_url(site),
            "outbox": reverse("wagtail_own_smtp_admin:outbox"),
            "outbox message": reverse("wagtail_own_smtp_admin:outbox_message", args=[message.pk]),
            "dashboard": reverse("wagtailadmin_home"),
            "history": reverse(
                "wagtailsettings:history", args=["wagtail_own_smtp", "smtpsettings", site.pk]
            )
            if _has_url("wagtailsettings:history")
            else edit_url(site),
        }.items():
            pages[name] = admin_client.get(url)

        for params in (servers.current_params(stored(site)), servers.verified_params(stored(site))):
            try:
                transport.test_connection(params)
            except transport.SmtpFailure as failure:
                exceptions.append(failure)

    assert stored(site).sending_paused, "the scenario did not reach the paused server"
    for where, response in pages.items():
        assert response.status_code == 200, where
        assert_no_secret(response.content, f"the page {where}")
    for record in caplog.records:
        if record.name.startswith("mail.log"):
            continue  # the test server's own log
        assert_no_secret(record.getMessage(), record.name)
        assert_no_secret(repr(record.args), record.name)
    assert len(exceptions) == 2
    for failure in exceptions:
        text = "".join(traceback.format_exception(failure)) + repr(failure.args) + failure.hint
        assert "535" in text
        assert_no_secret(text, "an exception")

    assert Task.objects.filter(func=mailqueue.DISPATCH_TASK).count() == 2
    assert ModelLogEntry.objects.filter(content_type__model="smtpsettings").exists()
    with connection.cursor() as cursor:
        scanned = {
            table: _scan_rows(cursor, table)
            for table in connection.introspection.table_names(cursor)
        }
    assert scanned["django_q_task"] and scanned["wagtailcore_modellogentry"]

    request = RequestFactory().get("/", HTTP_HOST=site.hostname)
    names = [field.name for field in SmtpSettings._meta.get_fields() if field.concrete]
    proxy = "".join(f"[{{{{ settings.wagtail_own_smtp.SmtpSettings.{name} }}}}]" for name in names)
    rendered = Template(proxy).render(RequestContext(request))
    assert f"[{starttls_server.port}]" in rendered
    assert_no_secret(rendered, "the settings template proxy")

    if connection.vendor == "postgresql":
        files = _postgres_files()
        if files is None:
            pytest.skip("the PostgreSQL data directory is not readable here")
        raw = b"".join(data for _path, data in files)
        assert SMTP_USER.encode() in raw, "the settings are not in the files: the scan saw nothing"
        for path, data in files:
            assert_no_secret(data, f"the database file {path.name}")


def _has_url(name):
    from django.urls import NoReverseMatch

    try:
        reverse(name, args=["wagtail_own_smtp", "smtpsettings", 1])
    except NoReverseMatch:
        return False
    return True
