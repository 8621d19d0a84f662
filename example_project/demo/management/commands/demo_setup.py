from demo.mailservers import certificates
from demo.summary import SUPERUSER
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from home.models import HomePage
from survey.models import SurveyField, SurveyPage
from wagtail.models import Site

HOME_BODY = (
    "<p>A survey site on Wagtail. Its mail (survey invitations, form notifications) goes out "
    "through the platform's mail service, or, once an editor has switched it on and confirmed "
    "it, exclusively through the site's own SMTP server.</p>"
)

QUESTIONS = [
    ("Your name", "singleline", "", False),
    ("Your email address", "email", "", True),
    (
        "How satisfied are you with our service?",
        "radio",
        "Very\nRather\nNot really\nNot at all",
        True,
    ),
    ("What should we improve?", "multiline", "", False),
]


class Command(BaseCommand):
    help = (
        "Prepare the demo: the mail servers' certificates, the database, the superuser, the "
        "site and the survey page. Safe to run again."
    )
    # The system checks want the demo CA (WAGTAIL_OWN_SMTP_CA_FILE), which this command makes.
    requires_system_checks = []

    def handle(self, **options):
        certificates()
        call_command("migrate", interactive=False, verbosity=options["verbosity"] - 1)
        with transaction.atomic():
            self.ensure_superuser()
            site = self.ensure_site()
            self.ensure_survey(site.root_page)
        username, password = SUPERUSER
        self.stdout.write(
            f"The demo is set up (login {username} / {password}); start it with "
            "`manage.py demo_run` (`make demo` does both)."
        )

    def ensure_superuser(self):
        username, password = SUPERUSER
        User = get_user_model()
        # A name too: Wagtail's account page requires it, so without one "Save" (to switch the
        # admin's language) fails.
        names = {"first_name": "Ada", "last_name": "Admin"}
        user = User.objects.filter(username=username).first()
        if user is not None:
            if not user.first_name or not user.last_name:
                User.objects.filter(pk=user.pk).update(**names)
            return
        User.objects.create_superuser(username, "admin@survey.example", password, **names)
        self.stdout.write(f"Created the superuser {username} / {password}.")

    def ensure_site(self):
        """The default site at localhost:<demo port>, so links in mail point at runserver."""
        site = Site.objects.filter(is_default_site=True).first()
        if site is None:
            site = Site(is_default_site=True, root_page=HomePage.objects.first())
        site.hostname = "localhost"
        site.port = settings.DEMO_HTTP_PORT
        site.site_name = "Survey demo"
        site.save()
        home = site.root_page.specific
        if isinstance(home, HomePage) and not home.body:
            home.title = "Survey demo"
            home.body = HOME_BODY
            home.save_revision().publish()
        return site

    def ensure_survey(self, home):
        if SurveyPage.objects.descendant_of(home).exists():
            return
        survey = SurveyPage(
            title="Customer survey",
            slug="customer-survey",
            intro="<p>Five questions about our service. Your answers are mailed to our team.</p>",
            thank_you_text="<p>Thank you for taking part!</p>",
            to_address="survey-team@survey.example",
            subject="New survey response",
        )
        home.add_child(instance=survey)
        for order, (label, field_type, choices, required) in enumerate(QUESTIONS):
            SurveyField.objects.create(
                page=survey,
                sort_order=order,
                label=label,
                field_type=field_type,
                choices=choices,
                required=required,
            )
        survey.save_revision().publish()
        self.stdout.write(f"Created the survey page {survey.url_path}.")
