"""Development settings: the demo with its two local mail servers and the demo inbox."""

import os

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, VAR_DIR, django

DEBUG = True
SECRET_KEY = "django-insecure-survey-demo-key-do-not-use-in-production"
ALLOWED_HOSTS = ["*"]

# The trap: Wagtail's project template puts this line here,
#
#     EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
#
# and because dev.py is read after base.py it silently replaces the wiring above: every mail
# is printed to the console and none reaches wagtail-own-smtp. The demo leaves it out and
# points the platform's mail service at a second local SMTP server instead, so both kinds of
# mail end up in the demo inbox.

INSTALLED_APPS += ["demo"]

# The demo's mail servers (started by `manage.py demo_mailserver`).
DEMO_HTTP_PORT = int(os.environ.get("SURVEY_DEMO_HTTP_PORT", "8000"))
DEMO_OWN_SMTP = {
    "port": int(os.environ.get("SURVEY_DEMO_OWN_SMTP_PORT", "2525")),
    "username": "demo@survey.example",
    "password": "demo-password",
    "maildir": VAR_DIR / "mail" / "own",
}
DEMO_PLATFORM_SMTP = {
    "port": int(os.environ.get("SURVEY_DEMO_PLATFORM_SMTP_PORT", "2526")),
    "maildir": VAR_DIR / "mail" / "platform",
}
DEMO_CERTIFICATES_DIR = VAR_DIR / "certs"
# The sender-domain check asks the demo's DNS server (started with the mail servers) and nothing
# else: its zones give survey.example an SPF record and a DMARC policy to improve.
DEMO_DNS = {"port": int(os.environ.get("SURVEY_DEMO_DNS_PORT", "2553"))}
WAGTAIL_OWN_SMTP_DNS_RESOLVERS = [f"127.0.0.1:{DEMO_DNS['port']}"]

# OAuth in the demo: a local stand-in for Microsoft's and Google's sign-in (the real ones are not
# reachable from a demo on localhost). The own server also accepts AUTH XOAUTH2 with its tokens.
DEMO_IDENTITY = {
    "port": int(os.environ.get("SURVEY_DEMO_IDENTITY_PORT", "2527")),
    # An editor's Microsoft 365 app registration (client credentials).
    "app_tenant": "survey-demo.example",
    "app_client_id": "demo-app-registration",
    "app_client_secret": "demo-client-secret",
}
_identity = f"http://127.0.0.1:{DEMO_IDENTITY['port']}"
# The platform's own apps for "Connect account" (on a real platform: registered with Microsoft and
# Google, see docs/oauth.md).
WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS = {
    "microsoft": {
        "CLIENT_ID": "demo-platform-microsoft-app",
        "CLIENT_SECRET": "demo-platform-microsoft-secret",
        "AUTHORIZE_URL": _identity + "/{tenant}/oauth2/v2.0/authorize",
        "TOKEN_URL": _identity + "/{tenant}/oauth2/v2.0/token",
    },
    "google": {
        "CLIENT_ID": "demo-platform-google-app",
        "CLIENT_SECRET": "demo-platform-google-secret",
        "AUTHORIZE_URL": _identity + "/google/auth",
        "TOKEN_URL": _identity + "/google/token",
    },
}

if django.VERSION >= (6, 1):
    MAILERS["platform"]["OPTIONS"].update(host="127.0.0.1", port=DEMO_PLATFORM_SMTP["port"])  # noqa: F405
else:
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = DEMO_PLATFORM_SMTP["port"]

# The demo's own server listens on loopback, which the app refuses unless allowed, and its
# certificate comes from the demo's own CA.
WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = True
WAGTAIL_OWN_SMTP_CA_FILE = str(DEMO_CERTIFICATES_DIR / "ca.pem")
WAGTAILADMIN_BASE_URL = f"http://localhost:{DEMO_HTTP_PORT}"

try:
    from .local import *  # noqa: F403
except ImportError:
    pass
