"""The sender-domain check against a real DNS server on loopback (example_project/local_dns.py):
each line says the right thing and gives the exact record to add or change."""

import pytest

from tests.domain_helpers import (
    ADDRESS,
    DKIM_KEY,
    DOMAIN,
    HOST,
    good_zones,
    lines_of,
    spf,
    statuses,
    suggested,
    verified_server,
)
from tests.helpers_admin import make_site
from wagtail_own_smtp.domain_status import check_site

pytestmark = pytest.mark.django_db

ALL_PASS = {"spf": "pass", "dmarc": "pass", "dkim": "pass", "blocklists": "pass"}


@pytest.fixture
def site():
    return make_site()


def check(dns_server, site, zones, **server):
    dns_server.replace(zones)
    return check_site(verified_server(site, **server), fresh=True)


def test_a_domain_set_up_for_its_server_passes_every_line(dns_server, site):
    result = check(dns_server, site, good_zones())

    assert statuses(result) == ALL_PASS
    lines = lines_of(result)
    assert lines["spf"]["reason"] == "spf_authorises"
    assert lines["spf"]["facts"]["addresses"] == [ADDRESS]
    assert lines["dmarc"]["facts"]["policy"] == "reject"
    assert lines["dkim"]["facts"]["selectors"] == ["mail"]
    assert all(line["records"] == [] for line in result.lines)
    # The test's DNS server was asked: the server's address, SPF, DMARC, the key, the blocklist.
    asked = set(dns_server.asked)
    for question in [
        (HOST, "A"),
        (DOMAIN, "TXT"),
        (f"_dmarc.{DOMAIN}", "TXT"),
        (f"mail._domainkey.{DOMAIN}", "TXT"),
        ("10.2.0.192.bl.test", "A"),
    ]:
        assert question in asked
    assert result.domain == DOMAIN


def test_spf_without_the_server_and_minus_all_says_receivers_refuse_and_adds_its_address(
    dns_server, site
):
    line = lines_of(check(dns_server, site, good_zones(spf=spf("v=spf1 ip4:198.51.100.7 -all"))))[
        "spf"
    ]

    assert (line["status"], line["reason"]) == ("attention", "spf_fail")
    assert suggested(line) == [(DOMAIN, "TXT", f"v=spf1 ip4:198.51.100.7 ip4:{ADDRESS} -all")]


def test_spf_without_the_server_and_tilde_all_is_a_softfail_with_the_same_fix(dns_server, site):
    line = lines_of(check(dns_server, site, good_zones(spf=spf("v=spf1 ip4:198.51.100.7 ~all"))))[
        "spf"
    ]

    assert (line["status"], line["reason"]) == ("attention", "spf_softfail")
    assert suggested(line) == [(DOMAIN, "TXT", f"v=spf1 ip4:198.51.100.7 ip4:{ADDRESS} ~all")]


def test_no_spf_record_asks_for_one_with_the_server(dns_server, site):
    line = lines_of(check(dns_server, site, good_zones(spf=[("TXT", "site-verification=4f2a")])))[
        "spf"
    ]

    assert (line["status"], line["reason"]) == ("attention", "spf_missing")
    assert suggested(line) == [(DOMAIN, "TXT", f"v=spf1 ip4:{ADDRESS} ~all")]


def test_two_spf_records_are_merged_into_one_that_lists_the_server(dns_server, site):
    records = [("TXT", "v=spf1 ip4:198.51.100.7 -all"), ("TXT", "v=spf1 include:other.test -all")]
    line = lines_of(check(dns_server, site, good_zones(spf=records)))["spf"]

    assert (line["status"], line["reason"]) == ("attention", "spf_two_records")
    assert suggested(line) == [
        (DOMAIN, "TXT", f"v=spf1 ip4:198.51.100.7 include:other.test ip4:{ADDRESS} -all")
    ]


def _includes(count):
    """An SPF record with ``count`` includes (one DNS lookup each) before the server's address."""
    zones = {
        f"spf{n}.example.test": [("TXT", "v=spf1 ip4:198.51.100.7 -all")] for n in range(count)
    }
    terms = " ".join(f"include:spf{n}.example.test" for n in range(count))
    zones[DOMAIN] = spf(f"v=spf1 {terms} ip4:{ADDRESS} -all")
    return good_zones(**zones)


def test_an_spf_record_with_eleven_lookups_is_broken_for_receivers(dns_server, site):
    line = lines_of(check(dns_server, site, _includes(11)))["spf"]

    assert (line["status"], line["reason"]) == ("attention", "spf_too_many_lookups")
    ((name, kind, value),) = suggested(line)
    assert (name, kind) == (DOMAIN, "TXT") and value.endswith(f"ip4:{ADDRESS} -all")


def test_ten_lookups_are_still_within_the_limit(dns_server, site):
    assert lines_of(check(dns_server, site, _includes(10)))["spf"]["status"] == "pass"


def test_an_spf_record_that_lets_everyone_send_needs_attention(dns_server, site):
    line = lines_of(check(dns_server, site, good_zones(spf=spf("v=spf1 +all"))))["spf"]

    assert (line["status"], line["reason"]) == ("attention", "spf_allows_all")
    assert suggested(line) == [(DOMAIN, "TXT", f"v=spf1 ip4:{ADDRESS} ~all")]


def test_no_dmarc_record_asks_for_one_that_collects_reports(dns_server, site):
    line = lines_of(check(dns_server, site, good_zones(dmarc=None)))["dmarc"]

    assert (line["status"], line["reason"]) == ("attention", "dmarc_missing")
    assert suggested(line) == [
        (f"_dmarc.{DOMAIN}", "TXT", f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{DOMAIN}")
    ]


def test_dmarc_none_asks_for_quarantine_keeping_the_other_tags(dns_server, site):
    record = [("TXT", "v=DMARC1; p=none; rua=mailto:dmarc@example.test; fo=1")]
    line = lines_of(check(dns_server, site, good_zones(dmarc=record)))["dmarc"]

    assert (line["status"], line["reason"]) == ("attention", "dmarc_none")
    assert suggested(line) == [
        (f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test; fo=1")
    ]


def test_a_subdomain_sender_finds_the_organisations_policy_and_its_sp_tag(dns_server, site):
    zones = good_zones(dmarc=[("TXT", "v=DMARC1; p=reject; sp=none")])
    zones["mail.news.example.test"] = [("A", ADDRESS)]
    zones["news.example.test"] = spf("v=spf1 a:mail.news.example.test -all")
    dns_server.replace(zones)

    result = check_site(
        verified_server(site, host="mail.news.example.test", sender="s@news.example.test"),
        fresh=True,
    )

    line = lines_of(result)["dmarc"]
    assert (line["reason"], line["facts"]["record_domain"]) == ("dmarc_none", DOMAIN)
    assert suggested(line)[0][2] == "v=DMARC1; p=reject; sp=quarantine"


def test_a_missing_dkim_key_names_the_record_of_the_selector(dns_server, site):
    line = lines_of(check(dns_server, site, good_zones(dkim=None)))["dkim"]

    assert (line["status"], line["reason"]) == ("attention", "dkim_missing")
    assert suggested(line) == [(f"mail._domainkey.{DOMAIN}", "TXT", "v=DKIM1; k=rsa; p=")]
    assert line["records"][0]["fill"] == "server_key"


def test_without_a_selector_dkim_could_not_be_checked(dns_server, site):
    line = lines_of(check(dns_server, site, good_zones(), selector=""))["dkim"]

    assert (line["status"], line["reason"]) == ("unknown", "dkim_no_selector")


def test_a_listed_server_address_shows_the_blocklists_reason(dns_server, site):
    zones = good_zones(
        **{
            "10.2.0.192.bl.test": [
                ("A", "127.0.0.2"),
                ("TXT", "Listed for sending spam, see https://bl.test/lookup?ip=192.0.2.10"),
            ]
        }
    )
    line = lines_of(check(dns_server, site, zones))["blocklists"]

    assert (line["status"], line["reason"]) == ("attention", "blocklisted")
    assert line["facts"]["listed"] == [
        {
            "address": ADDRESS,
            "zone": "bl.test",
            "reason": "Listed for sending spam, see https://bl.test/lookup?ip=192.0.2.10",
        }
    ]


def test_a_blocklist_that_refuses_the_query_is_not_a_listing(dns_server, site):
    # Spamhaus answers 127.255.255.254 to queries through public resolvers.
    zones = good_zones(**{"10.2.0.192.bl.test": [("A", "127.255.255.254")]})
    line = lines_of(check(dns_server, site, zones))["blocklists"]

    assert (line["status"], line["reason"]) == ("unknown", "blocklist_unanswered")


def test_microsoft_365_passes_with_its_include_and_the_dkim_cnames(dns_server, site):
    zones = good_zones(
        spf=spf("v=spf1 include:spf.protection.outlook.com -all"),
        dkim=None,
        **{
            "smtp.office365.com": [("A", "192.0.2.40")],
            "spf.protection.outlook.com": [("TXT", "v=spf1 ip4:40.92.0.0/15 -all")],
            f"selector1._domainkey.{DOMAIN}": [
                ("CNAME", "selector1-example-test._domainkey.contoso.onmicrosoft.com")
            ],
            "selector1-example-test._domainkey.contoso.onmicrosoft.com": [("TXT", DKIM_KEY)],
        },
    )
    result = check(dns_server, site, zones, host="smtp.office365.com", auth_method="microsoft")

    assert statuses(result) == ALL_PASS
    assert lines_of(result)["spf"]["reason"] == "spf_provider_included"


def test_microsoft_365_without_its_include_or_keys_shows_both_records(dns_server, site):
    zones = good_zones(dkim=None, **{"smtp.office365.com": [("A", "192.0.2.40")]})
    lines = lines_of(
        check(dns_server, site, zones, host="smtp.office365.com", auth_method="microsoft_app")
    )

    assert lines["spf"]["reason"] == "spf_provider_missing"
    assert suggested(lines["spf"]) == [
        (DOMAIN, "TXT", "v=spf1 a:mail.example.test include:spf.protection.outlook.com -all")
    ]
    assert lines["dkim"]["reason"] == "dkim_missing"
    assert suggested(lines["dkim"]) == [
        (f"selector1._domainkey.{DOMAIN}", "CNAME", "selector1-example-test._domainkey."),
        (f"selector2._domainkey.{DOMAIN}", "CNAME", "selector2-example-test._domainkey."),
    ]


def test_google_is_recognised_by_its_host_and_asks_for_its_selector(dns_server, site):
    zones = good_zones(
        spf=spf("v=spf1 include:_spf.google.com ~all"),
        **{
            "smtp.gmail.com": [("A", "192.0.2.50")],
            "_spf.google.com": [("TXT", "v=spf1 ip4:209.85.128.0/17 ~all")],
        },
    )
    lines = lines_of(check(dns_server, site, zones, host="smtp.gmail.com", selector=""))

    assert lines["spf"]["status"] == "pass"
    assert suggested(lines["dkim"]) == [
        (f"google._domainkey.{DOMAIN}", "TXT", "v=DKIM1; k=rsa; p=")
    ]
    assert lines["dkim"]["records"][0]["fill"] == "google_key"


def test_a_server_name_without_an_address_cannot_be_checked_for_spf_or_blocklists(dns_server, site):
    result = check(dns_server, site, good_zones(**{HOST: None}))

    assert statuses(result) == {
        "spf": "unknown",
        "dmarc": "pass",
        "dkim": "pass",
        "blocklists": "unknown",
    }
    assert lines_of(result)["spf"]["reason"] == "host_unresolved"


def test_sites_asking_the_same_questions_share_a_recent_result(dns_server, django_user_model):
    first, second = make_site(), make_site("second.localhost", default=False)
    dns_server.replace(good_zones())
    check_site(verified_server(first))
    asked = len(dns_server.asked)

    shared = check_site(verified_server(second))
    assert len(dns_server.asked) == asked  # DNS was not asked again
    assert statuses(shared) == ALL_PASS and shared.site_id == second.pk

    # "Check again" asks afresh, and so does a site with another selector.
    check_site(verified_server(second), fresh=True)
    assert len(dns_server.asked) > asked
    asked = len(dns_server.asked)
    check_site(verified_server(second, selector="other"))
    assert len(dns_server.asked) > asked


def test_a_site_without_a_verified_server_is_not_checked(dns_server, site):
    smtp_settings = verified_server(site)
    smtp_settings.verified_at = None
    smtp_settings.save()

    assert check_site(smtp_settings) is None
    assert dns_server.asked == []
