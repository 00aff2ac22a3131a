"""What goes into the fleet core and what comes out (gateway/fleet/__init__.py): the store reads
an event needs (:class:`Reads`), their answers (:class:`Known`) and the :class:`Effects` the
service carries out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.rules import PlannedCommand, TwinChange
from gateway.store.base import DeadLetter, Device, EventRecord, UplinkRecord
from protocol.fuota._command import Command

__all__ = ["NO_READS", "Effects", "Known", "Reads"]


@dataclass(frozen=True, slots=True)
class Reads:
    """The store reads :meth:`FleetCore.apply` needs for an event, made by the service first:
    ``key``: is this dedup key seen (committed or staged)? ``f_cnt``: the payload stored for
    (devEui, devAddr, fCnt), asked only when the key is not seen."""

    key: str = ""
    f_cnt: tuple[str, str, int] | None = None


NO_READS = Reads()


@dataclass(slots=True)  # not frozen: one per event, and a frozen init costs twice as much
class Known:
    """The answers of :class:`Reads`, and the gateway's clock when the event is applied."""

    now: float
    seen: bool = False
    stored: bytes | None = None


@dataclass(slots=True, init=False)
class Effects:
    """What applying one event (or one availability check) should do; the service does it.

    ``__init__`` is written out: a dataclass's default factories are one call each, and one
    Effects is made per event (issue 17: the loop's per-event cost)."""

    now: float
    outcome: str | None  # citypack_uplinks_total{outcome}: processed, duplicate, ...
    rejected: str | None  # citypack_unknown_devices_rejected_total{reason}
    device: Device | None  # the event's device (None: unknown, or not kept)
    new_device: Device | None  # auto-registered: the service adds it to the map
    changes: dict[str, tuple[Device, TwinChange]]
    dirty: set[str]  # twins to store and publish
    availability: set[str]  # availability topics to publish
    gauge: bool  # citypack_devices may have changed
    seen: list[str]  # dedup keys to stage
    uplink: UplinkRecord | None  # the history row to stage
    dead_letters: list[DeadLetter]
    events: list[EventRecord]  # derived events, in order
    commands: list[PlannedCommand]  # after the events
    message: str | None  # the decoded uplink's message (its rules ran)
    joined: str | None  # a join's devAddr: the command manager requeues, then the event
    command_result: dict[str, Any] | None  # fields of a command_result to answer
    fuota: list[Command] | None  # TS003/TS004/TS005 commands for the campaign engine
    firmware: str | None  # a device_info's firmware_version (FUOTA campaigns)

    def __init__(self, now: float) -> None:
        self.now = now
        self.outcome = self.rejected = self.message = self.joined = self.firmware = None
        self.device = self.new_device = None
        self.changes = {}
        self.dirty = set()
        self.availability = set()
        self.gauge = False
        self.seen = []
        self.uplink = None
        self.dead_letters = []
        self.events = []
        self.commands = []
        self.command_result = None
        self.fuota = None

    def change(self, device: Device) -> TwinChange:
        """The twin change of ``device`` in these effects (made on first use)."""
        found = self.changes.get(device.dev_eui)
        if found is None:
            found = self.changes[device.dev_eui] = (device, TwinChange())
        return found[1]

    def event(self, device: Device, type_: str, data: dict[str, Any]) -> None:
        """A derived event of ``device`` (its twin is stored and published with it)."""
        self.events.append(EventRecord(type=type_, dev_eui=device.dev_eui, at=self.now, data=data))
        self.dirty.add(device.dev_eui)

    def dead_letter(self, topic: str, raw: bytes, reason: str, dev_eui: str) -> None:
        self.dead_letters.append(DeadLetter(self.now, topic, raw, reason, dev_eui))
