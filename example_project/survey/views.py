from django import forms
from django.contrib import messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from wagtail.models import Site

from .invitations import send_invitations


class InvitationForm(forms.Form):
    site = forms.ModelChoiceField(Site.objects.all(), empty_label=None)
    count = forms.IntegerField(
        min_value=1,
        max_value=500,
        initial=20,
        help_text="Each goes to its own address participant-NNNN@participants.example.",
    )


def invitations(request):
    """A Wagtail admin page that sends N survey invitations through the site's mail."""
    form = InvitationForm(request.POST or None, initial={"site": Site.find_for_request(request)})
    if request.method == "POST" and form.is_valid():
        site = form.cleaned_data["site"]
        handed_over = send_invitations(site, form.cleaned_data["count"])
        messages.success(
            request,
            f"{handed_over} invitation(s) handed to the mail backend as {site}. With the own "
            "server switched on they wait in the queue and go out within the limits.",
        )
        return redirect("survey_invitations")
    return TemplateResponse(request, "survey/invitations.html", {"form": form})
