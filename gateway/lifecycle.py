"""Operator verbs on the fleet: cancel a command, decommission a device (issue 20).

**Cancel** (``POST /api/v1/commands/{id}/cancel``): a command still in the gateway's own queue
(``queued``, never published) becomes ``cancelled`` and is never sent. Once it was published to
ChirpStack it cannot be taken back through the MQTT integration: ``command/down`` only enqueues
and has no flush field (reference chirpstack.md §3). With ``[chirpstack] api`` set, the gateway
takes it out of ChirpStack's device queue through the gRPC ``DeviceService`` (§5,
:mod:`gateway.chirpstack_queue`) while ChirpStack has not started sending it. Otherwise it is
refused with :class:`NotCancellable` naming why, and keeps being tracked to its end.

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

from gateway.chirpstack_queue import ChirpStackQueue, QueueError
from gateway.errors import NotCancellable
from gateway.store.base import CommandRecord, Device

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["NotCancellable", "cancel_command", "decommission"]


async def cancel_command(
    gateway: Gateway,
    command: CommandRecord,
    *,
    queue: ChirpStackQueue | None = None,
    by: str = "api",
) -> CommandRecord:
    """Cancel ``command`` and commit it (:meth:`Gateway.change_committed`: with several
    instances its device is claimed first and the command read as the store has it), or raise
    :class:`NotCancellable`. Returns the cancelled command.

    Once published, only ``queue`` (ChirpStack's gRPC API, ``[chirpstack] api``) can take it
    back, and only while ChirpStack has not started sending it. That call is made outside the
    commit (it waits on ChirpStack); only the local change is made again when the store
    refuses its batch."""
    dev_eui, command_id = command.dev_eui, command.id
    cancelled = await _cancel_committed(gateway, command, f"cancelled by {by}")
    if cancelled is not None:
        return cancelled
    if queue is None:
        raise NotCancellable(
            f"command {command_id} is already in ChirpStack's queue; ChirpStack's MQTT "
            "integration cannot take it back (it will be sent, or expire at its expiresAt); "
            "with [chirpstack] api set the gateway removes it through ChirpStack's gRPC API",
            command_id=command_id,
            state="queued",
        )
    try:
        outcome = await queue.remove(dev_eui, command_id)
    except QueueError as exc:
        raise NotCancellable(
            f"command {command_id}: {exc.message}", command_id=command_id, state="queued"
        ) from exc
    if outcome != "removed":
        why = {
            "absent": "ChirpStack no longer holds it (it is being sent or was sent)",
            "pending": "ChirpStack is sending it",
            "shared": "ChirpStack's queue for this device holds other items too (not flushed)",
        }[outcome]
        raise NotCancellable(f"command {command_id}: {why}", command_id=command_id, state="queued")
    reason = f"cancelled by {by}; removed from ChirpStack's queue"
    cancelled = await _cancel_committed(gateway, command, reason, taken_back=True)
    if cancelled is None:  # not reached: taken_back cancels any queued command
        raise NotCancellable(
            f"command {command_id} could not be cancelled", command_id=command_id, state="queued"
        )
    return cancelled


async def _cancel_committed(
    gateway: Gateway, command: CommandRecord, reason: str, *, taken_back: bool = False
) -> CommandRecord | None:
    """:func:`_cancel_here`, committed: the cancelled record, or None (ChirpStack holds it)."""
    try:
        return await gateway.change_committed(
            command.dev_eui,
            lambda: _cancel_here(gateway, command, reason, taken_back=taken_back),
            # taken back from ChirpStack's queue already: recorded even while the store fails
            refuse_failing=not taken_back,
        )
    except _Finished:
        stored = await gateway.store.get_command(command.id)
        state = stored.state if stored is not None else "finished"
        raise NotCancellable(
            f"command {command.id} is already {state}", command_id=command.id, state=state
        ) from None


class _Finished(Exception):
    """The command finished after the API read it (see :func:`_cancel_here`)."""


def _cancel_here(
    gateway: Gateway, asked: CommandRecord, reason: str, *, taken_back: bool = False
) -> CommandRecord | None:
    """Cancel the command as this instance has it now (read again when its device was claimed,
    or after a refused batch): the record, or None when it was handed to ChirpStack and only
    ``taken_back`` cancels it. :class:`NotCancellable` when it is no longer ``queued``."""
    command = gateway.commands.active.get(asked.id) or asked
    if command.state != "queued":
        raise NotCancellable(
            f"command {asked.id} is already {command.state}",
            command_id=asked.id,
            state=command.state,
        )
    if command.id not in gateway.commands.active:
        raise _Finished  # since the API read it (another instance): the store says how
    if not gateway.commands.cancel(command, reason, taken_back=taken_back):
        return None
    gateway.command_changed(command)
    return command


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
