"""The dashboard panel: the sites an editor manages at a glance (mode, verification, queue,
forecast, bounce rate), with links to the outbox and the settings."""

from wagtail.admin.ui.components import Component

from .bounces import bounce_rate
from .permissions import outbox_sites
from .views.notices import settings_edit_url
from .views.outbox import first_forecasts
from .views.outbox_table import outbox_url


class OutboxPanel(Component):
    """The dashboard's view of the sites an editor manages: mode, verification, queue, forecast."""

    name = "own_smtp_outbox"
    order = 150
    template_name = "wagtail_own_smtp/dashboard_panel.html"

    def __init__(self, request):
        self.request = request

    def get_context_data(self, parent_context):
        items, more_sites = first_forecasts(outbox_sites(self.request.user))
        for item in items:
            # (bounced, sent) recipients of the last 7 days, for the sites that read bounces
            reads = item.settings is not None and item.settings.bounce_processing
            item.bounces = bounce_rate(item.site.pk) if reads else None
        return {
            "forecasts": items,
            "reads_bounces": any(item.bounces is not None for item in items),
            "more_sites": more_sites,
            "outbox_url": outbox_url(),
            # Wagtail's settings URL without a site opens the setting of the current site.
            "settings_url": settings_edit_url(),
            "request": self.request,
        }
