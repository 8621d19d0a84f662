from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo's own pieces: the two local mail servers, the inbox, the setup commands."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "demo"
