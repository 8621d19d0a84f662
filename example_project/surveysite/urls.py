from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls
from wagtail.documents import urls as wagtaildocs_urls

urlpatterns = [
    path("django-admin/", admin.site.urls),
    path("admin/", include(wagtailadmin_urls)),
    path("documents/", include(wagtaildocs_urls)),
]

if apps.is_installed("demo"):
    # The demo inbox shows every message the demo's mail servers received: never in production.
    urlpatterns.append(path("demo-inbox/", include("demo.urls")))

if settings.DEBUG:
    from django.conf.urls.static import static
    from django.contrib.staticfiles.urls import staticfiles_urlpatterns

    urlpatterns += staticfiles_urlpatterns()
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

urlpatterns = urlpatterns + [
    # Wagtail's page serving: the catch-all, last.
    path("", include(wagtail_urls)),
]

# The public confirmation link of wagtail-own-smtp, before Wagtail's catch-all, which would
# otherwise swallow it.
urlpatterns.insert(0, path("own-smtp/", include("wagtail_own_smtp.urls")))
