"""The settings edit screen, grouped like the help page, with a read-only verification status."""

from django import forms
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from wagtail.admin.panels import FieldPanel, FieldRowPanel, MultiFieldPanel, Panel

from . import crypto
from .bounces import bounce_rate
from .choices import SIGN_IN_METHODS, AuthMethod, VerificationStatus
from .domain_report import checklist
from .forecast import site_forecast
from .forms import AuthMethodSelect, security_hint
from .models import DomainCheck, MailboxState
from .timeline import add_charts
from .verification import link_expires_at


class VerificationStatusPanel(Panel):
    """Verification state, the server's last reply, the resend / connection test buttons, and for
    a sign-in method the "Connect account" button."""

    class BoundPanel(Panel.BoundPanel):
        template_name = "wagtail_own_smtp/panels/verification_status.html"

        def get_context_data(self, parent_context=None):
            context = super().get_context_data(parent_context)
            smtp_settings = self.instance
            site_pk = smtp_settings.site_id
            # The login as stored: a rejected form changed the instance, and the buttons act on
            # what is saved.
            auth_method = getattr(self.form, "stored_auth_method", smtp_settings.auth_method)
            uses_sign_in = auth_method in SIGN_IN_METHODS
            signed_in = uses_sign_in and smtp_settings.has_password
            context.update(
                # The template compares the enums, not their values spelled out.
                Status=VerificationStatus,
                AuthMethod=AuthMethod,
                settings=smtp_settings,
                status=smtp_settings.verification_status,
                status_label=smtp_settings.get_verification_status_display(),
                auth_method=auth_method,
                uses_sign_in=uses_sign_in,
                has_password=smtp_settings.has_password,
                account_connected=signed_in,
                connect_url=uses_sign_in
                and site_pk
                and reverse("wagtail_own_smtp_admin:oauth_connect", args=[site_pk]),
                # A lost key must not break the page; the editor is told to enter it again.
                password_undecryptable=(
                    smtp_settings.has_password
                    and not crypto.can_decrypt(smtp_settings.password_ciphertext)
                ),
                link_expires_at=link_expires_at(smtp_settings),
                security_hint=security_hint(smtp_settings),
                can_act=bool(
                    site_pk
                    and smtp_settings.host
                    and smtp_settings.from_email
                    and (signed_in or not uses_sign_in)
                ),
                # A verified, running server needs no new link; a failed or paused one may.
                can_resend=smtp_settings.verification_status != VerificationStatus.VERIFIED,
                resend_url=site_pk and reverse("wagtail_own_smtp_admin:resend", args=[site_pk]),
                test_url=site_pk
                and reverse("wagtail_own_smtp_admin:test_connection", args=[site_pk]),
                domain_check=checklist(
                    smtp_settings, DomainCheck.objects.filter(site_id=site_pk).first()
                ),
            )
            return context


class OutboxSummaryPanel(Panel):
    """The site's queue in one sentence, with a link to its outbox."""

    class BoundPanel(Panel.BoundPanel):
        template_name = "wagtail_own_smtp/outbox/settings_summary.html"

        def get_context_data(self, parent_context=None):
            context = super().get_context_data(parent_context)
            site_pk = self.instance.site_id
            context["forecast"] = site_pk and add_charts([site_forecast(self.instance)])[0]
            context["outbox_url"] = site_pk and (
                reverse("wagtail_own_smtp_admin:outbox") + f"?site={site_pk}"
            )
            return context


class MailboxPanel(Panel):
    """Bounces: when the mailbox was last read, the bounce rate, and "Test the mailbox"."""

    class BoundPanel(Panel.BoundPanel):
        template_name = "wagtail_own_smtp/panels/mailbox.html"

        def get_context_data(self, parent_context=None):
            context = super().get_context_data(parent_context)
            site_pk = self.instance.site_id
            if site_pk:
                bounced, sent = bounce_rate(site_pk)
                context.update(
                    state=MailboxState.objects.filter(site_id=site_pk).first(),
                    bounced=bounced,
                    sent=sent,
                    test_url=reverse("wagtail_own_smtp_admin:test_mailbox", args=[site_pk]),
                    bounces_url=reverse("wagtail_own_smtp_admin:bounces") + f"?site={site_pk}",
                    suppressions_url=reverse("wagtail_own_smtp_admin:suppressions")
                    + f"?site={site_pk}",
                )
            context["can_act"] = bool(site_pk and self.instance.imap_host)
            return context


settings_panels = [
    MultiFieldPanel(
        [FieldPanel("delivery_mode", widget=forms.RadioSelect)],
        heading=_("Own SMTP server"),
    ),
    VerificationStatusPanel(heading=_("Verification")),
    OutboxSummaryPanel(heading=_("Outbox")),
    MultiFieldPanel(
        [
            FieldPanel("provider_preset"),
            FieldRowPanel([FieldPanel("host"), FieldPanel("port")]),
            FieldPanel("security"),
            FieldPanel("from_email"),
            FieldPanel("from_name"),
            FieldPanel("dkim_selector"),
            FieldPanel("auth_method", widget=AuthMethodSelect),
            FieldPanel("username"),
            FieldPanel("password"),
            FieldPanel("remove_password"),
            FieldPanel("oauth_tenant"),
            FieldPanel("oauth_client_id"),
            FieldPanel("client_secret"),
        ],
        heading=_("Server parameters"),
    ),
    MultiFieldPanel(
        [
            FieldPanel("min_interval"),
            FieldRowPanel([FieldPanel("max_per_hour"), FieldPanel("max_per_day")]),
        ],
        heading=_("Minimum interval / limits"),
    ),
    MultiFieldPanel(
        [
            FieldPanel("bounce_processing"),
            FieldRowPanel([FieldPanel("imap_host"), FieldPanel("imap_port")]),
            FieldPanel("imap_security"),
            FieldRowPanel([FieldPanel("imap_folder"), FieldPanel("imap_move_to")]),
            MailboxPanel(),
        ],
        heading=_("Bounces"),
    ),
]
