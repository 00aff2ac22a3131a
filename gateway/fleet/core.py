"""The fleet core (gateway/fleet/__init__.py): dedup, decoding, the registry's twins and the
rules, from an event and the answers of its store reads to its effects; no I/O."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from gateway import chirpstack as cs
from gateway.commands import CONFIG_MESSAGES
from gateway.config import Config
from gateway.fleet.effects import NO_READS, Effects, Known, Reads
from gateway.fleet.table import ORDERED_RULES, RULES, STATE_MESSAGES, VERSION_MESSAGES, RuleInput
from gateway.fuota_campaign import decode_uplink as decode_fuota_uplink
from gateway.rules import Outcome, PlannedCommand, fill_history
from gateway.rules import availability as availability_rules
from gateway.rules import lamps as lamp_rules
from gateway.store.base import Device, UplinkRecord
from protocol import codec
from protocol.errors import ProtocolError

__all__ = ["FleetCore", "never_heard", "uplink_key"]

# rule state of a device that keeps no fill history ("_": not in the API, gateway/store/base.py):
# the ChirpStack receive time, whole seconds, of its newest applied frame (_before_newest_reading)
RECEIVED = "_received"
FUOTA_PORTS = (200, 201, 202)  # TS004, TS005, TS003 (ARCHITECTURE.md "Firmware application ports")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def never_heard(device: Device) -> bool:
    """No session at all (no devAddr, no fCnt): every uplink and join of it ever committed would
    have set one (a join sets its devAddr), so nothing of it is stored yet and its first uplink
    needs no dedup read (issue 17: at 100,000 devices after a mass registration every uplink was
    such a first one, and two reads each). Several instances: the device is claimed and read
    back from the store first (service.py ``_claim_burst``), so this holds as of the other
    instances' commits too."""
    return device.last_f_cnt is None and not device.last_dev_addr


def uplink_key(event: cs.UplinkEvent) -> str:
    """The dedup key of an uplink: ChirpStack's ``deduplicationId``; without one, the payload
    tells a redelivery from a counter reset (:meth:`FleetCore.apply`)."""
    if event.deduplication_id:
        return f"up:{event.deduplication_id}"
    return f"up:{event.dev_eui}:{event.dev_addr}:{event.f_cnt}:{_digest(event.data)}"


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
                return NO_READS
            return Reads(uplink_key(event), (event.dev_eui, event.dev_addr, event.f_cnt))
        if isinstance(event, cs.JoinEvent):
            key = f"join:{event.deduplication_id}"
            if event.dev_eui not in self.devices and not self._admits_unknown():
                return Reads(key)  # refused: its redelivery is told by the key
            return Reads(key) if event.deduplication_id else NO_READS
        if isinstance(event, cs.StatusEvent) and event.deduplication_id:
            return Reads(f"status:{event.deduplication_id}")
        return NO_READS

    @staticmethod
    def _fresh(device: Device, event: cs.UplinkEvent) -> bool:
        # The device's session (devAddr) and fCnt are committed in the same transaction as the
        # dedup keys, so a higher fCnt in the same session was never seen: no read needed.
        last = device.last_f_cnt
        if last is None:
            return never_heard(device)
        return device.last_dev_addr == event.dev_addr and event.f_cnt > last

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
        rssi, snr = event.best_rssi, event.best_snr
        # Late: a frame of this session older than one already applied. ChirpStack publishes a
        # device's uplinks in fCnt order, but instances sharing the stream (or a reconnect's
        # backlog) can apply them out of it: the older frame goes into the history, and the
        # state (reported fields, rule state, config version, radio figures) stays the newer
        # one's (_message).
        late = device.last_dev_addr == event.dev_addr and (device.last_f_cnt or -1) > event.f_cnt
        if not late and device.last_dev_addr not in ("", event.dev_addr):
            late = _before_newest_reading(device, event.time_s)
        if not late:
            change.attrs["last_f_cnt"] = event.f_cnt
            change.attrs["last_dev_addr"] = event.dev_addr
            change.attrs["last_dr"] = event.dr
            change.attrs["last_rssi"] = rssi
            change.attrs["last_snr"] = snr
            if device.kind != "bin" and event.time_s is not None:
                # a bin's fill history holds this time already (_before_newest_reading)
                change.derived[RECEIVED] = round(event.time_s)
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
        message, fields = decoded.message, decoded.fields
        self._message(fx, device, message, fields, now if at is None else at, late=late)
        fx.message = message
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
        self,
        fx: Effects,
        device: Device,
        message: str,
        fields: dict[str, Any],
        at: float,
        *,
        late: bool = False,
    ) -> None:
        """A decoded uplink: reported state, kind, the message's rule, the config version.

        A ``late`` frame (older than one applied) changes none of the state: what it records
        (a presence and its boosts, an alarm, a command's result) still counts; a rule that
        weighs a reading against the one before (:data:`ORDERED_RULES`) does not run."""
        kind = device.kind
        if not late:
            change = fx.change(device)
            if message in STATE_MESSAGES:
                change.reported.update(fields)
            change.reported["last_message"] = message
            if message == "device_info":
                if self.fuota and isinstance(fields.get("firmware_version"), str):
                    fx.firmware = fields["firmware_version"]
                reported_kind = fields.get("kind")
                if kind == "unknown" and reported_kind in ("bin", "lamp"):
                    kind = change.attrs["kind"] = str(reported_kind)
                    fx.gauge = True
        rule = None if late and message in ORDERED_RULES else RULES.get(message)
        if rule is not None:
            rin = RuleInput(self.config, at, fx.now, self.devices.get)
            self._outcome(fx, device, rule(device, fields, rin))
        if message == "command_result":
            # which command it answers is the command manager's (or multicast's) to say; its
            # version counts after that (result_answered)
            fx.command_result = fields
            return
        version = fields.get("config_version")
        if not late and isinstance(version, int) and message in VERSION_MESSAGES:
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


def _before_newest_reading(device: Device, at: float | None) -> bool:
    """Whether a frame of another session than the last applied one (another devAddr: its
    fCnt says nothing) was received by ChirpStack before the newest frame applied: a bin's
    fill history keeps ChirpStack's time of each ``bin_status`` (gateway/rules/bins.py), any
    other device the time of its newest applied frame (:data:`RECEIVED`). A node that
    rejoined between two frames, the older one held in a killed instance's broker session
    until it returns, would otherwise have a reading sent before an emptying applied after
    it (the emptied bin full again), or a lamp's status from before its rejoin taken as its
    state and session. A device with neither (heard only before this was kept, or events
    without ChirpStack's ``time``) has its other session's frames applied as they come."""
    if at is None:
        return False
    samples = fill_history.points(device.derived.get("_samples"))
    if samples:
        return round(at) < samples[-1][0]
    newest = device.derived.get(RECEIVED)
    return isinstance(newest, int) and round(at) < newest
