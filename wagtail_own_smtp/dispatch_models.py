"""Whether a dispatch run is queued and not started yet: mail queued meanwhile needs no other."""

from datetime import timedelta

from django.db import models
from django.utils import timezone

# A run not started this long after it was queued is taken for lost (a Redis broker restarted,
# say): the next mail queues another. So a lost run holds mail back 10 s at most, and while every
# worker is busy, mail queues one more run per 10 s. Machines' clocks differ by far less.
LOST_AFTER = timedelta(seconds=10)


class DispatchRequest(models.Model):
    """One row: when the dispatch run now waiting in django-q2's queue was queued (None: none).

    Every commit of queued mail wants a run (``mailqueue.dispatch_soon``), but a run queued and
    not started yet finds that mail too: it looks for due mail once it starts. So only the first
    commit queues one; the run clears the request as it starts (``tasks.dispatch_task``), and the
    next mail queues the next run. A wave sent site by site over 50 sites queued 50 runs before,
    48 of which found nothing left to send.
    """

    requested_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"dispatch run requested at {self.requested_at}"

    @classmethod
    def take(cls):
        """True when the caller is to queue a run: none waits to start, or the one waiting was
        queued so long ago that it is taken for lost."""
        now = timezone.now()
        free_or_lost = cls.objects.filter(pk=1).exclude(requested_at__gte=now - LOST_AFTER)
        if free_or_lost.update(requested_at=now):
            return True
        _request, created = cls.objects.get_or_create(pk=1, defaults={"requested_at": now})
        return created

    @classmethod
    def clear(cls):
        """A run starts (or could not be queued): the next mail queues a run again."""
        cls.objects.filter(pk=1).update(requested_at=None)
