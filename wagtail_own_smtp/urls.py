"""The public confirmation link; mount it before Wagtail's catch-all (see the README)."""

from django.urls import path

from .views import verify

app_name = "wagtail_own_smtp"

urlpatterns = [
    path("verify/<str:token>/", verify.verify, name="verify"),
    path("verified/", verify.verified, name="verified"),
]
