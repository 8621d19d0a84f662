"""Which site a message belongs to: ``using_site`` and the request's site."""

import contextvars
from contextlib import contextmanager

from wagtail.models import Site

_current_site = contextvars.ContextVar("wagtail_own_smtp_site", default=None)
_current_request = contextvars.ContextVar("wagtail_own_smtp_request", default=None)


@contextmanager
def using_site(site):
    """Mail sent inside goes out as ``site``'s mail (the innermost block wins)."""
    token = _current_site.set(site)
    try:
        yield site
    finally:
        _current_site.reset(token)


class SiteContextMiddleware:
    """Remembers the request's Wagtail site, so mail sent while handling it is routed to it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # The site is looked up only when mail is sent, so other requests pay nothing.
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


def current_site(explicit=None):
    """A message's site: explicit, else ``using_site``, else the request's, else the default."""
    site = explicit or _current_site.get()
    if site is None and (request := _current_request.get()) is not None:
        site = Site.find_for_request(request)
    if site is None:
        site = Site.objects.filter(is_default_site=True).first()
    return site
