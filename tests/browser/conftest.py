"""Real-browser fixtures: Debian's chromium driven by Playwright against the live server.

No browser is downloaded (``playwright install`` is never run): the tests use the chromium of the
system, /usr/bin/chromium unless OWN_SMTP_CHROMIUM names another. Without it they fail, not skip:
CI installs it (.ci/run).
"""

import os
import re
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from wagtail.models import GroupSitePermission, Site
from wagtail.users.models import UserProfile

from tests.compat import long_lived_permission_policies
from tests.helpers_admin import LINK, edit_url, make_site

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TESTS = Path(__file__).resolve().parent.parent
# The README's pictures; refreshed by `make screenshots` (OWN_SMTP_UPDATE_SCREENSHOTS=1).
README_SCREENSHOTS = TESTS.parent / "docs" / "screenshots"
EDITOR_PASSWORD = "browser-pw"


def chromium_path():
    path = os.environ.get("OWN_SMTP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"No chromium at {path}: install Debian's chromium (apt-get install chromium) or set "
            "OWN_SMTP_CHROMIUM. The browser tests never download a browser."
        )
    return path


@pytest.fixture
def browser(monkeypatch, live_server):
    """A headless chromium for one test.

    Playwright's sync API keeps an asyncio loop running in this thread, which Django takes for an
    async context: the test's own database calls need DJANGO_ALLOW_ASYNC_UNSAFE while it runs.
    The live server answers from its own thread.
    """
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    path = chromium_path()
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(autouse=True)
def _forget_stale_ids(live_server):
    """Forget database ids that outlive a flush.

    Between transactional tests the database is flushed and the content types come back with new
    ids, but Wagtail's long-lived permission policies (which the live server's views use) cache
    the old ones, and so does its cache of site root paths.
    """
    ContentType.objects.clear_cache()
    for policy in long_lived_permission_policies():
        vars(policy).pop("_content_type", None)
    Site.clear_site_root_paths_cache()


@pytest.fixture
def site(live_server):
    site = make_site()
    site.site_name = "Customer survey"
    site.save()
    return site


def make_editor(django_user_model, site, username, language=""):
    """An editor who may use the admin and change this site's Own SMTP server setting."""
    group, _created = Group.objects.get_or_create(name="Mail editors")
    group.permissions.add(
        Permission.objects.get(content_type__app_label="wagtailadmin", codename="access_admin")
    )
    change = Permission.objects.get(
        content_type__app_label="wagtail_own_smtp", codename="change_smtpsettings"
    )
    GroupSitePermission.objects.get_or_create(group=group, site=site, permission=change)
    user = django_user_model.objects.create_user(
        username=username, password=EDITOR_PASSWORD, first_name=username.title()
    )
    user.groups.add(group)
    if language:
        profile = UserProfile.get_for_user(user)
        profile.preferred_language = language
        profile.save()
    return user


def log_in(page, live_server, user):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", EDITOR_PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/admin/$"))


def open_settings(page, live_server, site):
    page.goto(live_server.url + edit_url(site))


def save(page):
    """Click the settings form's Save button and wait for the page it leads to."""
    with page.expect_navigation():
        page.locator("footer.footer button.button-longrunning[type=submit]").click()


def message(page, level):
    """The admin message of ``level`` ("error", "success", "warning") at the top of the page."""
    return page.locator(f".messages li.{level}")


def rgb(locator, prop="background-color"):
    """The computed colour of an element as (red, green, blue)."""
    value = locator.evaluate(f"element => getComputedStyle(element)['{prop}']")
    red, green, blue = (int(part) for part in re.findall(r"\d+", value)[:3])
    return red, green, blue


def is_red(colour):
    red, green, blue = colour
    return red > 1.5 * green and red > 1.5 * blue


def is_green(colour):
    red, green, blue = colour
    return green > 1.2 * red and green > blue


def confirmation_link(received):
    """The confirmation link in a message the server received (its plain-text part)."""
    body = received.message.get_body(("plain",)).get_content()
    return LINK.search(body).group(0)


def screenshot(page, name, *, for_readme=False, **options):
    """Save a screenshot under tests/artifacts/screenshots/; README pictures on request."""
    screenshots = Path(settings.ARTIFACTS_DIR) / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    path = screenshots / f"{name}.png"
    page.screenshot(path=str(path), **options)
    if for_readme and os.environ.get("OWN_SMTP_UPDATE_SCREENSHOTS"):
        README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SCREENSHOTS / f"{name}.png")
    return path
