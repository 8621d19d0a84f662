"""Who may act on which site's mail: the one rule every admin screen of the app asks
(``wagtail_own_smtp.permissions``). The screens' own matrices are in test_outbox.py,
test_bounce_admin.py, test_admin.py and test_oauth_admin.py."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404

from tests.helpers_outbox import editor_a, outsider, per_site, site_a, site_b, stored
from wagtail_own_smtp import permissions
from wagtail_own_smtp.models import Bounce, OutboundMessage, SmtpSettings

pytestmark = pytest.mark.django_db
__all__ = ["editor_a", "outsider", "site_a", "site_b"]


def _user(username):
    return get_user_model().objects.get(username=username)


@per_site
def test_an_editor_acts_on_the_sites_they_may_change_and_no_other(editor_a, site_a, site_b):
    editor = _user("editor-a")
    assert list(permissions.outbox_sites(editor)) == [site_a]
    assert permissions.may_use_outbox(editor)
    assert permissions.site_for_change(editor, site_a.pk) == site_a
    settings = permissions.settings_for_change(editor, site_a.pk)
    assert isinstance(settings, SmtpSettings) and settings.site_id == site_a.pk
    with pytest.raises(PermissionDenied):
        permissions.site_for_change(editor, site_b.pk)
    with pytest.raises(PermissionDenied):
        permissions.settings_for_change(editor, site_b.pk)


@per_site
def test_an_editor_sees_the_rows_of_their_sites_only(editor_a, site_a, site_b):
    editor = _user("editor-a")
    mine, theirs = stored(site_a, "A"), stored(site_b, "B")
    assert list(permissions.visible_rows(OutboundMessage.objects.all(), editor)) == [mine]
    assert permissions.row_for_change(OutboundMessage.objects, editor, mine.pk) == mine
    with pytest.raises(PermissionDenied):
        permissions.row_for_change(OutboundMessage.objects, editor, theirs.pk)
    bounce = Bounce.objects.create(
        site=site_b, message=theirs, recipient="x@example.org", kind="hard", report_key="k"
    )
    with pytest.raises(PermissionDenied):
        permissions.row_for_change(Bounce.objects, editor, bounce.pk)


def test_a_user_without_the_permission_acts_on_no_site(outsider, site_a):
    user = _user("outsider")
    assert not permissions.may_use_outbox(user)
    assert list(permissions.outbox_sites(user)) == []
    stored(site_a)
    assert list(permissions.visible_rows(OutboundMessage.objects.all(), user)) == []
    with pytest.raises(PermissionDenied):
        permissions.site_for_change(user, site_a.pk)


def test_a_superuser_sees_every_sites_rows(admin_user, site_a, site_b):
    rows = {stored(site_a).pk, stored(site_b).pk}
    visible = permissions.visible_rows(OutboundMessage.objects.all(), admin_user)
    assert set(visible.values_list("pk", flat=True)) == rows


def test_what_does_not_exist_is_not_found_before_it_is_refused(outsider, site_a):
    # 404 for a site or row that does not exist, whoever asks; 403 only for one that does.
    user = _user("outsider")
    missing = site_a.pk + 1000
    with pytest.raises(Http404):
        permissions.site_for_change(user, missing)
    with pytest.raises(Http404):
        permissions.row_for_change(OutboundMessage.objects, user, 987654)
