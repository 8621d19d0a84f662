"""Production settings: secrets and hosts from the environment, the platform's real mail service.

Run `manage.py qcluster` as a service next to the web server: it sends the queued mail of the
sites that use their own server.
"""

import os

from .base import *  # noqa: F403

DEBUG = False
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "").split()

STORAGES["staticfiles"]["BACKEND"] = (  # noqa: F405
    "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
)

# Keys for the stored SMTP passwords, newest first; without them the keys are derived from
# SECRET_KEY. After adding a key, run `manage.py own_smtp_rotate_keys`.
if os.environ.get("OWN_SMTP_ENCRYPTION_KEYS"):
    WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = os.environ["OWN_SMTP_ENCRYPTION_KEYS"].split()

try:
    from .local import *  # noqa: F403
except ImportError:
    pass
