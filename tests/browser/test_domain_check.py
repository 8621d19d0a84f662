"""An editor in a real browser reads the sender-domain checklist in the status panel, with the
records to add, and clicks "Check again"; once in German."""

import pytest
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from tests.browser.conftest import log_in, make_editor, message, open_settings, screenshot
from tests.domain_helpers import ADDRESS, DOMAIN, good_zones, spf, verified_server
from wagtail_own_smtp.domain_status import CHECK_TASK, check_site

pytestmark = pytest.mark.browser


def checked(site, dns_server):
    """A verified server whose domain lacks it in SPF (~all), monitors with DMARC, signs with DKIM
    and whose address one blocklist lists."""
    dns_server.replace(
        good_zones(
            spf=spf("v=spf1 include:_spf.newsletter.test ~all"),
            dmarc=[("TXT", f"v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}")],
            **{
                "_spf.newsletter.test": [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")],
                "10.2.0.192.bl.test": [
                    ("A", "127.0.0.2"),
                    ("TXT", "Listed: spam trap hits, see https://bl.test/192.0.2.10"),
                ],
            },
        )
    )
    return check_site(verified_server(site), fresh=True)


def test_the_editor_sees_what_to_change_in_dns_and_checks_again(
    page, live_server, site, dns_server, django_user_model
):
    checked(site, dns_server)
    editor = make_editor(django_user_model, site, "editor")
    log_in(page, live_server, editor)
    open_settings(page, live_server, site)
    # The whole status panel, from "Verified since" to "Check again": in a window tall enough to
    # show it unscrolled, so the sticky header and footer stay clear of it.
    page.set_viewport_size({"width": 1280, "height": 2600})
    box = page.locator("[data-own-smtp-status]").bounding_box()
    margin = 12
    clip = {
        "x": box["x"] - margin,
        "y": box["y"] - margin,
        "width": box["width"] + 2 * margin,
        "height": box["height"] + 2 * margin,
    }
    screenshot(page, "domain-check", for_readme=True, clip=clip)

    panel = page.locator("[data-own-smtp-domain-check]")
    assert panel.locator("h3").inner_text() == f"Will mail from {DOMAIN} arrive?"
    spf_line = panel.locator("[data-own-smtp-domain-line=spf]")
    assert spf_line.get_attribute("data-status") == "attention"
    assert "Needs attention" in spf_line.inner_text()
    assert "ends with ~all" in spf_line.locator("[data-own-smtp-domain-text]").inner_text()
    assert spf_line.locator("[data-own-smtp-record-name]").inner_text() == DOMAIN
    assert spf_line.locator("[data-own-smtp-record-value]").inner_text() == (
        f"v=spf1 include:_spf.newsletter.test ip4:{ADDRESS} ~all"
    )
    dmarc_line = panel.locator("[data-own-smtp-domain-line=dmarc]")
    assert (
        "v=DMARC1; p=quarantine;" in dmarc_line.locator("[data-own-smtp-record-value]").inner_text()
    )
    assert panel.locator("[data-own-smtp-domain-line=dkim]").get_attribute("data-status") == "pass"
    listing = panel.locator("[data-own-smtp-listing]").inner_text()
    assert "bl.test" in listing and "spam trap hits" in listing

    with page.expect_navigation():
        panel.locator("[data-own-smtp-check-domain]").click()
    assert message(page, "success").inner_text().strip() == (
        f"The check of {DOMAIN} runs in the background; reload this page in a minute to see the "
        "result."
    )
    packages = [
        SignedPackage.loads(payload) for payload in OrmQ.objects.values_list("payload", flat=True)
    ]
    assert [tuple(p["args"]) for p in packages if p["func"] == CHECK_TASK] == [(site.pk, True)]


def test_the_checklist_in_german(page, live_server, site, dns_server, django_user_model):
    checked(site, dns_server)
    editor = make_editor(django_user_model, site, "redakteurin", language="de")
    log_in(page, live_server, editor)
    open_settings(page, live_server, site)

    panel = page.locator("[data-own-smtp-domain-check]")
    assert panel.locator("h3").inner_text() == f"Kommt Mail von {DOMAIN} an?"
    spf_line = panel.locator("[data-own-smtp-domain-line=spf]")
    assert "Braucht Aufmerksamkeit" in spf_line.inner_text()
    assert "endet mit ~all" in spf_line.inner_text()
    assert "Bestanden" in panel.locator("[data-own-smtp-domain-line=dkim]").inner_text()
    assert panel.locator("[data-own-smtp-check-domain]").inner_text().strip() == "Erneut prüfen"
    screenshot(page, "domain-check-de")
