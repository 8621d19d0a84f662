"""The stored result of the sender-domain check (domain_check.py), a model of its own."""

from django.db import models
from wagtail.models import Site


class DomainCheck(models.Model):
    """The latest sender-domain check of a site (domain_check.py): one line per check, as JSON."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="+", primary_key=True)
    domain = models.CharField(max_length=253)
    # domain_check.Sender.key: sites whose check asks the same questions share a fresh result.
    sender_key = models.CharField(max_length=64, db_index=True)
    checked_at = models.DateTimeField()
    lines = models.JSONField(default=list)

    def __str__(self):
        return f"domain check of site {self.site_id} ({self.domain})"
