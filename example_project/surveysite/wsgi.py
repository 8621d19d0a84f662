"""WSGI config for the survey site."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "surveysite.settings.dev")

application = get_wsgi_application()
