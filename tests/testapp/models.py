from django.db import models
from modelcluster.fields import ParentalKey
from wagtail.admin.panels import FieldPanel, InlinePanel, MultiFieldPanel
from wagtail.contrib.forms.models import AbstractEmailForm, AbstractFormField


class FormField(AbstractFormField):
    page = ParentalKey("FormPage", on_delete=models.CASCADE, related_name="form_fields")


class FormPage(AbstractEmailForm):
    """A survey-style form whose notification mail Wagtail sends on submission."""

    content_panels = AbstractEmailForm.content_panels + [
        InlinePanel("form_fields", label="Form fields"),
        MultiFieldPanel(
            [FieldPanel("to_address"), FieldPanel("from_address"), FieldPanel("subject")],
            "Email",
        ),
    ]


class FailingFormPage(AbstractEmailForm):
    """Sends its notification, then fails (a survey whose own code breaks after the mail)."""

    def get_form_fields(self):
        return []

    def process_form_submission(self, form):
        super().process_form_submission(form)
        raise RuntimeError("the survey's backend is down")
