from django.urls import path  # noqa: F401

app_name = "wagtail_own_smtp"

urlpatterns = []
