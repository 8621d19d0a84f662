"""What the app's per-site admin reports (outbox, bounces, suppressed addresses) share.

Each lists only the rows of the sites whose SMTP setting the user may change, under that
setting's permission policy; dates read as on the status panel and in the forecast.
"""

from django.utils import formats, timezone
from django.utils.functional import cached_property
from wagtail.admin.views.reports import ReportView

from ..permissions import settings_permission_policy, visible_rows


def local_datetime(value):
    # The format of the status panel and the forecast, so one page shows one kind of date.
    if not value:
        return ""
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


def site_name(row):
    """The name of the row's site, as the listings show it."""
    return row.site.site_name or row.site.hostname


class PerSiteReport(ReportView):
    """A Wagtail report of the rows (each with a ``site``) of the user's sites."""

    is_searchable = True
    paginate_by = 50
    permission_required = "change"

    @cached_property
    def permission_policy(self):
        return settings_permission_policy()

    def get_base_queryset(self):
        return visible_rows(self.model.objects.select_related("site"), self.request.user)
