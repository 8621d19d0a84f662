"""A fresh `wagtail start` site, wired as the README says, goes through the help page's steps.

Run with the Python of a virtualenv that has wagtail-own-smtp installed:
    python scripts/fresh_site_check.py
It makes the site in a temporary folder, removes the console EMAIL_BACKEND that `wagtail start`
puts in dev.py (the README's first trap), adds the README's wiring, and then, against a real
STARTTLS + AUTH server on loopback: a wrong password shows the server's reply; a right one gives
the red message and a confirmation message; GET of the link changes nothing; POST activates; mail
sent inside using_site() leaves through the server with the verified sender.
"""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WIRING = """
# wagtail-own-smtp, as its README says
INSTALLED_APPS += ["wagtail.contrib.settings", "django_q", "wagtail_own_smtp"]
import django as _django
if _django.VERSION >= (6, 1):
    MAILERS = {
        "default": {
            "BACKEND": "wagtail_own_smtp.backends.EmailBackend",
            "OPTIONS": {"fallback": "platform"},
        },
        "platform": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": {}},
    }
else:
    EMAIL_BACKEND = "wagtail_own_smtp.backends.EmailBackend"
    WAGTAIL_OWN_SMTP_FALLBACK_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
Q_CLUSTER = {"name": "site", "orm": "default", "timeout": 90, "retry": 120}
WAGTAIL_OWN_SMTP_ALLOW_PRIVATE_HOSTS = True  # the check's server is on loopback
import os as _os
WAGTAIL_OWN_SMTP_CA_FILE = _os.environ["FRESH_SITE_CA"]
ALLOWED_HOSTS = ["*"]
"""


def make_site(folder):
    import wagtail

    # The project template of the Wagtail installed here (7.4 LTS or 8.x): its dev.py, its layout.
    print(f"wagtail start with Wagtail {wagtail.__version__}'s project template")
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "wagtail"), "start", "freshsite"], cwd=folder, check=True)
    project = Path(folder) / "freshsite"
    dev = project / "freshsite" / "settings" / "dev.py"
    console = 'EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"'
    assert console in dev.read_text(), "wagtail start no longer sets the console backend"
    dev.write_text(dev.read_text().replace(console, ""))
    base = project / "freshsite" / "settings" / "base.py"
    base.write_text(base.read_text() + WIRING)
    urls = project / "freshsite" / "urls.py"
    urls.write_text(
        urls.read_text()
        + '\nurlpatterns.insert(0, path("own-smtp/", include("wagtail_own_smtp.urls")))\n'
    )
    return project


def walk(project, certificates):
    sys.path.insert(0, str(project))
    os.environ["DJANGO_SETTINGS_MODULE"] = "freshsite.settings.dev"
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.mail import send_mail
    from django.core.management import call_command
    from django.test import Client
    from wagtail.models import Site

    from example_project.local_smtp import LocalSmtpServer
    from wagtail_own_smtp import using_site
    from wagtail_own_smtp.models import SmtpSettings

    call_command("migrate", verbosity=0)
    user, password = "mailer@fresh.example", "Fresh-Pässword-1"
    server = LocalSmtpServer(
        security="starttls", credentials=(user, password), certificates=certificates
    ).start()
    try:
        User.objects.create_superuser("walker", "walker@fresh.example", "walker-password")
        client = Client()
        assert client.login(username="walker", password="walker-password")
        site = Site.objects.get(is_default_site=True)
        url = f"/admin/settings/wagtail_own_smtp/smtpsettings/{site.pk}/"

        def save(secret):
            form = {
                "delivery_mode": "own", "host": "localhost", "port": server.port,
                "security": "starttls", "from_email": user, "from_name": "Fresh Survey",
                "username": user, "password": secret, "min_interval": "0",
                "max_per_hour": "", "max_per_day": "", "provider_preset": "",
            }  # fmt: skip
            return client.post(url, form, follow=True).content.decode()

        def status():
            return SmtpSettings.objects.get(site=site).verification_status

        page = save("wrong-password")
        assert status() == "failed" and "535 5.7.8 Authentication credentials invalid" in page
        print("wrong password: failed, the server's reply shown")

        page = save(password)
        assert status() == "pending" and "A test message with a confirmation link" in page
        body = server.wait_for(1)[0].message.get_body(("plain",)).get_content()
        path = re.search(r"https?://[^/\s]+(/own-smtp/verify/\S+/)", body).group(1)
        print("saved: pending, red message, confirmation message at the server")

        assert client.get(path).status_code == 200 and status() == "pending"
        page = client.post(path, follow=True).content.decode()
        assert status() == "verified" and "The new server settings are now active" in page
        assert password not in page
        print("link: GET changes nothing, POST activates (green message)")

        with using_site(site):
            send_mail("Your invitation", "Take part.", "surveys@platform.example", ["p@ex.org"])
        call_command("own_smtp_send", "--until-empty", verbosity=0)
        arrived = server.wait_for(2)[-1]
        assert arrived.mail_from == user and user in arrived.message["From"]
        assert arrived.message["Reply-To"] == "surveys@platform.example"
        print("send_mail inside using_site: delivered through the verified server")
    finally:
        server.stop()


def main():
    sys.path.insert(0, str(REPO))
    from example_project.local_smtp import make_certificates

    with tempfile.TemporaryDirectory() as folder:
        certificates = make_certificates(Path(folder) / "certs", hostnames=("localhost",))
        os.environ["FRESH_SITE_CA"] = str(certificates["ca"])
        project = make_site(folder)
        os.chdir(project)
        walk(project, certificates)
    print("fresh wagtail site: all steps passed")


if __name__ == "__main__":
    main()
