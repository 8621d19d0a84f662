"""Check the sender domain of every site that sends through its own server, once."""

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from wagtail_own_smtp.domain_report import summary, worded
from wagtail_own_smtp.domain_status import check_site, sites_to_check


class Command(BaseCommand):
    help = gettext_lazy(
        "Check the sender domain of every site that sends through its own verified server: SPF, "
        "DMARC, DKIM and DNS blocklists. Advice only: sending is never held back."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--fresh",
            action="store_true",
            help=gettext_lazy("Ask DNS again even where a recent result could be shared."),
        )

    def handle(self, *args, **options):
        checked = 0
        for smtp_settings in sites_to_check().select_related("site"):
            check = check_site(smtp_settings, fresh=options["fresh"])
            if check is None:
                continue
            checked += 1
            site = smtp_settings.site
            self.stdout.write(f"{site.hostname}:{site.port} (#{site.pk}): {summary(check)}")
            for line in map(worded, check.lines):
                self.stdout.write(f"  {line['status_label']}: {line['title']} {line['text']}")
                for record in line["records"]:
                    fill = f"<{record['fill_label']}>" if record["fill_label"] else ""
                    self.stdout.write(
                        f"    {record['name']} {record['type']} {record['value']}{fill}"
                    )
        if not checked:
            self.stdout.write(_("No site sends through its own verified server."))
