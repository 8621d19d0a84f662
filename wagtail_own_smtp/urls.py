"""The public confirmation link; mount it before Wagtail's catch-all (see the README)."""

from django.urls import path

from . import views

app_name = "wagtail_own_smtp"

urlpatterns = [
    path("verify/<str:token>/", views.verify, name="verify"),
    path("verified/", views.verified, name="verified"),
]
