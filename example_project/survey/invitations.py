"""Survey invitations: the bulk mail a survey site sends, here through plain ``send_mail``."""

from django.core.mail import send_mail
from django.utils.html import escape

from wagtail_own_smtp import using_site

from .models import SurveyPage

PARTICIPANT_ADDRESS = "participant-{number:04d}@participants.example"


def send_invitations(site, count):
    """Send ``count`` invitations as ``site``'s mail; return how many were handed over.

    Outside a request nothing tells the mail backend which site is sending: ``using_site`` does.
    With the site's own server switched on, the messages are queued in the site's bulk lane and
    go out as fast as the site's limits allow, while its form notifications go first.
    """
    survey = SurveyPage.objects.live().descendant_of(site.root_page, inclusive=True).first()
    link = survey.get_full_url() if survey else site.root_url
    title = survey.title if survey else site.site_name
    handed_over = 0
    with using_site(site, bulk=True):
        for number in range(1, count + 1):
            text = (
                f"Hello,\n\nyou are invited to take part in our survey “{title}”:\n{link}\n\n"
                f"It takes five minutes. Thank you!\n\n(Invitation {number} of {count})\n"
            )
            html = (
                f"<p>Hello,</p><p>you are invited to take part in our survey "
                f"<a href='{escape(link)}'>{escape(title)}</a>.</p>"
                f"<p>It takes five minutes. Thank you!</p>"
                f"<p><small>Invitation {number} of {count}</small></p>"
            )
            handed_over += send_mail(
                f"Invitation: {title}",
                text,
                None,  # DEFAULT_FROM_EMAIL; the own server replaces it by its verified sender
                [PARTICIPANT_ADDRESS.format(number=number)],
                html_message=html,
            )
    return handed_over
