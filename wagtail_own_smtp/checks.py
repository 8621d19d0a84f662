"""System checks (ids wagtail_own_smtp.E0xx / W0xx), registered in AppConfig.ready().

Run them all with ``manage.py check --deploy --database default`` (W001 is a deployment check,
E002 a database check).
"""

import re
import ssl
import warnings

import django
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, router
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from . import conf, crypto, transport
from .backends import EmailBackend
from .dns_client import parse_resolvers
from .models import SECRET_FIELDS
from .oauth import DEFAULT_PROVIDERS

TAG = "wagtail_own_smtp"
OWN_BACKEND = "wagtail_own_smtp.backends.EmailBackend"
DJANGO_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
SQLITE_ENGINE = "django.db.backends.sqlite3"
WAL_OPTION = '"OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"}'
WAL_PRAGMA = re.compile(r"journal_mode\s*=\s*['\"]?wal\b", re.IGNORECASE)
GENERATE_KEY = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def dispatch_runtime():
    """Seconds one dispatch task may run: the budget plus one SMTP exchange begun at its end."""
    return conf.get("DISPATCH_BUDGET") + 2 * conf.get("TIMEOUT")


@checks.register(TAG, checks.Tags.security, deploy=True)
def check_derived_keys(app_configs, **kwargs):
    if crypto.keys_are_derived():
        return [
            checks.Warning(
                _("SMTP passwords are encrypted with a key derived from SECRET_KEY."),
                hint=_(
                    "Set WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS to a list of Fernet keys (make one "
                    "with: %(command)s), then run manage.py own_smtp_rotate_keys. A leaked or "
                    "rotated SECRET_KEY then no longer affects the stored passwords."
                )
                % {"command": GENERATE_KEY},
                id="wagtail_own_smtp.W001",
            )
        ]
    return []


def _keys_are_a_list():
    keys = conf.get("ENCRYPTION_KEYS")
    return not keys or isinstance(keys, list | tuple)


@checks.register(TAG, checks.Tags.security)
def check_encryption_keys(app_configs, **kwargs):
    if not _keys_are_a_list():
        return [
            checks.Error(
                _("WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS must be a list of keys."),
                hint=_('Write WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS = ["<key>"].'),
                id="wagtail_own_smtp.E001",
            )
        ]
    # The key itself is a secret: name its position only.
    return [
        checks.Error(
            _("Key number %(position)s in WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS is not a Fernet key.")
            % {"position": position},
            hint=_("A key is 32 url-safe base64-encoded bytes; make one with: %(command)s")
            % {"command": GENERATE_KEY},
            id="wagtail_own_smtp.E001",
        )
        for position in crypto.malformed_keys()
    ]


# Not under TAG: Django 6.x runs a check selected by tag against every database.
@checks.register(checks.Tags.database)
def check_stored_passwords(app_configs, databases=None, **kwargs):
    """Every stored password decrypts with the configured keys (migrate, check --database)."""
    our_config = apps.get_app_config("wagtail_own_smtp")
    if not databases or (app_configs is not None and our_config not in app_configs):
        return []
    if not _keys_are_a_list() or crypto.malformed_keys():
        return []  # E001 says why; no key can be tried
    model = our_config.get_model("SmtpSettings")
    errors = []
    for alias in databases:
        if not router.allow_migrate_model(alias, model):
            continue
        try:
            if model._meta.db_table not in connections[alias].introspection.table_names():
                continue  # not migrated yet
            stored = list(model.objects.using(alias).select_related("site").order_by("pk"))
        except DatabaseError:
            continue
        errors.extend(_undecryptable(setting) for setting in stored)
    return [error for error in errors if error]


def _undecryptable(setting):
    ciphertexts = [getattr(setting, name) for name in SECRET_FIELDS]
    broken = [c for c in ciphertexts if c and not crypto.can_decrypt(c)]
    if not broken:
        return None
    if all(crypto.needs_migration(c) for c in broken):
        hint = _(
            "It was encrypted with the key derived from SECRET_KEY; run "
            "manage.py own_smtp_rotate_keys to re-encrypt it under the configured keys."
        )
    else:
        hint = _(
            "Add the key that encrypted it to WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS (after the "
            "first), or the old SECRET_KEY to SECRET_KEY_FALLBACKS; otherwise an editor must "
            "enter the password again."
        )
    return checks.Error(
        _("The stored SMTP password of site %(site)s cannot be decrypted with any key.")
        % {"site": setting.site},
        hint=hint,
        obj=setting,
        id="wagtail_own_smtp.E002",
    )


@checks.register(TAG)
def check_django_q(app_configs, **kwargs):
    if apps.is_installed("django_q"):
        return []
    return [
        checks.Error(
            _("django_q is not in INSTALLED_APPS: queued mail would never be sent."),
            hint=_('Install django-q2 and add "django_q" to INSTALLED_APPS.'),
            id="wagtail_own_smtp.E003",
        )
    ]


@checks.register(TAG)
def check_q_cluster(app_configs, **kwargs):
    if not apps.is_installed("django_q"):
        return []
    cluster = getattr(settings, "Q_CLUSTER", None) or {}
    runtime = dispatch_runtime()
    timeout = cluster.get("timeout")
    retry = cluster.get("retry", 60)  # django-q2's default
    hint = _(
        'Set Q_CLUSTER "timeout" above %(runtime)s seconds and "retry" above "timeout", '
        "e.g. timeout %(timeout)s, retry %(retry)s."
    ) % {"runtime": runtime, "timeout": runtime + 10, "retry": runtime + 40}
    if timeout is not None and timeout <= runtime:
        message = _(
            'Q_CLUSTER "timeout" is %(timeout)s seconds, but a dispatch task runs up to '
            "%(runtime)s seconds (WAGTAIL_OWN_SMTP_DISPATCH_BUDGET plus two SMTP timeouts): "
            "workers would be killed while sending."
        ) % {"timeout": timeout, "runtime": runtime}
    elif retry <= (timeout if timeout is not None else runtime):
        message = _(
            'Q_CLUSTER "retry" (%(retry)s seconds) is not greater than the task run time '
            "(%(limit)s seconds): django-q2 would start a task again while it still runs."
        ) % {"retry": retry, "limit": timeout if timeout is not None else runtime}
    else:
        return []
    return [checks.Warning(message, hint=hint, id="wagtail_own_smtp.W002")]


def _is_own_backend(path):
    """The path names this app's EmailBackend or a subclass of it."""
    try:
        backend = import_string(path) if isinstance(path, str) else path
    except ImportError:
        return False
    return isinstance(backend, type) and issubclass(backend, EmailBackend)


def _uses_mailers():
    return django.VERSION >= (6, 1) and hasattr(settings, "MAILERS")


def _default_backend():
    if _uses_mailers():
        return settings.MAILERS.get("default", {}).get("BACKEND", DJANGO_SMTP_BACKEND)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Django 6.1 warns that EMAIL_BACKEND is deprecated
        return settings.EMAIL_BACKEND


@checks.register(TAG)
def check_email_backend(app_configs, **kwargs):
    if _is_own_backend(_default_backend()):
        return []
    where = 'MAILERS["default"]["BACKEND"]' if _uses_mailers() else "EMAIL_BACKEND"
    return [
        checks.Warning(
            _("%(setting)s does not use wagtail_own_smtp: no mail goes through own servers.")
            % {"setting": where},
            hint=_('Set %(setting)s = "%(backend)s".') % {"setting": where, "backend": OWN_BACKEND},
            id="wagtail_own_smtp.W003",
        )
    ]


@checks.register(TAG)
def check_fallback(app_configs, **kwargs):
    """The platform's mail service must exist and must not be this backend (a loop)."""
    alias = None
    if _uses_mailers():
        alias = settings.MAILERS.get("default", {}).get("OPTIONS", {}).get("fallback")
    if alias is None:
        where, backend = "WAGTAIL_OWN_SMTP_FALLBACK_BACKEND", conf.get("FALLBACK_BACKEND")
    elif alias not in settings.MAILERS:
        return [
            checks.Error(
                _('The fallback mailer "%(alias)s" is not defined in MAILERS.') % {"alias": alias},
                hint=_("Add it, with the BACKEND of the platform's mail service."),
                id="wagtail_own_smtp.E006",
            )
        ]
    else:
        where = f'MAILERS["{alias}"]'
        backend = settings.MAILERS[alias].get("BACKEND", DJANGO_SMTP_BACKEND)
    if not _is_own_backend(backend):
        return []
    return [
        checks.Error(
            _("The fallback %(setting)s is wagtail_own_smtp's own backend: mail would loop.")
            % {"setting": where},
            hint=_("Point it at the platform's mail service, e.g. %(backend)s.")
            % {"backend": DJANGO_SMTP_BACKEND},
            id="wagtail_own_smtp.E004",
        )
    ]


@checks.register(TAG, checks.Tags.security)
def check_ca_file(app_configs, **kwargs):
    ca_file = conf.get("CA_FILE")
    if not ca_file:
        return []
    try:
        transport.tls_context()
    except (OSError, ssl.SSLError) as error:
        return [
            checks.Error(
                _("WAGTAIL_OWN_SMTP_CA_FILE %(path)s is not a readable PEM file (%(error)s).")
                % {"path": ca_file, "error": getattr(error, "strerror", None) or error},
                hint=_("Point it at a readable PEM bundle of CA certificates, or remove it."),
                id="wagtail_own_smtp.E005",
            )
        ]
    return []


@checks.register(TAG)
def check_oauth_providers(app_configs, **kwargs):
    configured = conf.get("OAUTH_PROVIDERS") or {}
    if not isinstance(configured, dict):
        return [_oauth_error(_("WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS must be a dict."))]
    problems = []
    for name, values in configured.items():
        if name not in DEFAULT_PROVIDERS or not isinstance(values, dict):
            problems.append(
                _oauth_error(
                    _("WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS[%(name)r] is not a known provider.")
                    % {"name": name}
                )
            )
            continue
        unknown = sorted(set(values) - set(DEFAULT_PROVIDERS[name]))
        if unknown:
            problems.append(
                _oauth_error(
                    _("WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS[%(name)r] has unknown keys: %(keys)s.")
                    % {"name": name, "keys": ", ".join(map(str, unknown))}
                )
            )
        elif values.get("CLIENT_ID") and not values.get("CLIENT_SECRET"):
            # Both providers refuse the code exchange of a web app without its secret.
            problems.append(
                _oauth_error(
                    _(
                        "WAGTAIL_OWN_SMTP_OAUTH_PROVIDERS[%(name)r] has a CLIENT_ID but no "
                        "CLIENT_SECRET."
                    )
                    % {"name": name}
                )
            )
    return problems


def _oauth_error(message):
    return checks.Error(
        message,
        hint=_(
            'Give "microsoft" and/or "google" with the keys CLIENT_ID, CLIENT_SECRET and, '
            "to override the defaults, AUTHORIZE_URL, TOKEN_URL, TENANT, SCOPE, APP_SCOPE "
            "(docs/oauth.md)."
        ),
        id="wagtail_own_smtp.E007",
    )


@checks.register(TAG)
def check_dns_resolvers(app_configs, **kwargs):
    try:
        parse_resolvers(conf.get("DNS_RESOLVERS"))
    except ImproperlyConfigured as error:
        return [
            checks.Error(
                str(error),
                hint=_('List IP addresses, e.g. ["192.0.2.53", "[2001:db8::53]:5353"].'),
                id="wagtail_own_smtp.E008",
            )
        ]
    return []


@checks.register(TAG)
def check_bulk_reserve(app_configs, **kwargs):
    try:
        conf.bulk_reserve()
    except ImproperlyConfigured as error:
        return [
            checks.Error(
                str(error),
                hint=_("The percent of each cap kept for normal mail, e.g. 10; 0 keeps none."),
                id="wagtail_own_smtp.E009",
            )
        ]
    return []


@checks.register(TAG)
def check_connections(app_configs, **kwargs):
    value = conf.get("CONNECTIONS")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return []
    message = _("WAGTAIL_OWN_SMTP_CONNECTIONS must be a whole number of at least 1, not %(value)r.")
    return [
        checks.Error(
            message % {"value": value},
            hint=_("SMTP conversations one dispatcher keeps going at once, e.g. 16."),
            id="wagtail_own_smtp.E010",
        )
    ]


def sqlite_without_wal(databases):
    """The aliases of file-based SQLite databases whose connections do not turn on WAL.

    Read from the settings, not from a connection: ``manage.py check`` opens none. An in-memory
    database cannot use WAL; one switched to WAL once by hand stays in it (silence W005 then).
    """
    aliases = []
    for alias, config in databases.items():
        name = config.get("NAME")
        in_memory = isinstance(name, str) and (name == ":memory:" or "mode=memory" in name)
        if config.get("ENGINE") != SQLITE_ENGINE or not name or in_memory:
            continue
        if not WAL_PRAGMA.search((config.get("OPTIONS") or {}).get("init_command") or ""):
            aliases.append(alias)
    return aliases


@checks.register(TAG)
def check_sqlite_journal(app_configs, **kwargs):
    return [
        checks.Warning(
            _('The SQLite database "%(alias)s" does not use the write-ahead log (WAL).')
            % {"alias": alias},
            hint=_(
                'Add %(option)s to DATABASES["%(alias)s"]. The dispatcher commits the outcome '
                "of every message; in SQLite's default rollback journal each commit waits for "
                "the disk, and the site's readers and the worker block each other."
            )
            % {"option": WAL_OPTION, "alias": alias},
            id="wagtail_own_smtp.W005",
        )
        for alias in sqlite_without_wal(settings.DATABASES)
    ]
