"""Notifications out through apprise: an outbox in the database, sent by any server.

``queue_deliveries`` is what the rest of the code calls (in the transaction that writes the
notification); every notification written through ``feed.add_notification`` is also queued
for the server's ``notification_urls``. The worker lives in ``notify.worker``.
"""

from .channels import check_channels, display_url
from .outbox import list_deliveries, queue_deliveries, queue_global, set_global_channels

__all__ = [
    "check_channels",
    "display_url",
    "list_deliveries",
    "queue_deliveries",
    "queue_global",
    "set_global_channels",
]
