"""Which server a message leaves through, tried as an attacker would: a site editor controls their
own server and reads what it receives, so system mail must never reach it whatever the request's
Host header says. Site A's own verified server and the platform's service are two real SMTP
servers on loopback; the default site has an own server as well (it must get no stray mail)."""

import re

import django
import pytest
from django.core import mail
from django.core.mail import mail_admins, mail_managers, send_mail
from django.test import Client
from wagtail.models import Page

from tests.delivery_helpers import make_site, own_server, statuses
from tests.testapp.models import FailingFormPage
from wagtail_own_smtp import using_site
from wagtail_own_smtp.backends import EmailBackend
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import OutboundMessage

pytestmark = pytest.mark.django_db

OWN_BACKEND = "wagtail_own_smtp.backends.EmailBackend"
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
SUPERUSER_EMAIL = "root@platform.example"
ADMINS = [("Platform admin", "ops@platform.example")]
MANAGERS = [("Platform manager", "managers@platform.example")]
# Wagtail's .../password_reset/confirm/<uid>/<token>/ and Django's .../reset/<uid>/<token>/
RESET_LINK = re.compile(r"/(?:reset|confirm)/[\w-]+/[\w-]+-[\w]+/")


@pytest.fixture
def platform(settings, plain_server):
    """The platform's mail service: Django's SMTP backend to a second loopback server."""
    if django.VERSION >= (6, 1):
        settings.MAILERS = {
            "default": {"BACKEND": OWN_BACKEND, "OPTIONS": {"fallback": "platform"}},
            "platform": {
                "BACKEND": SMTP_BACKEND,
                "OPTIONS": {"host": "127.0.0.1", "port": plain_server.port},
            },
        }
    else:
        settings.EMAIL_BACKEND = OWN_BACKEND
        settings.WAGTAIL_OWN_SMTP_FALLBACK_BACKEND = SMTP_BACKEND
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = plain_server.port
    settings.ADMINS = ADMINS
    settings.MANAGERS = MANAGERS
    return plain_server


@pytest.fixture
def default_site(ssl_server):
    """The default site sends through its own server (``ssl_server``)."""
    site = make_site()
    own_server(site, ssl_server)
    return site


@pytest.fixture
def site_a(starttls_server, default_site):
    """Site A, whose editor runs ``starttls_server`` (verified as A's own server)."""
    site = make_site("a.example", default=False, name="Site A")
    own_server(site, starttls_server)
    return site


def delivered(server, count=1):
    """What ``server`` received once every queued message had its chance to go."""
    dispatch(budget_seconds=5)
    return server.wait_for(count)


def assert_nothing_queued_or_received(*servers):
    dispatch(budget_seconds=2)
    assert not OutboundMessage.objects.exists(), statuses()
    for server in servers:
        assert server.received == []


# -- system mail reaches the platform, whatever the Host ---------------------------------------


@pytest.mark.parametrize("url", ["/admin/password_reset/", "/accounts/password_reset/"])
def test_password_reset_posted_on_a_sites_host_reaches_the_platform_never_the_sites_server(
    platform, site_a, starttls_server, ssl_server, django_user_model, url
):
    django_user_model.objects.create_superuser("root", SUPERUSER_EMAIL, "old-password")
    anonymous = Client()

    response = anonymous.post(url, {"email": SUPERUSER_EMAIL}, HTTP_HOST="a.example")

    assert response.status_code == 302
    assert_nothing_queued_or_received(starttls_server, ssl_server)
    (reset,) = platform.wait_for(1)
    assert reset.rcpt_tos == [SUPERUSER_EMAIL]
    assert RESET_LINK.search(reset.message.get_body(("plain",)).get_content())


def test_moderation_notification_of_a_sites_editor_reaches_the_platform(
    platform, site_a, starttls_server, ssl_server, django_user_model
):
    from django.contrib.auth.models import Group

    django_user_model.objects.create_superuser("root", SUPERUSER_EMAIL, "pw")
    editor = django_user_model.objects.create_user("editor-a", "editor@a.example", "pw")
    editor.groups.add(Group.objects.get(name="Editors"))
    page = site_a.root_page.add_child(instance=Page(title="News of A", slug="news"))
    client = Client()
    client.force_login(editor)

    # The editor of A submits A's page for moderation, through the admin on A's host.
    response = client.post(
        f"/admin/pages/{page.pk}/edit/",
        {"title": "News of A", "slug": "news", "action-submit": "Submit for moderation"},
        HTTP_HOST="a.example",
    )

    assert response.status_code == 302, response.content[:2000]
    page.refresh_from_db()
    assert page.workflow_in_progress
    assert_nothing_queued_or_received(starttls_server, ssl_server)
    # "submitted to workflow" and "submitted for approval in moderation stage"
    notifications = platform.wait_for(2)
    assert [n.rcpt_tos for n in notifications] == [[SUPERUSER_EMAIL]] * 2
    assert all('"News of A"' in n.message["Subject"] for n in notifications)


def test_error_report_of_a_page_served_for_a_site_reaches_the_platform(
    platform, site_a, starttls_server, ssl_server
):
    # The page sends its notification (A's mail, through A's server), then fails: the report of
    # the error, with its traceback and the request, goes to the platform's admins.
    page = FailingFormPage(
        title="Broken survey",
        slug="broken",
        to_address="owner@a.example",
        from_address="forms@platform.example",
        subject="New answer",
    )
    site_a.root_page.add_child(instance=page)

    response = Client(raise_request_exception=False).post("/broken/", {}, HTTP_HOST="a.example")

    assert response.status_code == 500
    (notification,) = delivered(starttls_server)
    assert notification.rcpt_tos == ["owner@a.example"]
    assert notification.message["Subject"] == "New answer"
    assert ssl_server.received == []
    (report,) = platform.wait_for(1)
    assert report.rcpt_tos == ["ops@platform.example"]
    assert "Internal Server Error: /broken/" in report.message["Subject"]


def test_mail_admins_and_managers_reach_the_platform_even_inside_a_sites_context(
    platform, site_a, starttls_server, ssl_server
):
    mail_admins("Disk full", "Traceback …")
    with using_site(site_a):
        mail_admins("Worker died", "Traceback …")
        mail_managers("Broken link", "Referrer …")

    assert_nothing_queued_or_received(starttls_server, ssl_server)
    reports = platform.wait_for(3)
    assert sorted(r.rcpt_tos[0] for r in reports) == [
        "managers@platform.example",
        "ops@platform.example",
        "ops@platform.example",
    ]


def test_mail_with_no_site_context_reaches_the_platform_not_the_default_sites_server(
    platform, site_a, starttls_server, ssl_server
):
    # No request, no using_site: a management command, a task, a signal handler.
    send_mail("Welcome", "Your account", "accounts@platform.example", ["new@customer.example"])

    assert_nothing_queued_or_received(starttls_server, ssl_server)
    (received,) = platform.wait_for(1)
    assert received.rcpt_tos == ["new@customer.example"]


# -- a site's own mail still goes through its own server ---------------------------------------
# (A form page's notification: test_backend.test_form_submission_goes_to_the_sites_own_server.)


def test_explicit_site_and_using_site_reach_the_sites_server(
    platform, site_a, starttls_server, ssl_server
):
    with using_site(site_a):
        send_mail("Invitation", "Body", "surveys@platform.example", ["x@customer.example"])
    EmailBackend(site=site_a).send_messages(
        [mail.EmailMessage("Reminder", "Body", "surveys@platform.example", ["y@customer.example"])]
    )

    received = delivered(starttls_server, 2)
    assert sorted(r.message["Subject"] for r in received) == ["Invitation", "Reminder"]
    assert platform.received == [] and ssl_server.received == []
