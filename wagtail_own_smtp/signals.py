"""Signals for host projects.

- ``message_sent(sender=OutboundMessage, message=…)``: the server accepted a queued message.
- ``message_failed(sender=OutboundMessage, message=…, reason=…)``: a message failed for good.
- ``message_bounced(sender=OutboundMessage, message=…, bounce=…)``: a delivery report or a
  complaint about one recipient of a sent message was read from the sender's mailbox.
- ``server_verified(sender=SmtpSettings, settings=…)``: an editor confirmed a server by link.
"""

from django.dispatch import Signal

message_sent = Signal()
message_failed = Signal()
message_bounced = Signal()
server_verified = Signal()
