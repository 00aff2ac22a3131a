"""Operator verbs on the fleet: cancel a command, decommission a device (issue 20).

**Cancel** (``POST /api/v1/commands/{id}/cancel``): a command still in the gateway's own queue
(``queued``, never published) becomes ``cancelled`` and is never sent. Once it was published to
ChirpStack it cannot be taken back through the MQTT integration: ``command/down`` only enqueues
and has no flush field (reference chirpstack.md §3; flushing is the gRPC
``DeviceService.FlushQueue``, §5, which the gateway does not hold credentials for). Such a command
is refused with :class:`NotCancellable` naming its state, and keeps being tracked to its end.

**Decommission** (``DELETE /api/v1/devices/{devEui}``): the device leaves the fleet but its
history stays (uplinks, events, commands, the registry record with ``decommissioned_at``). Its
commands that can be cancelled are; it gets no new commands (rules or API), raises no alarms,
is left out of availability checks and of ``citypack_devices``; its retained
``devices/{devEui}/state`` and ``/availability`` topics (and Home Assistant discovery configs) are
cleared with empty retained messages (MQTT 3.1.1 §3.3.1.3). Uplinks it still sends are stored as
history and nothing else. ``PUT /api/v1/devices/{devEui}`` registers it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.errors import NotCancellable
from gateway.store.base import CommandRecord, Device

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["NotCancellable", "cancel_command", "decommission"]


def cancel_command(gateway: Gateway, command: CommandRecord, *, by: str = "api") -> None:
    """Cancel ``command`` (staged; the caller flushes) or raise :class:`NotCancellable`."""
    if command.state != "queued":
        raise NotCancellable(
            f"command {command.id} is already {command.state}",
            command_id=command.id,
            state=command.state,
        )
    if not gateway.commands.cancel(command, f"cancelled by {by}"):
        raise NotCancellable(
            f"command {command.id} is already in ChirpStack's queue; ChirpStack's MQTT "
            "integration cannot take it back (it will be sent, or expire at its expiresAt)",
            command_id=command.id,
            state=command.state,
        )
    gateway.command_changed(command)


def decommission(gateway: Gateway, device: Device) -> list[CommandRecord]:
    """Take ``device`` out of service (staged; the caller flushes, then
    :meth:`gateway.publish.Publisher.clear` runs after that commit). Returns the commands it
    cancelled. Idempotent: a second call changes nothing."""
    if device.decommissioned_at is not None:
        return []
    cancelled = []
    for command in gateway.commands.for_device(device.dev_eui):
        if gateway.commands.cancel(command, "device decommissioned"):
            cancelled.append(command)
            gateway.command_changed(command)
    now = gateway.clock()
    gateway.emit(device, "device_decommissioned", {"name": device.name, "kind": device.kind})
    device.decommissioned_at = now
    device.updated_at = now
    gateway.update_device_gauge()
    return cancelled
