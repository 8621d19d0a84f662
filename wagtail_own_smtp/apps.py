from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WagtailOwnSmtpConfig(AppConfig):
    name = "wagtail_own_smtp"
    label = "wagtail_own_smtp"
    verbose_name = _("Own SMTP server")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
