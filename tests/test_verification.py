"""Saving a server sends a confirmation link through it; the link activates it, once."""

import datetime

import pytest
from django.contrib.messages import constants
from django.utils import timezone

from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.helpers_admin import (
    action_url,
    edit_url,
    errors,
    link_token,
    make_site,
    messages_of,
    save_settings,
    stored,
    successes,
    verify_url,
)
from wagtail_own_smtp import crypto, servers, verification
from wagtail_own_smtp.models import SendRecord, SmtpSettings
from wagtail_own_smtp.signals import server_verified

pytestmark = pytest.mark.django_db

SENT_TO = f"A test message with a confirmation link was sent to {SMTP_USER}."


@pytest.fixture
def site():
    return make_site()


@pytest.fixture
def verified_site(admin_client, site, starttls_server):
    """A site whose STARTTLS server was saved and confirmed by link."""
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])
    admin_client.post(verify_url(token))
    assert stored(site).verification_status == "verified"
    starttls_server.received.clear()
    return site


def test_save_sends_confirmation_and_the_link_activates_the_server(
    admin_client, site, starttls_server
):
    verified_signals = []
    server_verified.connect(lambda **kw: verified_signals.append(kw["settings"]), weak=False)

    response = save_settings(admin_client, site, starttls_server)

    # The red message of the help page, and the status panel in red.
    assert response.status_code == 200
    assert any(text.startswith(SENT_TO) for text in errors(response))
    assert 'data-own-smtp-status="pending"' in response.text
    assert "help-critical" in response.text
    smtp_settings = stored(site)
    assert smtp_settings.verification_status == "pending"
    assert smtp_settings.verified_at is None

    # The message went through the new server, logged in, to the sender address.
    received = starttls_server.wait_for(1)[0]
    assert received.authenticated_as == SMTP_USER
    assert received.mail_from == SMTP_USER
    assert received.rcpt_tos == [SMTP_USER]
    message = received.message
    assert message["From"].addresses[0].display_name == "Customer Surveys"
    assert message["From"].addresses[0].addr_spec == SMTP_USER
    assert message.get_body(("plain",)) is not None
    assert message.get_body(("html",)) is not None
    token = link_token(received)
    assert token in message.get_body(("html",)).get_content()
    # The confirmation counts toward the server's rolling windows.
    assert SendRecord.objects.filter(site=site).count() == 1

    # GET shows what will be activated and changes nothing.
    page = admin_client.get(verify_url(token))
    assert page.status_code == 200
    assert f"{starttls_server.port}" in page.text
    assert "STARTTLS" in page.text
    assert 'method="post"' in page.text
    assert stored(site).verification_status == "pending"
    assert stored(site).verified_host == ""

    # POST activates; the editor lands on the settings, green.
    response = admin_client.post(verify_url(token), follow=True)
    assert response.redirect_chain[-1][0] == edit_url(site)
    assert "The new server settings are now active." in successes(response)
    assert "data-own-smtp-verified" in response.text

    smtp_settings = stored(site)
    assert smtp_settings.verification_status == "verified"
    assert smtp_settings.verified_at is not None
    assert smtp_settings.verified_host == "localhost"
    assert smtp_settings.verified_port == starttls_server.port
    assert smtp_settings.verified_security == "starttls"
    assert smtp_settings.verified_from_email == SMTP_USER
    assert smtp_settings.verified_username == SMTP_USER
    assert servers.verified_params(smtp_settings).password == SMTP_PASSWORD
    assert smtp_settings.verified_fingerprint == servers.fingerprint(smtp_settings)
    assert smtp_settings.token_hash == ""
    assert smtp_settings.sending_paused is False
    assert [s.pk for s in verified_signals] == [smtp_settings.pk]


def test_the_token_is_stored_only_as_a_hash(admin_client, site, starttls_server):
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])
    smtp_settings = stored(site)
    assert len(token) >= 43  # 256 random bits, URL-safe
    assert token not in smtp_settings.token_hash
    assert smtp_settings.token_hash == verification.token_digest(token)


def test_a_link_works_only_once(admin_client, client, site, starttls_server):
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])
    assert client.post(verify_url(token)).status_code == 302
    verified_at = stored(site).verified_at

    again = client.post(verify_url(token))
    assert again.status_code == 404
    assert "not valid" in again.text
    assert client.get(verify_url(token)).status_code == 404
    assert stored(site).verified_at == verified_at


def test_anyone_with_the_link_can_confirm_without_login(
    client, admin_client, site, starttls_server
):
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])

    response = client.post(verify_url(token), follow=True)

    # Not an editor: a small public page with the green message.
    assert response.status_code == 200
    assert "The new server settings are now active." in successes(response)
    assert stored(site).verification_status == "verified"


def test_an_expired_link_is_refused(admin_client, client, site, starttls_server, settings):
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])
    SmtpSettings.objects.filter(site=site).update(
        token_sent_at=timezone.now() - datetime.timedelta(seconds=3601)
    )
    settings.WAGTAIL_OWN_SMTP_VERIFICATION_MAX_AGE = 3600

    assert client.get(verify_url(token)).status_code == 410
    response = client.post(verify_url(token))
    assert response.status_code == 410
    assert "expired" in response.text
    assert stored(site).verification_status == "pending"
    assert stored(site).verified_at is None


def test_a_later_change_voids_the_link(admin_client, client, site, starttls_server, ssl_server):
    save_settings(admin_client, site, starttls_server)
    first = link_token(starttls_server.wait_for(1)[0])

    save_settings(admin_client, site, ssl_server, port=ssl_server.port, security="ssl")
    second = link_token(ssl_server.wait_for(1)[0])

    assert client.post(verify_url(first)).status_code == 404
    assert stored(site).verified_at is None
    assert client.post(verify_url(second)).status_code == 302
    assert stored(site).verified_port == ssl_server.port


def test_a_change_made_without_the_admin_voids_the_link_too(
    admin_client, client, site, starttls_server
):
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])
    SmtpSettings.objects.filter(site=site).update(from_email="other@customer.example")

    response = client.post(verify_url(token))

    assert response.status_code == 410
    assert stored(site).verified_at is None


def test_garbage_tokens_get_a_clear_page(client, site):
    for token in ["x", "a" * 43, "a" * 300, "%00abc" * 10]:
        response = client.get(f"/own-smtp/verify/{token}/")
        assert response.status_code == 404
        assert client.post(f"/own-smtp/verify/{token}/").status_code == 404


def test_a_wrong_password_shows_the_servers_reply(admin_client, site, starttls_server):
    response = save_settings(admin_client, site, starttls_server, password="wrong-password")

    [error] = errors(response)
    assert "535 5.7.8 Authentication credentials invalid" in error
    assert "rejected the username or password" in error
    # And the status panel shows it verbatim.
    assert "535 5.7.8 Authentication credentials invalid" in response.text
    smtp_settings = stored(site)
    assert smtp_settings.verification_status == "failed"
    assert smtp_settings.last_error == "535 5.7.8 Authentication credentials invalid"
    assert smtp_settings.token_hash == ""
    assert starttls_server.received == []
    assert SendRecord.objects.filter(site=site).count() == 0

    page = admin_client.get(edit_url(site))
    assert "535 5.7.8 Authentication credentials invalid" in page.text
    assert 'data-own-smtp-status="failed"' in page.text


def test_saving_again_unchanged_after_a_failure_does_not_send_again(
    admin_client, site, starttls_server
):
    save_settings(admin_client, site, starttls_server, password="wrong-password")
    attempts = starttls_server.auth_attempts

    response = save_settings(admin_client, site, starttls_server, password="", max_per_hour="50")

    assert errors(response) == []
    assert starttls_server.auth_attempts == attempts
    assert stored(site).verification_status == "failed"


def test_a_blank_password_keeps_the_stored_one(admin_client, verified_site, starttls_server):
    before = stored(verified_site)

    response = save_settings(admin_client, verified_site, starttls_server, password="")

    after = stored(verified_site)
    assert bytes(after.password_ciphertext) == bytes(before.password_ciphertext)
    assert after.password_version == before.password_version
    assert servers.current_params(after).password == SMTP_PASSWORD
    assert after.verification_status == "verified"
    assert errors(response) == []
    assert starttls_server.received == []


def test_typing_the_same_password_again_is_no_change(admin_client, verified_site, starttls_server):
    before = stored(verified_site)

    save_settings(admin_client, verified_site, starttls_server, password=SMTP_PASSWORD)

    assert stored(verified_site).password_version == before.password_version
    assert starttls_server.received == []


def test_a_new_password_needs_a_new_confirmation(admin_client, verified_site, starttls_server):
    before = stored(verified_site)
    response = save_settings(admin_client, verified_site, starttls_server, password="n3w")

    after = stored(verified_site)
    assert after.password_version == before.password_version + 1
    # The test server only knows the old password: the confirmation fails, the old one stays.
    assert after.verification_status == "failed"
    assert "535 5.7.8" in errors(response)[0]
    assert servers.verified_params(after).password == SMTP_PASSWORD


def test_the_remove_password_checkbox(admin_client, site, plain_server):
    save_settings(admin_client, site, plain_server, security="none", username="", password="s3cret")
    assert stored(site).has_password
    plain_server.wait_for(1)

    response = save_settings(
        admin_client,
        site,
        plain_server,
        security="none",
        username="",
        password="",
        remove_password="on",
    )

    smtp_settings = stored(site)
    assert not smtp_settings.has_password
    assert servers.current_params(smtp_settings).password == ""
    assert "No password is stored." in response.text
    # The password is part of what was verified: a new confirmation went out.
    assert len(plain_server.wait_for(2)) == 2


def test_limits_and_mode_never_need_a_new_confirmation(
    admin_client, verified_site, starttls_server
):
    response = save_settings(
        admin_client,
        verified_site,
        starttls_server,
        password="",
        delivery_mode="platform",
        min_interval="2.5",
        max_per_hour="100",
        max_per_day="1000",
        from_name="Another display name",
    )

    assert errors(response) == []
    smtp_settings = stored(verified_site)
    assert smtp_settings.verification_status == "verified"
    assert smtp_settings.max_per_hour == 100
    assert smtp_settings.delivery_mode == "platform"
    assert starttls_server.received == []


def test_the_verified_server_stays_in_use_while_a_change_waits(
    admin_client, verified_site, starttls_server, ssl_server
):
    response = save_settings(
        admin_client, verified_site, ssl_server, port=ssl_server.port, security="ssl"
    )

    assert any(text.startswith(SENT_TO) for text in errors(response))
    smtp_settings = stored(verified_site)
    assert smtp_settings.verification_status == "pending"
    assert smtp_settings.port == ssl_server.port
    params = servers.verified_params(smtp_settings)
    assert (params.port, params.security) == (starttls_server.port, "starttls")
    assert f"verified server localhost:{starttls_server.port}" in response.text


def test_changing_back_to_the_verified_server_voids_the_pending_link(
    admin_client, client, verified_site, starttls_server, ssl_server
):
    save_settings(admin_client, verified_site, ssl_server, port=ssl_server.port, security="ssl")
    token = link_token(ssl_server.wait_for(1)[0])

    save_settings(admin_client, verified_site, starttls_server, password="")

    smtp_settings = stored(verified_site)
    assert smtp_settings.verification_status == "verified"
    assert smtp_settings.token_hash == ""
    assert client.post(verify_url(token)).status_code == 404
    assert starttls_server.received == []


def test_port_hint_after_saving(admin_client, site, settings):
    # Port 465 with STARTTLS: saved, with a warning; nothing listens there, so it fails too.
    settings.WAGTAIL_OWN_SMTP_TIMEOUT = 1
    response = save_settings(admin_client, site, port=465, security="starttls")

    assert stored(site).port == 465
    texts = [text for level, text in messages_of(response) if level != constants.SUCCESS]
    assert any("Port 465 usually expects SSL/TLS" in text for text in texts)


def test_send_the_confirmation_again(admin_client, client, site, starttls_server):
    save_settings(admin_client, site, starttls_server)
    first = link_token(starttls_server.wait_for(1)[0])
    response = admin_client.post(action_url("resend", site), follow=True)

    assert response.redirect_chain[-1][0] == edit_url(site)
    assert any(text.startswith(SENT_TO) for text in errors(response))
    second = link_token(starttls_server.wait_for(2)[1])
    assert second != first
    assert client.post(verify_url(first)).status_code == 404
    assert client.post(verify_url(second)).status_code == 302


def test_without_a_request_the_link_uses_the_sites_root_url(site, starttls_server):
    smtp_settings = SmtpSettings.for_site(site)
    smtp_settings.host, smtp_settings.port = "localhost", starttls_server.port
    smtp_settings.from_email = smtp_settings.username = SMTP_USER
    smtp_settings.set_password(SMTP_PASSWORD)
    smtp_settings.save()

    result = verification.send_confirmation(smtp_settings)

    assert result.sent
    body = starttls_server.wait_for(1)[0].message.get_body(("plain",)).get_content()
    assert f"{site.root_url}/own-smtp/verify/" in body


def test_an_undecryptable_password_is_reported_not_crashed(
    admin_client, site, starttls_server, settings
):
    save_settings(admin_client, site, starttls_server)
    starttls_server.wait_for(1)
    settings.WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = [crypto.Fernet.generate_key().decode()]

    page = admin_client.get(edit_url(site))
    assert page.status_code == 200
    assert "cannot be decrypted" in page.text

    response = admin_client.post(action_url("resend", site), follow=True)
    assert response.status_code == 200
    assert any("cannot be decrypted" in text for text in errors(response))
    assert stored(site).verification_status == "failed"
    assert len(starttls_server.received) == 1


def test_confirming_kicks_the_dispatcher(
    admin_client, site, starttls_server, django_capture_on_commit_callbacks
):
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    from wagtail_own_smtp.tasks import DISPATCH_TASK

    def dispatch_runs():
        payloads = OrmQ.objects.values_list("payload", flat=True)
        return [p for p in payloads if SignedPackage.loads(p)["func"] == DISPATCH_TASK]

    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])
    queued = len(dispatch_runs())

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(verify_url(token))

    # Mail that waited for a verified server is dispatched now, not at the next minute (the
    # domain check queued beside it is no dispatch run).
    assert len(dispatch_runs()) == queued + 1


@pytest.mark.parametrize("i18n", [False, True])
def test_the_message_is_in_the_sites_default_language(
    admin_client, starttls_server, settings, i18n
):
    from django.utils import translation
    from django.utils.formats import date_format
    from wagtail.models import Locale, Page, Site

    if i18n:
        # The site's root page is German while the platform's language stays English.
        settings.WAGTAIL_I18N_ENABLED = True
        settings.WAGTAIL_CONTENT_LANGUAGES = [("en", "English"), ("de", "Deutsch")]
        make_site()
        german = Locale.objects.get_or_create(language_code="de")[0]
        home = Page.get_first_root_node().add_child(instance=Page(title="Start", locale=german))
        site = Site.objects.create(hostname="umfrage.example", root_page=home, site_name="Umfrage")
    else:
        settings.LANGUAGE_CODE = "de"
        site = make_site()

    save_settings(admin_client, site, starttls_server)

    body = starttls_server.wait_for(1)[0].message.get_body(("plain",)).get_content()
    expires_at = verification.link_expires_at(stored(site))
    with translation.override("de"):
        german_date = date_format(expires_at, "DATETIME_FORMAT")
    with translation.override("en"):
        english_date = date_format(expires_at, "DATETIME_FORMAT")
    assert german_date != english_date
    assert german_date in body


def test_a_display_name_with_umlauts_commas_and_quotes(admin_client, site, starttls_server):
    name = 'Müller, Umfragen "Team"'
    save_settings(admin_client, site, starttls_server, from_name=name)

    sender = starttls_server.wait_for(1)[0].message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (name, SMTP_USER)


def test_a_verified_server_offers_the_test_but_no_new_link(admin_client, verified_site):
    page = admin_client.get(edit_url(verified_site))

    assert action_url("test_connection", verified_site) in page.text
    assert action_url("resend", verified_site) not in page.text


@pytest.mark.django_db(transaction=True)
def test_two_clicks_at_once_activate_only_once(admin_client, starttls_server):
    import threading

    from django.db import OperationalError, connections

    site = make_site()
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])
    start = threading.Barrier(2)
    outcomes = []

    def click():
        start.wait()
        try:
            verification.confirm(token)
            outcomes.append("verified")
        except verification.InvalidLink:
            outcomes.append("refused")
        except OperationalError:
            # SQLite without IMMEDIATE transactions lets one of two writers fail.
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["refused", "verified"]
    assert stored(site).verification_status == "verified"


def test_clearing_the_server_voids_the_pending_link(admin_client, client, site, starttls_server):
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])

    save_settings(
        admin_client, site, starttls_server, delivery_mode="platform", host="", password=""
    )

    assert stored(site).verification_status == "unverified"
    assert client.post(verify_url(token)).status_code == 404
    assert stored(site).verified_at is None


def test_a_paused_server_keeps_its_failure_until_confirmed_again(
    admin_client, client, verified_site, starttls_server
):
    # What the dispatcher records when the verified server refuses the login.
    SmtpSettings.objects.filter(site=verified_site).update(
        sending_paused=True,
        verification_status="failed",
        last_error="535 5.7.8 Authentication credentials invalid",
    )

    response = save_settings(
        admin_client, verified_site, starttls_server, password="", max_per_day="5"
    )
    assert stored(verified_site).verification_status == "failed"
    assert "Sending through your own server is paused" in response.text

    admin_client.post(action_url("resend", verified_site))
    token = link_token(starttls_server.wait_for(1)[0])
    client.post(verify_url(token))

    smtp_settings = stored(verified_site)
    assert smtp_settings.verification_status == "verified"
    assert smtp_settings.sending_paused is False
    assert smtp_settings.last_error == ""


@pytest.mark.django_db(transaction=True)
def test_a_confirmation_that_committed_answers_green_while_the_broker_is_down(
    admin_client, starttls_server, monkeypatch
):
    import socket

    from django.test import Client
    from django_q.conf import Conf

    site = make_site()
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])
    # django-q2 now enqueues into Redis on a loopback port where nothing listens.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", {"host": "127.0.0.1", "port": dead_port})

    response = Client(raise_request_exception=False).post(verify_url(token), follow=True)

    assert response.status_code == 200
    assert "The new server settings are now active." in response.text
    assert stored(site).verification_status == "verified"
