from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WagtailOwnSmtpConfig(AppConfig):
    name = "wagtail_own_smtp"
    label = "wagtail_own_smtp"
    verbose_name = _("Own SMTP server")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_migrate

        from . import (
            checks,  # noqa: F401  (registers the system checks)
            domain_status,  # noqa: F401  (checks a domain once its server is verified)
        )
        from .tasks import ensure_schedule

        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="wagtail_own_smtp.schedule")
