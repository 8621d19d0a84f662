"""Per site: delivery mode, verification, queue counts, next send slot, time until drained."""

from django.core.management.base import BaseCommand
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.models import Site

from wagtail_own_smtp.dispatch import queue_counts, site_outlook, waiting_mail, waiting_times
from wagtail_own_smtp.limits import Limits
from wagtail_own_smtp.models import MessageStatus, SiteSendState, SmtpSettings


def _when(moment, now):
    if moment is None:
        return "-"
    if moment <= now:
        return _("now")
    seconds = int((moment - now).total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    relative = f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
    return f"{timezone.localtime(moment).isoformat(timespec='seconds')} (+{relative})"


class Command(BaseCommand):
    help = gettext_lazy("Show each site's own SMTP server state and mail queue.")

    def handle(self, *args, **options):
        now = timezone.now()
        site_counts = queue_counts()  # one aggregate query for every site's counts
        with_mail = set(site_counts)
        settings_by_site = {s.site_id: s for s in SmtpSettings.objects.all()}
        last_sent = dict(SiteSendState.objects.values_list("site_id", "last_sent_at"))
        # Every waiting row only of sites with caps; of the others, their first and latest due.
        capped = [pk for pk, s in settings_by_site.items() if Limits.of(s).windows()]
        waiting = waiting_mail(capped) if capped else {}
        times = waiting_times()
        sites = Site.objects.filter(pk__in=with_mail | set(settings_by_site)).order_by("pk")
        if not sites:
            self.stdout.write(_("No site uses its own SMTP server and no mail is queued."))
        for site in sites:
            smtp_settings = settings_by_site.get(site.pk) or SmtpSettings(site=site)
            outlook = site_outlook(
                smtp_settings,
                now,
                site_counts.get(site.pk, {}),
                last_sent.get(site.pk),
                waiting.get(site.pk, []),
                times.get(site.pk),
            )
            verification = smtp_settings.get_verification_status_display()
            if smtp_settings.sending_paused:
                verification += " — " + _("sending paused")
            if smtp_settings.has_verified_server:
                verification += f" ({smtp_settings.verified_from_email})"
            counts = ", ".join(
                f"{label.lower()} {outlook.counts[value]}"
                for value, label in MessageStatus.choices
                if outlook.counts[value]
            )
            drained = _when(outlook.drained_at, now)
            if outlook.never_fits:
                drained = _("never: a message has more recipients than a limit allows")
            lines = [
                f"{site.hostname}:{site.port} (#{site.pk})",
                "  " + _("mode: %(mode)s") % {"mode": smtp_settings.get_delivery_mode_display()},
                "  " + _("verification: %(status)s") % {"status": verification},
                "  " + _("messages: %(counts)s") % {"counts": counts or _("none")},
                "  " + _("next slot: %(when)s") % {"when": _when(outlook.next_slot, now)},
                "  " + _("drained by: %(when)s") % {"when": drained},
            ]
            if smtp_settings.sends_own and not smtp_settings.has_verified_server:
                lines.append("  " + _("mail waits until a server is verified"))
            elif not smtp_settings.sends_own and outlook.counts[MessageStatus.QUEUED]:
                lines.append("  " + _("queued mail waits: the site sends via the platform now"))
            self.stdout.write("\n".join(lines))
