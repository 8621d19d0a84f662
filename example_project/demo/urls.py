from django.urls import path

from . import views

app_name = "demo"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("clear/", views.clear, name="clear"),
    path("<str:server>/<str:key>/", views.message_detail, name="message"),
    path("<str:server>/<str:key>/source/", views.message_source, name="source"),
]
