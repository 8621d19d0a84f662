"""The sender-domain check is bounded and safe: only the configured resolvers, a deadline for the
whole check, hostile records that never crash it, and sending that never waits for it."""

import json
import time

import dns.resolver
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import send_mail
from django.core.management import call_command

from example_project.local_dns import DeafDnsServer
from tests.delivery_helpers import own_server, real_backend  # noqa: F401 (fixture)
from tests.domain_helpers import ADDRESS, DOMAIN, good_zones, lines_of, spf, verified_server
from tests.helpers_admin import make_site
from wagtail_own_smtp import using_site
from wagtail_own_smtp.dns_client import DnsClient, parse_resolvers
from wagtail_own_smtp.domain_status import check_site

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    return make_site()


@pytest.fixture
def deaf_resolver(settings):
    """The only configured resolver reads every query and never answers."""
    server = DeafDnsServer().start()
    settings.WAGTAIL_OWN_SMTP_DNS_RESOLVERS = [server.address]
    settings.WAGTAIL_OWN_SMTP_DNS_TIMEOUT = 0.5
    settings.WAGTAIL_OWN_SMTP_DOMAIN_CHECK_DEADLINE = 2
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("entries", "servers"),
    [
        (["192.0.2.53"], [("192.0.2.53", 53)]),
        (["127.0.0.1:5353", "2001:db8::53"], [("127.0.0.1", 5353), ("2001:db8::53", 53)]),
        (["[2001:db8::53]:5353"], [("2001:db8::53", 5353)]),
        ("192.0.2.53", [("192.0.2.53", 53)]),
        (None, []),
    ],
)
def test_resolvers_are_addresses_with_an_optional_port(entries, servers):
    assert parse_resolvers(entries) == servers


@pytest.mark.parametrize("entry", ["dns.example.org", "192.0.2.53:0", "192.0.2.53:dns", "[::1"])
def test_a_resolver_that_is_not_an_address_is_refused(entry, settings):
    with pytest.raises(ImproperlyConfigured):
        parse_resolvers([entry])
    settings.WAGTAIL_OWN_SMTP_DNS_RESOLVERS = [entry]
    assert [error.id for error in call_checks()] == ["wagtail_own_smtp.E008"]


def call_checks():
    from wagtail_own_smtp.checks import check_dns_resolvers

    return check_dns_resolvers(None)


def test_a_resolver_that_never_answers_ends_the_check_by_its_deadline(deaf_resolver, site):
    started = time.monotonic()
    result = check_site(verified_server(site), fresh=True)
    elapsed = time.monotonic() - started

    assert elapsed < 2 + 1, elapsed  # the deadline, and a query's timeout at most beyond it
    assert {line["status"] for line in result.lines} == {"unknown"}
    assert deaf_resolver.queries >= 1  # it was asked, and nothing else was
    for line in result.lines:
        assert line["reason"] in ("dns_unanswered", "host_unanswered")
    assert dns.resolver.get_default_resolver().nameservers != [deaf_resolver.address]


def test_sending_goes_on_while_dns_does_not_answer(
    deaf_resolver,
    site,
    starttls_server,
    real_backend,  # noqa: F811
):
    own_server(site, starttls_server)
    result = check_site(site_settings(site), fresh=True)
    assert {line["status"] for line in result.lines} == {"unknown"}

    with using_site(site):
        send_mail("Your invitation", "Please take part.", "surveys@platform.example", ["a@x.org"])
    call_command("own_smtp_send", "--until-empty", stdout=open("/dev/null", "w"))

    (received,) = starttls_server.wait_for(1)
    assert received.rcpt_tos == ["a@x.org"]


def site_settings(site):
    from wagtail_own_smtp.models import SmtpSettings

    return SmtpSettings.objects.get(site=site)


HOSTILE_SPF = b'v=spf1 <script>alert("spf")</script>\x00\x1b[31m ip4:192.0.2.10 -all ' + b"x" * 5000
HOSTILE_REASON = b"<b onmouseover=alert(1)>listed</b>\x00\x07 " + b"y" * 5000


def test_hostile_records_are_cleaned_capped_and_never_crash_the_check(dns_server, site):
    long_name = ".".join(["a" * 63] * 4) + ".test"  # longer than a DNS name may be
    dns_server.replace(
        good_zones(
            spf=spf(HOSTILE_SPF),
            dmarc=[("TXT", 'v=DMARC1; p=<img src=x onerror="alert(1)">')],
            dkim=[("TXT", b"v=DKIM1; \xff\xfe p=\x00")],
            **{"10.2.0.192.bl.test": [("A", "127.0.0.2"), ("TXT", HOSTILE_REASON)]},
        )
    )
    result = check_site(verified_server(site), fresh=True)

    lines = lines_of(result)
    assert lines["spf"]["reason"] == "spf_invalid"
    assert lines["dmarc"]["reason"] == "dmarc_invalid"
    assert lines["dkim"]["reason"] == "dkim_missing"  # undecodable bytes: no "p=" tag in it
    assert lines["blocklists"]["facts"]["listed"][0]["reason"].startswith("<b onmouseover")
    stored = json.dumps(result.lines)
    assert "\\u0000" not in stored and "\\u001b" not in stored and "\\u0007" not in stored
    assert len(lines["spf"]["facts"]["current"]) <= 1024
    assert len(lines["blocklists"]["facts"]["listed"][0]["reason"]) <= 300

    # Names no DNS can hold, in includes: a missing name, not a crash.
    for record in [f"v=spf1 include:{long_name} -all", "v=spf1 include:" + "b" * 70 + ".test -all"]:
        dns_server.replace(good_zones(spf=spf(record)))
        line = lines_of(check_site(verified_server(site), fresh=True))["spf"]
        assert line["status"] == "attention", line


def test_the_check_asks_only_its_resolvers_even_through_the_spf_library(dns_server, site):
    before = dns.resolver.get_default_resolver()
    dns_server.replace(
        good_zones(
            spf=spf(f"v=spf1 include:other.test ip4:{ADDRESS} -all"),
            **{"other.test": [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")]},
        )
    )

    client = DnsClient.from_settings()
    result = check_site(verified_server(site), fresh=True)

    # pyspf's include went to the test's server, and dnspython's default resolver is put back.
    assert ("other.test", "TXT") in dns_server.asked
    assert lines_of(result)["spf"]["status"] == "pass"
    assert dns.resolver.get_default_resolver() is before
    assert client.resolver.search == [] and client.resolver.nameservers[0].port == (dns_server.port)
    assert DOMAIN in {name for name, _kind in dns_server.asked}
