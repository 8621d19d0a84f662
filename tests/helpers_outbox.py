"""The admin screens' test helpers: users who manage some sites, two sites, stored messages,
readers of the outbox listing, and what a refusal looks like. Shared by the tests of the outbox,
its message page, the bounces admin, the dashboard, the settings screen's buttons, "Connect
account" and the permissions."""

import re
from email.message import EmailMessage as RawMessage

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.helpers_admin import make_site
from wagtail_own_smtp.models import OutboundMessage

try:
    from wagtail.models import GroupSitePermission
except ImportError:  # Wagtail 7: a site setting's permission covers every site
    GroupSitePermission = None

per_site = pytest.mark.skipif(
    GroupSitePermission is None, reason="per-site setting permissions came with Wagtail 8"
)

OUTBOX = "/admin/own-smtp/outbox/"


def editor_client(django_user_model, name, sites=()):
    """A logged-in admin user whose group may change the SMTP setting of ``sites`` only."""
    group = Group.objects.create(name=f"{name} group")
    group.permissions.add(
        Permission.objects.get(content_type__app_label="wagtailadmin", codename="access_admin")
    )
    change = Permission.objects.get(
        content_type__app_label="wagtail_own_smtp", codename="change_smtpsettings"
    )
    for site in sites:
        if GroupSitePermission is None:
            group.permissions.add(change)
        else:  # what Wagtail's group editor stores for "may edit this setting on this site"
            GroupSitePermission.objects.create(group=group, site=site, permission=change)
    user = django_user_model.objects.create_user(username=name, password="pw")
    user.groups.add(group)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def site_a():
    return make_site()


@pytest.fixture
def site_b():
    return make_site("second.example", default=False, name="Second site")


@pytest.fixture
def editor_a(django_user_model, site_a):
    return editor_client(django_user_model, "editor-a", [site_a])


@pytest.fixture
def outsider(django_user_model):
    return editor_client(django_user_model, "outsider")


def raw(subject="Hello", to="someone@example.org", sender="surveys@platform.example"):
    message = RawMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = "<outbox-test@platform.example>"
    message.set_content("Body of the message")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def stored(site, subject="Hello", to=("someone@example.org",), status="queued", **fields):
    """A message in the outbox, stored directly (what the backend stores, without sending)."""
    data = raw(subject, ", ".join(to))
    fields.setdefault("next_attempt_at", timezone.now())
    return OutboundMessage.objects.create(
        site=site,
        subject=subject,
        envelope_from="surveys@platform.example",
        recipients=list(to),
        recipient_count=len(to),
        raw_message=data,
        size=len(data),
        status=status,
        **fields,
    )


def listed(response):
    """Primary keys of the messages in the listing, in order."""
    html = response.content.decode()
    return [int(pk) for pk in re.findall(r'data-own-smtp-message="(\d+)"', html)]


def count_of(response, status):
    match = re.search(
        rf'data-own-smtp-count="{status}"[^>]*>\s*[^<]*<span data-own-smtp-count-value>([\d,]+)<',
        response.content.decode(),
    )
    return int(match.group(1).replace(",", ""))


def denied(response):
    # Wagtail answers a PermissionDenied in the admin with a redirect to the dashboard.
    return response.status_code == 302 and response.url == reverse("wagtailadmin_home")
