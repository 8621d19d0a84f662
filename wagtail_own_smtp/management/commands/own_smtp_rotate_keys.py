"""Re-encrypt every stored SMTP password (or OAuth client secret, refresh token) under the first
key."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.translation import gettext as _

from wagtail_own_smtp import crypto
from wagtail_own_smtp.models import SECRET_FIELDS, AccessToken, SmtpSettings


class Command(BaseCommand):
    help = _(
        "Re-encrypt the stored SMTP passwords under the first key of "
        "WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS (or of SECRET_KEY). Afterwards the older keys can be "
        "removed. Either every password is re-encrypted or none."
    )

    def handle(self, *args, **options):
        with transaction.atomic():
            stored = SmtpSettings.objects.select_for_update().order_by("pk")
            rotated, undecryptable = {}, []
            for setting in stored:
                changes = {}
                for field in SECRET_FIELDS:
                    ciphertext = bytes(getattr(setting, field) or b"")
                    if not ciphertext:
                        continue
                    try:
                        changes[field] = crypto.rotate(ciphertext)
                    except crypto.UndecryptablePassword:
                        undecryptable.append(setting)
                        break
                if changes:
                    rotated[setting.pk] = changes
            if undecryptable:
                # Nothing written yet; the transaction ends without a change.
                sites = ", ".join(str(setting.site) for setting in undecryptable)
                raise CommandError(
                    _(
                        "No configured key decrypts the stored SMTP password of: %(sites)s. "
                        "Nothing was changed. Add the key that encrypted it to "
                        "WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS (after the first) or the old "
                        "SECRET_KEY to SECRET_KEY_FALLBACKS, or have an editor enter the "
                        "password again."
                    )
                    % {"sites": sites}
                )
            # update(), not save(): no save hooks, and the parameters' fingerprint stays as is.
            for pk, changes in rotated.items():
                SmtpSettings.objects.filter(pk=pk).update(**changes)
            # Cached OAuth access tokens live an hour at most: fetched anew rather than rotated.
            AccessToken.objects.all().delete()
        passwords = sum(len(changes) for changes in rotated.values())
        self.stdout.write(
            self.style.SUCCESS(
                _("Re-encrypted %(passwords)s stored password(s) of %(sites)s site(s).")
                % {"passwords": passwords, "sites": len(rotated)}
            )
        )
