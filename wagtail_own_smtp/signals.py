"""Signals for host projects.

- ``message_sent(sender=OutboundMessage, message=…)``: the server accepted a queued message.
- ``message_failed(sender=OutboundMessage, message=…, reason=…)``: a message failed for good.
- ``server_verified(sender=SmtpSettings, settings=…)``: an editor confirmed a server by link.
"""

from django.dispatch import Signal

message_sent = Signal()
message_failed = Signal()
server_verified = Signal()
