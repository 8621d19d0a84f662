"""Send due mail now, within every site's limits (the same run django-q2 schedules)."""

from django.core.management.base import BaseCommand
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from wagtail_own_smtp import dispatch, mailqueue

WAITING_FOR = {
    "interval": gettext_lazy("the minimum interval"),
    "cap": gettext_lazy("the hourly or daily limit"),
    "lease": gettext_lazy("another dispatcher sending for the site"),
    "budget": gettext_lazy("the next run (time budget used up)"),
}


class Command(BaseCommand):
    help = gettext_lazy(
        "Send queued mail through the sites' own SMTP servers, honouring every limit."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--until-empty",
            action="store_true",
            help=_(
                "Keep going, waiting out the minimum interval, while mail is due; return once "
                "what is left waits for a cap window, a retry time or a paused site."
            ),
        )
        parser.add_argument(
            "--retry-deferred",
            action="store_true",
            help=_("Make deferred mail due now."),
        )

    def handle(self, *args, until_empty=False, retry_deferred=False, verbosity=1, **options):
        if retry_deferred:
            count = mailqueue.retry_deferred()
            self.stdout.write(_("%(count)s deferred message(s) are due now.") % {"count": count})
        progress = self._progress if verbosity >= 1 else None
        report = dispatch.dispatch(until_empty=until_empty, progress=progress)
        self.stdout.write(
            _("Sent %(sent)s, deferred %(deferred)s, failed %(failed)s.")
            % {"sent": report.sent, "deferred": report.deferred, "failed": report.failed}
        )
        for site_id in report.paused_sites:
            self.stderr.write(
                _("Sending for site %(site)s is paused: see its SMTP settings.") % {"site": site_id}
            )
        if report.next_slot is not None:
            self.stdout.write(
                _("Mail left waits for %(reason)s, until about %(when)s.")
                % {
                    "reason": WAITING_FOR.get(report.waiting_for, report.waiting_for),
                    "when": timezone.localtime(report.next_slot).isoformat(timespec="seconds"),
                }
            )

    def _progress(self, outcome, site_id, message):
        if message is None:
            return
        self.stdout.write(
            f"{timezone.localtime().strftime('%H:%M:%S')} "
            + _("site %(site)s: message %(pk)s %(outcome)s (%(recipients)s recipient(s))")
            % {
                "site": site_id,
                "pk": message.pk,
                "outcome": outcome,
                "recipients": message.recipient_count,
            }
        )
        self.stdout.flush()
