"""The queue's questions as QuerySet methods (as django-mailer's manager has them), so the
dispatcher and the forecast read as policy, not as filters.

Imports only ``choices``: ``models.py`` may attach it as ``OutboundMessage.objects``.
"""

from django.db import models
from django.db.models import Count, Max, Min, Q

from .choices import WAITING, Lane, MessageStatus


class OutboundMessageQuerySet(models.QuerySet):
    def of_sites(self, site_ids=None):
        """The messages of these sites (None: of every site)."""
        return self if site_ids is None else self.filter(site_id__in=list(site_ids))

    def waiting(self):
        """Messages that still wait to go out (queued, deferred, or claimed and not sent)."""
        return self.filter(status__in=WAITING)

    def due_parts(self, now):
        """The messages a dispatcher may claim, in three parts that each follow one index
        (site, status, next_attempt_at) in order: queued and due, deferred and due, and claimed
        ones whose worker's lease ran out.

        A single query with the OR of these makes the database read every row of a site, sent
        ones included, and sort the due ones: a cost that grows with the table, for every claim.
        """
        return tuple(self.filter(part) for part in _due_conditions(now))

    def due(self, now):
        """The messages a dispatcher may claim, in one condition (for rows already chosen)."""
        queued, deferred, abandoned = _due_conditions(now)
        return self.filter(queued | deferred | abandoned)

    def claimed(self, owner):
        """Messages this dispatcher claimed and has not sent yet."""
        return self.filter(claimed_by=owner, status=MessageStatus.SENDING)

    def counts_by_site(self):
        """``{site_id: {status: count}}`` in one aggregate query (every status, 0 or more)."""
        counts, statuses = {}, MessageStatus.values
        for row in self.values("site_id", "status").annotate(n=Count("pk")).order_by():
            site_counts = counts.get(row["site_id"])
            if site_counts is None:
                site_counts = counts[row["site_id"]] = dict.fromkeys(statuses, 0)
            site_counts[row["status"]] = row["n"]
        return counts

    def waiting_by_site(self):
        """``{site_id: [(recipient_count, next_attempt_at, lane), ...]}`` of waiting mail in
        sending order within each lane."""
        waiting = {}
        rows = self.waiting().order_by("site_id", "next_attempt_at", "pk")
        for site_id, count, due, lane in rows.values_list(
            "site_id", "recipient_count", "next_attempt_at", "lane"
        ):
            waiting.setdefault(site_id, []).append((count, due, lane))
        return waiting

    def waiting_times_by_site(self):
        """``{site_id: (first, latest, bulk)}``: the earliest and latest ``next_attempt_at`` of
        waiting mail and how many of it are bulk mail, in one aggregate query."""
        return {
            row["site_id"]: (row["first"], row["latest"], row["bulk"])
            for row in self.waiting()
            .values("site_id")
            .annotate(
                first=Min("next_attempt_at"),
                latest=Max("next_attempt_at"),
                bulk=Count("pk", filter=Q(lane=Lane.BULK)),
            )
            .order_by()
        }


def _due_conditions(now):
    abandoned = Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    return (
        Q(status=MessageStatus.QUEUED, next_attempt_at__lte=now),
        Q(status=MessageStatus.DEFERRED, next_attempt_at__lte=now),
        Q(status=MessageStatus.SENDING) & abandoned,
    )
