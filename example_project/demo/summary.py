"""What the demo prints: where to click, how to log in, what to type into the settings."""

from django.conf import settings
from django.urls import reverse
from survey.models import SurveyPage

from .mailservers import smtp_host

SUPERUSER = ("admin", "admin-password")


def demo_summary(site):
    base = f"http://localhost:{settings.DEMO_HTTP_PORT}"
    settings_path = reverse(
        "wagtailsettings:edit", args=["wagtail_own_smtp", "smtpsettings", site.pk]
    )
    survey = SurveyPage.objects.live().descendant_of(site.root_page).first()
    survey_url = survey.get_full_url() if survey else "(none: run demo_setup)"
    own = settings.DEMO_OWN_SMTP
    identity = settings.DEMO_IDENTITY
    username, password = SUPERUSER
    return f"""
Survey demo
  Site                     {base}/
  Survey (a form page)     {survey_url}
  Wagtail admin            {base}/admin/   login: {username} / {password}
  Own SMTP server settings {base}{settings_path}
  Send survey invitations  {base}{reverse("survey_invitations")}
  Demo inbox               {base}{reverse("demo:inbox")}

In "Own SMTP server" enter:
  Delivery         Send exclusively via own mail server
  SMTP host        {smtp_host()}
  Port             {own["port"]}
  Encryption       STARTTLS
  Sender address   {own["username"]}
  Username         {own["username"]}
  Password         {own["password"]}
  Limits           e.g. minimum interval 2 seconds, maximum per hour 30
Save, open the confirmation message in the demo inbox and click its link.
The platform's mail service is the second demo server, port {settings.DEMO_PLATFORM_SMTP["port"]}.

Or log in with OAuth instead of the password (a local stand-in plays Microsoft and Google):
  Login "Microsoft 365: sign in" or "Google Workspace / Gmail: sign in": save, then
      "Connect account" and "Accept" on the stand-in's page.
  Login "Microsoft 365: app registration": tenant ID {identity["app_tenant"]},
      client ID {identity["app_client_id"]}, client secret {identity["app_client_secret"]}.
"""
