from django.core.management.base import BaseCommand, CommandError
from survey.invitations import send_invitations
from wagtail.models import Site


class Command(BaseCommand):
    help = "Send N survey invitations as a site's mail (to participant-NNNN@participants.example)."

    def add_arguments(self, parser):
        parser.add_argument("count", type=int)
        parser.add_argument("--site", type=int, help="Site id (default: the default site).")

    def handle(self, count, site=None, **options):
        if not 1 <= count <= 10_000:
            raise CommandError("count must be between 1 and 10000")
        try:
            sending_site = (
                Site.objects.get(pk=site) if site else Site.objects.get(is_default_site=True)
            )
        except Site.DoesNotExist:
            raise CommandError("no such site") from None
        handed_over = send_invitations(sending_site, count)
        self.stdout.write(
            f"{handed_over} invitation(s) handed to the mail backend as {sending_site}."
        )
