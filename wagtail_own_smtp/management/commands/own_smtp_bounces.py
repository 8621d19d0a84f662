"""Read every enabled sender mailbox once for delivery reports (what django-q2 schedules)."""

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from wagtail_own_smtp import bounces


class Command(BaseCommand):
    help = gettext_lazy(
        "Read the sender mailboxes of the sites that process bounces once: record the delivery "
        "reports about their messages and suppress the addresses that bounce."
    )

    def handle(self, *args, **options):
        readings = bounces.read_all()
        for reading in readings:
            self.stdout.write(
                _(
                    "Site %(site)s: %(read)s new message(s) read, %(bounces)s bounce(s) recorded, "
                    "%(large)s left alone for their size."
                )
                % {
                    "site": reading.site_id,
                    "read": reading.read,
                    "bounces": len(reading.bounces),
                    "large": reading.too_large,
                }
            )
            if reading.failure:
                self.stderr.write(
                    _("Site %(site)s: the mailbox could not be read: %(reason)s")
                    % {"site": reading.site_id, "reason": reading.failure}
                )
        if not readings:
            self.stdout.write(_("No site reads bounces from its mailbox."))
