"""Per site: delivery mode, verification, queue counts, next send slot, time until drained."""

from django.core.management.base import BaseCommand
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.models import Site

from wagtail_own_smtp.bounces import bounce_rate
from wagtail_own_smtp.choices import WAITING
from wagtail_own_smtp.domain_report import summary
from wagtail_own_smtp.forecast import queue_counts, site_outlook, waiting_mail, waiting_times
from wagtail_own_smtp.limits import Limits
from wagtail_own_smtp.models import (
    DeliveryMode,
    DomainCheck,
    MessageStatus,
    SiteSendState,
    SmtpSettings,
    VerificationStatus,
)


def _when(moment, now, now_word=None):
    if moment is None:
        return "-"
    if moment <= now:
        return now_word or _("now")
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
        last_sent, backoffs = {}, {}
        for site_id, last_sent_at, until, reply in SiteSendState.objects.values_list(
            "site_id", "last_sent_at", "backoff_until", "backoff_reply"
        ):
            last_sent[site_id] = last_sent_at
            if until and until > now:
                backoffs[site_id] = (until, reply)
        # Every waiting row only of sites with caps; of the others, their first and latest due.
        capped = [pk for pk, s in settings_by_site.items() if Limits.of(s).windows()]
        waiting = waiting_mail(capped) if capped else {}
        times = waiting_times()
        domain_checks = {check.site_id: check for check in DomainCheck.objects.all()}
        sites = Site.objects.filter(pk__in=with_mail | set(settings_by_site)).order_by("pk")
        if not sites:
            self.stdout.write(_("No site uses its own SMTP server and no mail is queued."))
        # Translated once, not per site: with a thousand sites the lookups would cost more
        # than the queries.
        words = {
            "mode": _("mode: %(mode)s"),
            "verification": _("verification: %(status)s"),
            "messages": _("messages: %(counts)s"),
            "next": _("next slot: %(when)s"),
            "drained": _("drained by: %(when)s"),
            "none": _("none"),
            "paused": _("sending paused"),
            "never": _("never: a message has more recipients than a limit allows"),
            "unverified": _("mail waits until a server is verified"),
            "platform": _("queued mail waits: the site sends via the platform now"),
            "now": _("now"),
            "bounces": _("bounces in the last 7 days: %(bounced)s of %(sent)s recipients"),
            "backoff": _("the server asked the site to wait until %(when)s: %(reply)s"),
            "domain": _("sender domain: %(summary)s"),
            "lanes": _("lanes: normal %(normal)s waiting, bulk %(bulk)s waiting"),
            "bulk": _("bulk lane drained by: %(when)s (normal mail goes first, at the next slot)"),
        }
        modes = {value: str(label) for value, label in DeliveryMode.choices}
        verifications = {value: str(label) for value, label in VerificationStatus.choices}
        statuses = [(value, str(label).lower()) for value, label in MessageStatus.choices]
        for site in sites:
            smtp_settings = settings_by_site.get(site.pk) or SmtpSettings(site=site)
            outlook = site_outlook(
                smtp_settings,
                now,
                site_counts.get(site.pk, {}),
                last_sent.get(site.pk),
                waiting.get(site.pk, []),
                times.get(site.pk),
                backoffs.get(site.pk, (None,))[0],
            )
            verification = verifications.get(
                smtp_settings.verification_status, smtp_settings.verification_status
            )
            if smtp_settings.sending_paused:
                verification += " — " + words["paused"]
            if smtp_settings.has_verified_server:
                verification += f" ({smtp_settings.verified_from_email})"
            counts = ", ".join(
                f"{label} {outlook.counts[value]}"
                for value, label in statuses
                if outlook.counts[value]
            )
            drained = _when(outlook.drained_at, now, words["now"])
            if outlook.never_fits:
                drained = words["never"]
            mode = modes.get(smtp_settings.delivery_mode, smtp_settings.delivery_mode)
            lines = [
                f"{site.hostname}:{site.port} (#{site.pk})",
                "  " + words["mode"] % {"mode": mode},
                "  " + words["verification"] % {"status": verification},
                "  " + words["messages"] % {"counts": counts or words["none"]},
                "  " + words["next"] % {"when": _when(outlook.next_slot, now, words["now"])},
                "  " + words["drained"] % {"when": drained},
            ]
            waiting_count = sum(outlook.counts[status] for status in WAITING)
            lanes = {"normal": waiting_count - outlook.bulk_waiting, "bulk": outlook.bulk_waiting}
            lines.append("  " + words["lanes"] % lanes)
            if outlook.bulk_waiting:
                lines.append("  " + words["bulk"] % {"when": drained})
            if site.pk in backoffs:
                until, reply = backoffs[site.pk]
                lines.append(
                    "  "
                    + words["backoff"] % {"when": _when(until, now, words["now"]), "reply": reply}
                )
            if smtp_settings.sends_own and not smtp_settings.has_verified_server:
                lines.append("  " + words["unverified"])
            elif not smtp_settings.sends_own and outlook.counts[MessageStatus.QUEUED]:
                lines.append("  " + words["platform"])
            if smtp_settings.bounce_processing:
                bounced, sent = bounce_rate(site.pk)
                lines.append("  " + words["bounces"] % {"bounced": bounced, "sent": sent})
            if site.pk in domain_checks:
                lines.append("  " + words["domain"] % {"summary": summary(domain_checks[site.pk])})
            self.stdout.write("\n".join(lines))
