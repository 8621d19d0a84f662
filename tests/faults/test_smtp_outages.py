"""A 2,000-message drain while the SMTP server goes down and up three times and answers 421 to
5 % of the MAIL, RCPT and DATA commands: everything arrives, nothing twice."""

import threading
import time

import pytest

from example_project.local_smtp import LocalSmtpServer, _free_port
from tests.conftest import SMTP_PASSWORD, SMTP_USER
from tests.delivery_helpers import make_site, own_server, real_backend, statuses
from tests.faults.helpers import queue, stored_ids, tally
from wagtail_own_smtp import mailqueue
from wagtail_own_smtp.dispatch import dispatch
from wagtail_own_smtp.models import OutboundMessage

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_backend")]
__all__ = ["real_backend"]

TOTAL = 2000
OUTAGES_AT = (400, 1000, 1600)  # messages received when the server is stopped
OUTAGE_SECONDS = 1.5


class Outages(threading.Thread):
    """Stops the server when it has received so many messages, starts it again on the same port."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server = server
        self.done = threading.Event()
        self.outages = 0
        self.error = None

    def run(self):
        try:
            for threshold in OUTAGES_AT:
                while len(self.server.received) < threshold and not self.done.is_set():
                    time.sleep(0.01)
                if self.done.is_set():
                    return
                self.server.stop()
                time.sleep(OUTAGE_SECONDS)
                self.server.start()
                self.outages += 1
        except Exception as error:  # reported by the test
            self.error = error


@pytest.mark.django_db
def test_drain_through_outages_and_random_421(certificates, monkeypatch, figures):
    # Time compressed: retries after 0.2 s (at most 1 s) instead of a minute (at most an hour).
    monkeypatch.setattr(mailqueue, "RETRY_FIRST", 0.2)
    monkeypatch.setattr(mailqueue, "RETRY_MAX", 1.0)
    server = LocalSmtpServer(
        security="starttls",
        credentials=(SMTP_USER, SMTP_PASSWORD),
        certificates=certificates,
        port=_free_port(),
    ).start()
    server.behaviour.random_421 = 0.05
    site = make_site()
    own_server(site, server)
    assert queue(TOTAL) == TOTAL
    expected = stored_ids()

    outages = Outages(server)
    outages.start()
    started, ticks, deferrals = time.monotonic(), 0, 0
    try:
        while statuses() != {"sent": TOTAL} and time.monotonic() - started < 400:
            report = dispatch(budget_seconds=2)
            ticks += 1
            deferrals += report.deferred
            assert not report.paused_sites, "a 421 or an outage must never pause the site"
            if report.sent == 0:
                time.sleep(0.1)  # nothing due yet: the next retry time
    finally:
        outages.done.set()
        outages.join(5)
        server.stop()
    drained = time.monotonic() - started

    assert outages.error is None
    found = tally(server.received, expected)
    attempts = list(OutboundMessage.objects.values_list("attempts", flat=True))
    figures.update(
        found,
        outages=outages.outages,
        answered_421=server.behaviour.answered_421,
        deferrals=deferrals,
        dispatch_runs=ticks,
        attempts_max=max(attempts),
        messages_retried=sum(1 for n in attempts if n > 1),
        drain_seconds=round(drained, 1),
    )
    print(figures)
    assert outages.outages == len(OUTAGES_AT)
    assert server.behaviour.answered_421 > 0 and deferrals > 0  # the faults did happen
    assert statuses() == {"sent": TOTAL}
    assert (found["sent"], found["lost"], found["duplicated"], found["unexpected"]) == (
        TOTAL,
        0,
        0,
        0,
    )
