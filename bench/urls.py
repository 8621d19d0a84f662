"""URLs of the bench project: Wagtail's admin (the outbox page is timed at scale) and the app's."""

from django.urls import include, path
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls

urlpatterns = [
    path("own-smtp/", include("wagtail_own_smtp.urls")),
    path("admin/", include(wagtailadmin_urls)),
    path("", include(wagtail_urls)),
]
