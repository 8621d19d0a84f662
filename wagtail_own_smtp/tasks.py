"""django-q2 entry points. Each takes no arguments (never a secret) and is safe to run twice.

django-q2 redelivers a task whose worker died and may run two at once; dispatch takes a lease per
site, so a second run finds the busy sites leased and returns. A run is queued when work commits
by ``mailqueue.dispatch_after_commit``, and every minute by the schedule made here.

Budget rule: ``WAGTAIL_OWN_SMTP_DISPATCH_BUDGET + 2 * WAGTAIL_OWN_SMTP_TIMEOUT`` must be below
``Q_CLUSTER["timeout"]``, and ``Q_CLUSTER["retry"]`` above ``timeout``. A run starts no message
after its budget, so it ends at the latest one connection plus one message (each bounded by
``TIMEOUT`` per step) after the budget.
"""

from . import conf, dispatch
from .mailqueue import DISPATCH_TASK
from .models import DispatchRequest

SCHEDULE_NAME = "wagtail_own_smtp.dispatch"
BOUNCES_SCHEDULE_NAME = "wagtail_own_smtp.bounces"
BOUNCES_TASK = "wagtail_own_smtp.tasks.bounces_task"
DOMAINS_SCHEDULE_NAME = "wagtail_own_smtp.domain_checks"
DOMAINS_TASK = "wagtail_own_smtp.domain_status.check_all_task"


def dispatch_task():
    """Send due mail of all sites within the dispatch budget (scheduled every minute)."""
    DispatchRequest.clear()  # before looking for due mail: what is queued from now on asks again
    return dispatch.dispatch(budget_seconds=conf.get("DISPATCH_BUDGET")).as_dict()


def bounces_task():
    """Read every enabled sender mailbox once (scheduled every BOUNCE_POLL_SECONDS)."""
    from . import bounces

    return [(r.site_id, r.read, len(r.bounces), r.failure) for r in bounces.read_all()]


def ensure_schedule(using="default", **kwargs):
    """Create or update the every-minute dispatch Schedule, the bounce reading's and the daily
    sender-domain check's; connected to ``post_migrate``."""
    from datetime import timedelta

    from django.apps import apps
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.utils import timezone

    if not apps.is_installed("django_q"):
        return None
    from django_q.models import Schedule

    using = using or DEFAULT_DB_ALIAS
    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return None  # django_q not migrated (yet) on this database
    minutes = max(1, round(conf.get("BOUNCE_POLL_SECONDS") / 60))
    Schedule.objects.using(using).update_or_create(
        name=BOUNCES_SCHEDULE_NAME,
        defaults={
            "func": BOUNCES_TASK,
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
        },
    )
    # First run a day after it is created: a newly verified server is checked at once anyway.
    daily = {"func": DOMAINS_TASK, "schedule_type": Schedule.DAILY, "repeats": -1}
    Schedule.objects.using(using).update_or_create(
        name=DOMAINS_SCHEDULE_NAME,
        defaults=daily,
        create_defaults={**daily, "next_run": timezone.now() + timedelta(days=1)},
    )
    schedule, _created = Schedule.objects.using(using).update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": DISPATCH_TASK,
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    return schedule
