from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WagtailOwnSmtpConfig(AppConfig):
    name = "wagtail_own_smtp"
    label = "wagtail_own_smtp"
    verbose_name = _("Own SMTP server")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported here, once the models are loaded: these modules read them.
        from django.db.models.signals import post_migrate

        from . import (
            checks,  # noqa: F401  (registers the system checks)
            domain_status,  # noqa: F401  (checks a domain once its server is verified)
        )
        from .forms import SmtpSettingsForm
        from .models import SmtpSettings
        from .panels import settings_panels
        from .tasks import ensure_schedule

        # The admin's parts are set on the model here, as Wagtail's own admin app does for
        # Page, so the model imports no admin code. Wagtail reads both when the settings edit
        # view first builds its edit handler, after every app is ready.
        SmtpSettings.panels = settings_panels
        SmtpSettings.base_form_class = SmtpSettingsForm
        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="wagtail_own_smtp.schedule")
