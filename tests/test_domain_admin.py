"""The sender-domain check in the admin and on the command line: the checklist in the status panel,
"Check again" and who may click it, when checks are queued, and the commands."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from tests.domain_helpers import ADDRESS, DOMAIN, good_zones, spf, verified_server
from tests.helpers_admin import (
    action_url,
    edit_url,
    errors,
    form_data,
    link_token,
    make_site,
    save_settings,
    successes,
    verify_url,
    warnings,
)
from tests.helpers_outbox import denied, editor_client
from wagtail_own_smtp import tasks
from wagtail_own_smtp.domain_status import CHECK_TASK, check_all_task, check_site

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    return make_site()


def queued_checks():
    """The domain checks waiting in django-q2's queue, as (site pk, fresh)."""
    packages = [SignedPackage.loads(payload) for (payload,) in OrmQ.objects.values_list("payload")]
    return [tuple(package["args"]) for package in packages if package["func"] == CHECK_TASK]


def test_the_status_panel_lists_each_line_with_the_record_to_add(admin_client, dns_server, site):
    dns_server.replace(good_zones(spf=spf("v=spf1 ip4:198.51.100.7 ~all"), dmarc=None))
    check_site(verified_server(site), fresh=True)

    page = admin_client.get(edit_url(site)).text

    assert "Will mail from example.test arrive?" in page
    assert 'data-own-smtp-domain-line="spf" data-status="attention"' in page
    assert 'data-own-smtp-domain-line="dmarc" data-status="attention"' in page
    assert 'data-own-smtp-domain-line="dkim" data-status="pass"' in page
    assert 'data-own-smtp-domain-line="blocklists" data-status="pass"' in page
    assert "ends with ~all: receivers take its mail as suspicious" in page
    assert f"v=spf1 ip4:198.51.100.7 ip4:{ADDRESS} ~all" in page
    assert f"_dmarc.{DOMAIN}" in page
    assert "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.test" in page
    assert "Needs attention" in page and "Passes" in page
    # Why each line matters, and what alignment means for this site.
    assert "Receivers compare the server that delivers a message" in page
    assert "a relay or smarthost" in page


def test_hostile_text_from_dns_is_escaped_in_the_panel(admin_client, dns_server, site):
    dns_server.replace(
        good_zones(
            spf=spf('v=spf1 <script>alert("spf")</script> -all'),
            **{"10.2.0.192.bl.test": [("A", "127.0.0.2"), ("TXT", "<b onclick=x()>listed</b>")]},
        )
    )
    check_site(verified_server(site), fresh=True)

    page = admin_client.get(edit_url(site)).text

    assert '<script>alert("spf")</script>' not in page
    assert "&lt;script&gt;alert(&quot;spf&quot;)&lt;/script&gt;" in page
    assert "<b onclick" not in page and "&lt;b onclick=x()&gt;listed&lt;/b&gt;" in page


def test_before_the_first_check_the_panel_says_it_runs_in_the_background(admin_client, site):
    verified_server(site)

    page = admin_client.get(edit_url(site)).text

    assert "data-own-smtp-domain-pending" in page and "data-own-smtp-check-domain" in page


def test_without_a_verified_server_there_is_no_checklist(admin_client, site):
    smtp_settings = verified_server(site)
    smtp_settings.verified_at = None
    smtp_settings.save()

    assert "data-own-smtp-domain-check" not in admin_client.get(edit_url(site)).text


def test_check_again_queues_a_fresh_check_after_the_commit(
    admin_client, site, django_capture_on_commit_callbacks
):
    verified_server(site)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(action_url("check_domain", site), follow=True)

    assert response.redirect_chain[-1][0] == edit_url(site)
    assert successes(response) == [
        "The check of example.test runs in the background; reload this page in a minute to see "
        "the result."
    ]
    assert queued_checks() == [(site.pk, True)]


def test_check_again_without_a_verified_server_queues_nothing(admin_client, site):
    response = admin_client.post(action_url("check_domain", site), follow=True)

    assert errors(response)
    assert queued_checks() == []


def test_check_again_needs_post_csrf_and_the_sites_permission(django_user_model, site, admin_user):
    second = make_site("second.example", default=False, name="Second site")
    verified_server(site)
    verified_server(second)

    other_editor = editor_client(django_user_model, "other-editor", sites=[second])
    assert denied(other_editor.post(action_url("check_domain", site)))
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(action_url("check_domain", site)).status_code == 403
    assert strict.get(action_url("check_domain", site)).status_code == 405
    assert queued_checks() == []


def test_confirming_a_server_queues_a_check_of_its_domain(
    admin_client, site, starttls_server, django_capture_on_commit_callbacks
):
    save_settings(admin_client, site, starttls_server)
    token = link_token(starttls_server.wait_for(1)[0])

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(verify_url(token))

    assert queued_checks() == [(site.pk, True)]


def test_a_new_dkim_selector_is_checked_when_saved(
    admin_client, dns_server, site, starttls_server, django_capture_on_commit_callbacks
):
    dns_server.replace(good_zones())
    check_site(verified_server(site, host="localhost", sender="mailer@customer.example"))
    data = form_data(starttls_server, dkim_selector="s2026", password="")

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(edit_url(site), data, follow=True)

    assert response.status_code == 200
    assert queued_checks()[-1] == (site.pk, True)


def test_a_selector_that_is_no_dns_label_is_refused(admin_client, site, starttls_server):
    response = admin_client.post(
        edit_url(site), form_data(starttls_server, dkim_selector="<x>"), follow=True
    )

    assert "dkim_selector" in response.context["form"].errors


def test_the_daily_schedule_starts_tomorrow_and_queues_only_sites_with_their_own_server(site):
    (schedule,) = Schedule.objects.filter(name=tasks.DOMAINS_SCHEDULE_NAME)
    assert schedule.func == tasks.DOMAINS_TASK and schedule.schedule_type == Schedule.DAILY
    assert schedule.next_run > timezone.now() + timedelta(hours=23)

    verified_server(site)
    platform = verified_server(make_site("platform.example", default=False))
    platform.delivery_mode = "platform"
    platform.save()
    unverified = verified_server(make_site("new.example", default=False))
    unverified.verified_at = None
    unverified.save()

    assert check_all_task() == 1
    assert queued_checks() == [(site.pk, False)]


@pytest.mark.django_db(transaction=True)
def test_queueing_the_checks_keeps_the_callers_database_connection(site):
    """The broker is handed each site's check without closing the database connection (one
    reconnect per site otherwise)."""
    from django.db import connection

    verified_server(site)
    verified_server(make_site("second.example", default=False))
    connection.ensure_connection()
    before = connection.connection
    assert check_all_task() == 2
    assert connection.connection is before
    assert len(queued_checks()) == 2


def test_the_command_checks_every_site_and_prints_the_records(dns_server, site):
    dns_server.replace(good_zones(dkim=None))
    verified_server(site)
    out = StringIO()

    call_command("own_smtp_check_domains", stdout=out)

    text = out.getvalue()
    assert f"localhost:80 (#{site.pk}): example.test, checked" in text
    assert "3 pass, 1 needs attention, 0 could not be checked" in text
    assert "mail._domainkey.example.test TXT v=DKIM1; k=rsa; p=<your server's public key>" in text


def test_the_command_says_when_no_site_has_its_own_server(site):
    out = StringIO()
    call_command("own_smtp_check_domains", stdout=out)
    assert out.getvalue().strip() == "No site sends through its own verified server."


def test_own_smtp_status_gives_the_checks_summary(dns_server, site):
    dns_server.replace(good_zones())
    check_site(verified_server(site))
    out = StringIO()

    call_command("own_smtp_status", stdout=out)

    assert "sender domain: example.test, checked" in out.getvalue()
    assert "4 pass, 0 need attention, 0 could not be checked" in out.getvalue()


def test_the_checklist_reads_in_german(client, django_user_model, dns_server, site):
    from wagtail.users.models import UserProfile

    dns_server.replace(good_zones(dmarc=None))
    check_site(verified_server(site), fresh=True)
    user = django_user_model.objects.create_superuser("redakteurin", "r@example.org", "pw")
    profile = UserProfile.get_for_user(user)
    profile.preferred_language = "de"
    profile.save()
    client.force_login(user)

    page = client.get(edit_url(site)).text

    assert "Kommt Mail von example.test an?" in page
    assert "Braucht Aufmerksamkeit" in page and "Bestanden" in page
    assert "Erneut prüfen" in page


def test_clicks_on_check_again_within_a_minute_queue_one_check(
    admin_client, site, django_capture_on_commit_callbacks
):
    verified_server(site)

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(action_url("check_domain", site))
        response = admin_client.post(action_url("check_domain", site), follow=True)

    assert queued_checks() == [(site.pk, True)]
    assert warnings(response) == [
        "A check of example.test was asked for less than a minute ago; its result comes soon."
    ]


@pytest.mark.django_db(transaction=True)
def test_check_again_answers_while_the_broker_is_down(admin_client, monkeypatch):
    import socket

    from django_q.conf import Conf

    site = make_site()
    verified_server(site)
    # django-q2 now enqueues into Redis on a loopback port where nothing listens.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", {"host": "127.0.0.1", "port": dead_port})

    response = admin_client.post(action_url("check_domain", site), follow=True)

    assert response.status_code == 200
    assert successes(response)  # the daily schedule checks the site later
