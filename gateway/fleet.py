"""The synchronous fleet core: ``apply(event, known) -> Effects``, with no I/O (issue 16 item 1).

ARCHITECTURE.md "Layout": the core holds the registry (the in-memory device map the service
loads and keeps), the config, and the rule table; :mod:`gateway.service` keeps the I/O. For each
ChirpStack event the service:

1. asks :meth:`FleetCore.reads` which store reads the event needs (:class:`Reads`: whether its
   dedup key is seen, the payload stored for its (devEui, devAddr, fCnt)), and makes them: only
   for an uplink that is not *fresh* (an fCnt above the committed one in the same session), an
   unknown device, a join or a status with a ``deduplicationId``;
2. calls :meth:`FleetCore.apply` with the answers (:class:`Known`, with the receive time), which
   never awaits and never writes anything: not the devices, not the store, not a metric;
3. carries out the :class:`Effects` it returns: rows to stage (seen keys, the uplink's history
   row, dead letters), derived events, planned commands, twin changes (applied to the cached
   :class:`~gateway.store.Device`, :meth:`gateway.rules.TwinChange.apply`), the metrics outcome.

Because apply never suspends, a store whose reads suspend (PostgreSQL) does not split the
processing of a message, and exactly-once is testable without asyncio
(tests/gateway/test_fleet_core.py).

Rules are pure functions chosen from :data:`RULES`, keyed by message name; each returns an
:class:`~gateway.rules.Outcome` whose events and commands count only while the device is in
service (a decommissioned device keeps its history only, gateway/lifecycle.py) and whose twin
change is kept either way.

Decisions:

- **Unknown devices are kept**, not dead-lettered: an uplink from a devEui that is not in the
  registry auto-registers it as kind ``unknown`` (``registered: false``), stores its history and
  raises a ``device_discovered`` event; a ``device_info`` uplink fills in its kind. Provisioning
  lags the field in practice, and nothing from the air is dropped (invariant 2). Up to
  ``[fleet] max_auto_registered`` of them: past it (or with ``auto_register`` off) an unknown
  device's events are dead letters (``unknown_device_cap`` / ``unknown_device``), counted in
  ``citypack_unknown_devices_rejected_total`` (20,000 made-up DevEUIs must not fill memory and
  the broker's retained topics).
- **fPort 0** (MAC-only) uplinks count as ``processed`` and refresh availability and signal
  quality, but store no history and run no rules.
- Undecodable payloads (bad CBOR, unknown fPort, out-of-range values, larger than
  :data:`protocol.codec.MAX_PAYLOAD`) are dead letters: the raw MQTT
  topic and payload with the reason, counted as ``undecodable``.

What stays in the service, and why:

- the command manager (gateway/commands.py): it owns the command queue, its ids and its store
  rows, and ChirpStack's ``txack``/``ack``/``log`` events are its own. The core plans commands
  (:attr:`Effects.commands`); the service submits them (one config push at a time) and
  answers a join (:attr:`Effects.joined`: requeue, then ``device_joined``) and a
  ``command_result`` (:attr:`Effects.command_result`: the multicast manager or the command
  manager says which command it answers; the config version it carries then counts through
  :meth:`FleetCore.result_answered`, unless the command was refused);
- the FUOTA campaign engine and the multicast manager (gateway/fuota_campaign.py,
  gateway/multicast.py): waiters, downlinks and store reads. The core decodes a FUOTA answer
  (:func:`gateway.fuota_campaign.decode_uplink`, pure) and hands the commands over
  (:attr:`Effects.fuota`), and a ``device_info``'s firmware version (:attr:`Effects.firmware`);
- the device map and the auto-registered count are written by the service only (a new device
  from :attr:`Effects.new_device`, :meth:`FleetCore.registered`).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway import chirpstack as cs
from gateway.commands import CONFIG_MESSAGES
from gateway.config import Config
from gateway.fuota_campaign import decode_uplink as decode_fuota_uplink
from gateway.rules import Outcome, PlannedCommand, TwinChange
from gateway.rules import availability as availability_rules
from gateway.rules import bins as bin_rules
from gateway.rules import lamps as lamp_rules
from gateway.store.base import DeadLetter, Device, EventRecord, UplinkRecord
from protocol import codec
from protocol.errors import ProtocolError
from protocol.fuota._command import Command

__all__ = [
    "RULES",
    "Effects",
    "FleetCore",
    "Known",
    "Reads",
    "RuleInput",
    "uplink_key",
]

# uplink messages whose fields are merged into the twin's reported state
STATE_MESSAGES = frozenset(
    {"bin_status", "lamp_status", "lamp_counters", "lamp_presence", "device_info"}
)
# messages whose config_version is the node's reported config version
VERSION_MESSAGES = frozenset({"bin_status", "lamp_status", "device_info", "command_result"})
FUOTA_PORTS = (200, 201, 202)  # TS004, TS005, TS003 (ARCHITECTURE.md "Firmware application ports")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def uplink_key(event: cs.UplinkEvent) -> str:
    """The dedup key of an uplink: ChirpStack's ``deduplicationId``; without one, the payload
    tells a redelivery from a counter reset (:meth:`FleetCore.apply`)."""
    if event.deduplication_id:
        return f"up:{event.deduplication_id}"
    return f"up:{event.dev_eui}:{event.dev_addr}:{event.f_cnt}:{_digest(event.data)}"


@dataclass(frozen=True, slots=True)
class Reads:
    """The store reads :meth:`FleetCore.apply` needs for an event, made by the service first:
    ``key``: is this dedup key seen (committed or staged)? ``f_cnt``: the payload stored for
    (devEui, devAddr, fCnt), asked only when the key is not seen."""

    key: str = ""
    f_cnt: tuple[str, str, int] | None = None


_NO_READS = Reads()


@dataclass(frozen=True, slots=True)
class Known:
    """The answers of :class:`Reads`, and the gateway's clock when the event is applied."""

    now: float
    seen: bool = False
    stored: bytes | None = None


@dataclass(frozen=True, slots=True)
class RuleInput:
    """What a rule of :data:`RULES` gets besides the device and the fields."""

    config: Config
    at: float  # the event's ChirpStack time (the receive time when it has none, issue 15.2)
    received: float  # the gateway's receive time: the device's last_seen
    lookup: Callable[[str], Device | None]  # other devices, read only (a lamp's neighbours)


Rule = Callable[[Device, dict[str, Any], RuleInput], Outcome]


def _bin_status(device: Device, fields: dict[str, Any], rin: RuleInput) -> Outcome:
    return bin_rules.apply_bin_status(device, fields, rin.config.bins, rin.at)


def _bin_alarm(device: Device, fields: dict[str, Any], rin: RuleInput) -> Outcome:
    return bin_rules.apply_bin_alarm(device, fields, rin.config.bins, rin.at)


def _lamp_status(device: Device, fields: dict[str, Any], rin: RuleInput) -> Outcome:
    return lamp_rules.apply_lamp_status(device, fields, rin.config.lamps, rin.at)


def _lamp_presence(device: Device, fields: dict[str, Any], rin: RuleInput) -> Outcome:
    return lamp_rules.apply_lamp_presence(
        device, fields, rin.config.lamps, rin.lookup, seen_at=rin.received
    )


RULES: Mapping[str, Rule] = {
    "bin_status": _bin_status,
    "bin_alarm": _bin_alarm,
    "lamp_status": _lamp_status,
    "lamp_presence": _lamp_presence,
}


@dataclass(slots=True)
class Effects:
    """What applying one event (or one availability check) should do; the service does it."""

    now: float
    outcome: str | None = None  # citypack_uplinks_total{outcome}: processed, duplicate, ...
    rejected: str | None = None  # citypack_unknown_devices_rejected_total{reason}
    device: Device | None = None  # the event's device (None: unknown, or not kept)
    new_device: Device | None = None  # auto-registered: the service adds it to the map
    changes: dict[str, tuple[Device, TwinChange]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)  # twins to store and publish
    availability: set[str] = field(default_factory=set)  # availability topics to publish
    gauge: bool = False  # citypack_devices may have changed
    seen: list[str] = field(default_factory=list)  # dedup keys to stage
    uplink: UplinkRecord | None = None  # the history row to stage
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)  # derived events, in order
    commands: list[PlannedCommand] = field(default_factory=list)  # after the events
    message: str | None = None  # the decoded uplink's message (its rules ran)
    joined: str | None = None  # a join's devAddr: the command manager requeues, then the event
    command_result: dict[str, Any] | None = None  # fields of a command_result to answer
    fuota: list[Command] | None = None  # TS003/TS004/TS005 commands for the campaign engine
    firmware: str | None = None  # a device_info's firmware_version (FUOTA campaigns)

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


class FleetCore:
    """The registry, the twins' rules and exactly-once, without I/O (module docstring).

    ``devices`` is the service's device map, read here and written there only;
    ``fuota``: FUOTA campaigns are on (uplinks on fPorts 200-202 go to them)."""

    def __init__(self, config: Config, devices: dict[str, Device], *, fuota: bool = False) -> None:
        self.config = config
        self.devices = devices
        self.fuota = fuota
        self.auto_registered = 0  # devices heard but never registered ([fleet] caps them)
        self.recount()

    # --- the registry's count (written by the service) ------------------------------------------

    def recount(self) -> None:
        """Count the devices only heard on the air (after the map was loaded)."""
        self.auto_registered = sum(1 for d in self.devices.values() if not d.registered)

    def registered(self, *, was_auto: bool) -> None:
        """A device was added to the map (auto-registered) or an auto-registered one was
        registered by an operator (room for another unknown one)."""
        self.auto_registered += 1 if was_auto else -1

    def _admits_unknown(self) -> bool:
        fleet = self.config.fleet
        return fleet.auto_register and self.auto_registered < fleet.max_auto_registered

    # --- reads ----------------------------------------------------------------------------------

    def reads(self, event: cs.Event) -> Reads:
        """The store reads :meth:`apply` needs for ``event`` (nothing for a fresh uplink)."""
        if isinstance(event, cs.UplinkEvent):
            device = self.devices.get(event.dev_eui)
            if device is None:
                if not self._admits_unknown():
                    return Reads(uplink_key(event))
            elif self._fresh(device, event):
                return _NO_READS
            return Reads(uplink_key(event), (event.dev_eui, event.dev_addr, event.f_cnt))
        if isinstance(event, cs.JoinEvent):
            key = f"join:{event.deduplication_id}"
            if event.dev_eui not in self.devices and not self._admits_unknown():
                return Reads(key)  # refused: its redelivery is told by the key
            return Reads(key) if event.deduplication_id else _NO_READS
        if isinstance(event, cs.StatusEvent) and event.deduplication_id:
            return Reads(f"status:{event.deduplication_id}")
        return _NO_READS

    @staticmethod
    def _fresh(device: Device, event: cs.UplinkEvent) -> bool:
        # The device's session (devAddr) and fCnt are committed in the same transaction as the
        # dedup keys, so a higher fCnt in the same session was never seen: no read needed.
        return (
            device.last_dev_addr == event.dev_addr
            and device.last_f_cnt is not None
            and event.f_cnt > device.last_f_cnt
        )

    # --- apply ----------------------------------------------------------------------------------

    def apply(self, event: cs.Event, known: Known, *, topic: str, raw: bytes) -> Effects:
        """The effects of ``event`` (received on ``topic`` as ``raw``, kept in dead letters),
        given the answers of :meth:`reads`. ``txack``, ``ack``, ``log`` and ``integration``
        events have none here (the command manager's, in the service)."""
        fx = Effects(known.now)
        if isinstance(event, cs.UplinkEvent):
            self._uplink(fx, event, known, topic, raw)
        elif isinstance(event, cs.JoinEvent):
            self._join(fx, event, known, topic, raw)
        elif isinstance(event, cs.StatusEvent):
            self._status(fx, event, known)
        elif isinstance(event, cs.LocationEvent):
            device = self.devices.get(event.dev_eui)
            if device is not None and event.latitude is not None and device.latitude is None:
                fx.device = device
                fx.change(device).attrs.update(latitude=event.latitude, longitude=event.longitude)
                fx.dirty.add(device.dev_eui)
        return fx

    def _device_for(self, fx: Effects, info: cs.DeviceInfo, application_id: str) -> Device | None:
        """The device of an event; an unknown one is auto-registered while ``[fleet]`` allows
        (else None: the event is kept as a dead letter, :meth:`_refuse_unknown`)."""
        device = self.devices.get(info.dev_eui)
        if device is None:
            if not self._admits_unknown():
                return None
            device = Device(
                dev_eui=info.dev_eui,
                kind="unknown",
                name=info.device_name,
                registered=False,
                created_at=fx.now,
                updated_at=fx.now,
            )
            fx.new_device = device
            fx.event(device, "device_discovered", {"device_name": info.device_name})
            fx.gauge = True
        fx.device = device
        # the same few strings for every device: one object each, not one per device (a new
        # one comes with every event; issue 17: 100,000 devices)
        app = info.application_id or application_id
        if device.application_id != app:
            fx.change(device).attrs["application_id"] = sys.intern(app)
        if device.device_class != info.device_class_enabled:
            fx.change(device).attrs["device_class"] = sys.intern(info.device_class_enabled)
        return device

    def _refuse_unknown(
        self, fx: Effects, known: Known, topic: str, raw: bytes, dev_eui: str, key: str
    ) -> None:
        """An event of an unknown device that ``[fleet]`` does not let in: one dead letter
        (a redelivery is a duplicate), counted in ``citypack_unknown_devices_rejected_total``
        and not logged one by one (20,000 made-up DevEUIs)."""
        if known.seen:
            fx.outcome = "duplicate"
            return
        fx.seen.append(key)
        fleet = self.config.fleet
        if fleet.auto_register:
            reason = "unknown_device_cap"
            detail = f"{self.auto_registered} devices auto-registered (fleet.max_auto_registered)"
        else:
            reason, detail = "unknown_device", "fleet.auto_register is off"
        fx.rejected = reason
        fx.dead_letter(topic, raw, f"{reason}: {detail}", dev_eui)

    def _uplink(
        self, fx: Effects, event: cs.UplinkEvent, known: Known, topic: str, raw: bytes
    ) -> None:
        key = uplink_key(event)
        found = self._device_for(fx, event.device_info, event.topic_application_id)
        if found is None:
            self._refuse_unknown(fx, known, topic, raw, event.dev_eui, key)
            return
        device = found
        fresh = self._fresh(device, event)
        if not fresh:
            if known.seen:
                fx.outcome = "duplicate"  # the same deduplicationId: a redelivery
                return
            # a fresh uplink stored no key (below): its history row, (devEui, devAddr, fCnt)
            # and payload, is what tells its redelivery, in any later session too
            if known.stored is not None:
                if known.stored == event.data:
                    fx.outcome = "duplicate"  # the same frame again (redelivered or another id)
                    return
                if device.last_dev_addr == event.dev_addr:
                    self._counter_reset(fx, device, event, topic, raw, key)
                    return
        now = fx.now
        change = fx.change(device)
        seen = availability_rules.mark_seen(device, now)
        self._outcome(fx, device, seen)
        if seen.twin.attrs["availability"] != device.availability:
            fx.availability.add(device.dev_eui)
            fx.gauge = True
        if device.last_dev_addr != event.dev_addr or (device.last_f_cnt or -1) < event.f_cnt:
            change.attrs["last_f_cnt"] = event.f_cnt
            change.attrs["last_dev_addr"] = event.dev_addr
        rssi, snr = event.best_rssi, event.best_snr
        change.attrs["last_dr"] = event.dr
        change.attrs["last_rssi"] = rssi
        change.attrs["last_snr"] = snr
        fx.dirty.add(device.dev_eui)
        if event.f_port == 0:
            fx.seen.append(key)  # no history row holds a MAC-only uplink
            fx.outcome = "processed"
            return
        if self.fuota and event.f_port in FUOTA_PORTS:
            commands = decode_fuota_uplink(event.f_port, event.data)
            if commands is not None:
                fx.fuota = commands  # TS003/TS004/TS005 answers (gateway/fuota_campaign.py)
                fx.outcome = "processed"
                return
        try:
            if len(event.data) > codec.MAX_PAYLOAD:
                raise ProtocolError(f"payload of {len(event.data)} bytes > {codec.MAX_PAYLOAD}")
            decoded = codec.decode(event.f_port, event.data, "up")
        except ProtocolError as exc:
            fx.seen.append(key)  # a dead letter, not history: the key tells redelivery
            fx.outcome = "undecodable"
            fx.dead_letter(topic, raw, f"undecodable fPort {event.f_port}: {exc}", device.dev_eui)
            return
        if not fresh:
            # A fresh uplink needs no dedup key: its fCnt is above the committed one in the
            # same session, and the history row staged next (same transaction) holds (devEui,
            # devAddr, fCnt, payload), which the check above finds on a redelivery. One row
            # fewer per uplink (issue 17).
            fx.seen.append(key)
        fx.uplink = UplinkRecord(
            dev_eui=device.dev_eui,
            received_at=now,
            deduplication_id=event.deduplication_id,
            time=event.time,
            dev_addr=event.dev_addr,
            f_cnt=event.f_cnt,
            f_port=event.f_port,
            dr=event.dr,
            frequency=event.frequency,
            rssi=rssi,
            snr=snr,
            gateways=len(event.rx_info),
            message=decoded.message,
            fields=decoded.fields,
            data=event.data,
        )
        # Rules reason in ChirpStack's time of reception, not ours: a backlog delivered after a
        # restart arrives within a second but was measured hours apart (issue 15.2)
        at = event.time_s
        self._message(fx, device, decoded.message, decoded.fields, now if at is None else at)
        fx.message = decoded.message
        fx.outcome = "processed"

    def _counter_reset(
        self,
        fx: Effects,
        device: Device,
        event: cs.UplinkEvent,
        topic: str,
        raw: bytes,
        key: str,
    ) -> None:
        """An fCnt already stored for this devAddr, with another payload: the node's frame
        counter went back (an ABP node that lost its counters; LoRaWAN L2 1.0.4 §4.3.1.5 says it
        must not, ChirpStack lets it through with "skip fCnt check"). Not a duplicate: the new
        data is kept as a dead letter with reason ``fcnt_reset`` and an ``fcnt_reset`` event
        says so (issue 14)."""
        fx.seen.append(key)
        fx.dead_letter(
            topic,
            raw,
            f"fcnt_reset: fCnt {event.f_cnt} of devAddr {event.dev_addr} was stored with another"
            f" payload (last fCnt {device.last_f_cnt})",
            device.dev_eui,
        )
        fx.event(
            device,
            "fcnt_reset",
            {
                "dev_addr": event.dev_addr,
                "f_cnt": event.f_cnt,
                "last_f_cnt": device.last_f_cnt,
                "deduplication_id": event.deduplication_id,
            },
        )

    def _message(
        self, fx: Effects, device: Device, message: str, fields: dict[str, Any], at: float
    ) -> None:
        """A decoded uplink: reported state, kind, the message's rule, the config version."""
        change = fx.change(device)
        if message in STATE_MESSAGES:
            change.reported.update(fields)
        change.reported["last_message"] = message
        kind = device.kind
        if message == "device_info":
            if self.fuota and isinstance(fields.get("firmware_version"), str):
                fx.firmware = fields["firmware_version"]
            reported_kind = fields.get("kind")
            if kind == "unknown" and reported_kind in ("bin", "lamp"):
                kind = change.attrs["kind"] = str(reported_kind)
                fx.gauge = True
        rule = RULES.get(message)
        if rule is not None:
            rin = RuleInput(self.config, at, fx.now, self.devices.get)
            self._outcome(fx, device, rule(device, fields, rin))
        if message == "command_result":
            # which command it answers is the command manager's (or multicast's) to say; its
            # version counts after that (result_answered)
            fx.command_result = fields
            return
        version = fields.get("config_version")
        if isinstance(version, int) and message in VERSION_MESSAGES:
            self._version(fx, device, kind, version)

    def result_answered(
        self, device: Device, fields: Mapping[str, Any], command_state: str | None, now: float
    ) -> Effects:
        """A ``command_result``'s config version, once the service knows the command it
        answered (``command_state``; None: none of the command manager's): a refused config
        does not count as reported."""
        fx = Effects(now)
        version = fields.get("config_version")
        if command_state not in (None, "applied") or not isinstance(version, int):
            return fx
        fx.device = device
        self._version(fx, device, device.kind, version)
        return fx

    def _version(self, fx: Effects, device: Device, kind: str, version: int) -> None:
        if device.reported_version != version:
            fx.change(device).attrs["reported_version"] = version
            if device.desired_version == version:
                fx.event(device, "config_applied", {"config_version": version})
        self._reconcile(fx, device, kind, version)

    def _reconcile(self, fx: Effects, device: Device, kind: str, reported_version: int) -> None:
        """Push the desired config again while the reported version differs (invariant 4)."""
        if kind == "lamp":
            self._outcome(
                fx,
                device,
                lamp_rules.reconcile_profile(device, self.config.lamps, reported_version),
            )
            return
        desired_version = device.desired_version
        if desired_version is None or desired_version == reported_version:
            return
        for message in CONFIG_MESSAGES:
            fields = device.desired.get(message)
            if isinstance(fields, dict) and fields.get("config_version") == desired_version:
                fx.commands.append(
                    PlannedCommand(device.dev_eui, message, dict(fields), confirmed=True)
                )

    def _outcome(self, fx: Effects, device: Device, outcome: Outcome) -> None:
        """A rule's outcome: its twin change always, its events and commands only while the
        device is in service (history only once decommissioned, gateway/lifecycle.py)."""
        if outcome.twin:
            fx.change(device).update(outcome.twin)
        if device.decommissioned_at is not None:
            return
        for type_, data in outcome.events:
            fx.event(device, type_, data)
        fx.commands.extend(outcome.commands)

    def _join(self, fx: Effects, event: cs.JoinEvent, known: Known, topic: str, raw: bytes) -> None:
        key = f"join:{event.deduplication_id}"
        device = self._device_for(fx, event.device_info, event.topic_application_id)
        if device is None:
            self._refuse_unknown(fx, known, topic, raw, event.dev_eui, key)
            return
        if event.deduplication_id and known.seen:
            return
        if event.deduplication_id:
            fx.seen.append(key)
        fx.change(device).attrs.update(last_dev_addr=event.dev_addr, last_f_cnt=None)
        fx.joined = event.dev_addr

    def _status(self, fx: Effects, event: cs.StatusEvent, known: Known) -> None:
        if event.deduplication_id:
            if known.seen:
                return
            fx.seen.append(f"status:{event.deduplication_id}")
        device = self.devices.get(event.dev_eui)
        if device is None:
            return
        fx.device = device
        fx.change(device).reported.update(
            lorawan_margin_db=event.margin,
            lorawan_battery_percent=(
                None
                if event.battery_level_unavailable or event.external_power_source
                else event.battery_level
            ),
            external_power=event.external_power_source,
        )
        fx.dirty.add(device.dev_eui)

    # --- maintenance ----------------------------------------------------------------------------

    def check_availability(self, devices: Iterable[Device], now: float) -> Effects:
        """Online → offline for the devices silent past their timeout
        (gateway/rules/availability.py)."""
        fx = Effects(now)
        for device in devices:
            if device.decommissioned_at is not None:
                continue
            outcome = availability_rules.check(device, self.config.availability, now)
            if outcome.events:
                fx.availability.add(device.dev_eui)
                self._outcome(fx, device, outcome)
                fx.gauge = True
        return fx
