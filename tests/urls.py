from django.urls import include, path
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls

urlpatterns = [
    path("admin/", include(wagtailadmin_urls)),
    # Django's own account views (password reset), as many host projects wire them.
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include(wagtail_urls)),
]
# As the README tells host projects: before Wagtail's catch-all.
urlpatterns.insert(0, path("own-smtp/", include("wagtail_own_smtp.urls")))
