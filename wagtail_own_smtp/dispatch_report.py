"""What one dispatch run did, and what the mail it left behind waits for (``dispatch``)."""

from dataclasses import dataclass, field


@dataclass
class DispatchReport:
    """What one run did, and what the mail it left behind waits for."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    paused_sites: list = field(default_factory=list)
    backed_off_sites: list = field(default_factory=list)  # throttled by their server
    # The earliest moment due mail that this run left could go, and why it waits:
    # "interval", "cap", "lease" (another dispatcher holds the site) or "budget".
    next_slot: object = None
    waiting_for: str | None = None

    def count(self, outcome, site_id):
        """Count a session's outcome ("sent", "deferred", "failed", "paused", "backed_off")."""
        if outcome == "paused":
            self.paused_sites.append(site_id)
        elif outcome == "backed_off":
            self.backed_off_sites.append(site_id)
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self):
        return {
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "paused_sites": list(self.paused_sites),
        }
