"""Which site a message belongs to: ``using_site``, and the page being served.

The request's Host header is no proof: the Wagtail admin, password resets and every other view
answer on each site's host name, and an editor reads what their own server receives. So a message
is a site's mail only when code says so (``using_site``, ``EmailBackend(site=...)``) or while a
Wagtail page of that site is being served (its form notification); everything else is the
platform's.
"""

import contextvars
from contextlib import contextmanager

from wagtail.models import Page

# The innermost context: a Site (``using_site``) or the Page being served (its site is looked up
# only when mail is sent, so pages that send none pay nothing); None: the platform's mail.
_site_context = contextvars.ContextVar("wagtail_own_smtp_site", default=None)
# Whether that innermost context marks its mail as bulk (``using_site(site, bulk=True)``).
_bulk_context = contextvars.ContextVar("wagtail_own_smtp_bulk", default=False)


@contextmanager
def using_site(site, bulk=False):
    """Mail sent inside goes out as ``site``'s mail (the innermost block wins); ``bulk=True``
    queues it in the site's bulk lane, which waits at each slot while normal mail is due."""
    token = _site_context.set(site)
    bulk_token = _bulk_context.set(bool(bulk))
    try:
        yield site
    finally:
        _bulk_context.reset(bulk_token)
        _site_context.reset(token)


@contextmanager
def serving_page(page):
    """Mail sent while ``page`` is served is its site's mail (e.g. a form page's notification).

    Entered around the page's own ``serve`` only: an error report, sent after the view raised,
    and whatever other middleware sends are outside it.
    """
    token = _site_context.set(page)
    bulk_token = _bulk_context.set(False)  # a page's mail (a form notification) is normal mail
    try:
        yield page
    finally:
        _bulk_context.reset(bulk_token)
        _site_context.reset(token)


def current_site(explicit=None):
    """A message's site: explicit, else the innermost ``using_site`` or page being served, else
    None (the platform's service)."""
    if explicit is not None:
        return explicit
    context = _site_context.get()
    return context.get_site() if isinstance(context, Page) else context


def current_bulk(explicit_site=None, explicit_bulk=False):
    """Whether a message goes in the bulk lane: as its backend says (``EmailBackend(bulk=True)``),
    else, for mail whose site comes from the context, as the innermost ``using_site`` says."""
    return bool(explicit_bulk) or (explicit_site is None and _bulk_context.get())


class SiteContextMiddleware:
    """Deprecated, does nothing: kept so that existing ``MIDDLEWARE`` settings keep working.

    It used to route every message sent during a request to the site the Host header named; the
    page being served now sets the context (see ``serving_page``, wired by a Wagtail hook).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
