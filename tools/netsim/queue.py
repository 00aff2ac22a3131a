"""The device queue (ChirpStack ``storage/device_queue.rs``, gRPC ``DeviceService.Enqueue``).

An item is checked when it is enqueued (a known device, fPort 1..224, an optional UUID id) and
again when it is taken for a downlink (``get_next_device_queue_item``): an expired item
(``expiresAt``) is discarded with ``log`` EXPIRED, one larger than the first opportunity's
maximum payload with ``log`` DOWNLINK_PAYLOAD_SIZE.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from tools.netsim.config import CommandError
from tools.netsim.state import DeviceState, QueueItem

__all__ = ["Discarded", "new_item", "next_item"]


@dataclass(frozen=True)
class Discarded:
    """A queue item dropped on the way to a downlink, with ChirpStack's log code and words."""

    item: QueueItem
    code: str
    description: str
    context: dict[str, str]


def _uuid_ok(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def new_item(
    state: DeviceState,
    data: bytes,
    *,
    f_port: int,
    confirmed: bool,
    item_id: str | None,
    expires_at: datetime | None,
) -> QueueItem:
    """A validated queue item for ``state``'s device; raises :class:`CommandError`."""
    if not 1 <= f_port <= 255:
        raise CommandError(f"fPort must be 1..255, got {f_port}")
    if f_port >= 225:
        # ChirpStack queues any u8 fPort; protocol.lorawan refuses to build 225..255 (RFU,
        # L2 §4.3.2), so they are refused here, at the queue, with the reason in the log.
        raise CommandError(f"fPort {f_port} is RFU (LoRaWAN L2 §4.3.2: 225..255)")
    if item_id is not None and not _uuid_ok(item_id):
        raise CommandError(f"id is not a UUID: {item_id!r}")
    return QueueItem(
        id=str(uuid.UUID(item_id)) if item_id else str(uuid.uuid4()),
        dev_eui=state.device.dev_eui,
        f_port=f_port,
        confirmed=confirmed,
        data=bytes(data),
        expires_at=expires_at,
    )


def next_item(
    state: DeviceState, max_payload: int, now: datetime
) -> tuple[QueueItem | None, list[Discarded]]:
    """The next non-pending item that can go out; expired and oversized ones are removed
    from the queue on the way and returned for the ``log`` events."""
    discarded: list[Discarded] = []
    while True:
        item = next((i for i in state.queue if not i.is_pending), None)
        if item is None:
            return None, discarded
        if item.expires_at is not None and item.expires_at <= now:
            state.queue.remove(item)
            discarded.append(
                Discarded(
                    item,
                    "EXPIRED",
                    "Device queue-item discarded because it has expired",
                    {"queue_item_id": item.id},
                )
            )
            continue
        if len(item.data) > max_payload:
            state.queue.remove(item)
            discarded.append(
                Discarded(
                    item,
                    "DOWNLINK_PAYLOAD_SIZE",
                    "Device queue-item discarded because it exceeds the max. payload size",
                    {
                        "max_payload_size": str(max_payload),
                        "item_size": str(len(item.data)),
                        "queue_item_id": item.id,
                    },
                )
            )
            continue
        return item, discarded
