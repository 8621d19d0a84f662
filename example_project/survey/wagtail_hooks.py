from django.urls import path, reverse
from wagtail import hooks
from wagtail.admin.menu import MenuItem

from . import views


@hooks.register("register_admin_urls")
def register_invitation_url():
    return [path("survey-invitations/", views.invitations, name="survey_invitations")]


@hooks.register("register_admin_menu_item")
def register_invitation_menu_item():
    return MenuItem(
        "Survey invitations", reverse("survey_invitations"), icon_name="mail", order=900
    )
