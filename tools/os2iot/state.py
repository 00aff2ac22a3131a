"""The OS2iot emulator's state: devices, downlinks, data targets and their log.

One :class:`Os2iotState` is the slice of OS2iot's backend that citypack uses (docs/os2iot.md).
Behind it sits the ChirpStack emulator (:class:`tools.netsim.NetworkServer`): creating a device
creates it there (OS2iot's ``createOrUpdateDevice`` + ``activateDeviceWithOTAA`` over gRPC),
deleting one deletes it there, and a downlink is a queue item there (``DeviceService.Enqueue``).
Uplinks, TX acks and acks come back over ChirpStack's MQTT (:mod:`tools.os2iot.listener`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol.lorawan.keys import AESKey
from tools.netsim.devices import Device as NetsimDevice
from tools.netsim.server import CommandError, NetworkServer
from tools.os2iot.model import (
    DataTarget,
    DataTargetLog,
    Downlink,
    IotDevice,
    iso_now,
)
from tools.os2iot.multicast import Os2iotMulticasts

__all__ = ["ChirpStackUnavailable", "Faults", "ItemError", "Os2iotState", "Profile"]

log = logging.getLogger("citypack.os2iot")

DOWNLINK_LIST_MAX = 25  # iot-device-downlink.service.ts: take 25
LOG_ROWS_MAX = 250  # data-target-log.service.ts keeps 250 rows per target
RECEIVED_TIMES = 20  # device-integration-persistence.service.ts keeps 20 timestamps
ORGANIZATION_ID = 1


class ChirpStackUnavailable(Exception):
    """What OS2iot answers 500 "Could not send to chirpstack, try again later." for."""


@dataclass(frozen=True)
class Profile:
    """A ChirpStack device profile as OS2iot lists it (``/chirpstack/device-profiles``)."""

    id: str
    name: str
    class_c: bool


@dataclass
class Faults:
    """Failures a test or the demo switches on: the next N downlink calls answer 500 (as any
    ChirpStack gRPC error does, docs/os2iot.md §3.1), the next N data-target pushes are lost."""

    downlink_errors: int = 0
    push_losses: int = 0


@dataclass
class Os2iotState:
    api_key: str = field(repr=False)
    applications: dict[int, str]
    profiles: list[Profile]
    netsim: NetworkServer | None = None
    faults: Faults = field(default_factory=Faults)
    devices: dict[int, IotDevice] = field(default_factory=dict)
    downlinks: list[Downlink] = field(default_factory=list)
    targets: dict[int, DataTarget] = field(default_factory=dict)
    logs: dict[int, list[DataTargetLog]] = field(default_factory=dict)
    on_change: Callable[[], None] | None = None
    _next_device: int = 1
    _next_target: int = 1
    multicasts: Os2iotMulticasts = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.multicasts = Os2iotMulticasts(self)

    # --- devices --------------------------------------------------------------------------

    def profile(self, profile_id: str) -> Profile | None:
        return next((p for p in self.profiles if p.id == profile_id), None)

    def by_dev_eui(self, dev_eui: str) -> IotDevice | None:
        """Case-insensitive, as the uplink path looks devices up (``ILIKE``)."""
        wanted = dev_eui.lower()
        return next((d for d in self.devices.values() if d.dev_eui.lower() == wanted), None)

    def create_many(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``createMany`` after validation passed: per-item results in request order."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for item in items:
            meta = {"name": item.get("name"), "applicationId": item.get("applicationId")}
            try:
                device = self._create(item, seen)
            except ItemError as exc:
                out.append({"idMetadata": meta, "error": {"message": exc.message}})
                continue
            out.append({"data": device.entity(), "idMetadata": meta})
        return out

    def _create(self, item: dict[str, Any], seen: set[str]) -> IotDevice:
        settings = item.get("lorawanSettings") or {}
        eui = str(settings.get("devEUI", ""))
        # duplicate check: exact (case-sensitive) against the DB and within the batch
        if eui in seen or any(d.dev_eui == eui for d in self.devices.values()):
            raise ItemError("MESSAGE.ID-INVALID-OR-ALREADY-IN-USE")
        if int(item["applicationId"]) not in self.applications:
            raise ItemError("MESSAGE.APPLICATION-DOES-NOT-EXIST")
        profile = self.profile(str(settings.get("deviceProfileID")))
        if profile is None or self.by_dev_eui(eui) is not None:
            # ChirpStack refuses (unknown profile, or the DevEUI in another case): POST-FAILED
            raise ItemError("MESSAGE.POST-FAILED")
        seen.add(eui)
        device = IotDevice(
            id=self._next_device,
            name=str(item["name"]),
            application_id=int(item["applicationId"]),
            dev_eui=eui,
            device_profile_id=profile.id,
            activation_type=str(settings.get("activationType", "NONE")),
            app_key=str(settings.get("OTAAapplicationKey", "")),
            **_optional(item),
        )
        self._next_device += 1
        self.devices[device.id] = device
        self._to_chirpstack(device, profile)
        return device

    def update(self, device_id: int, item: dict[str, Any]) -> IotDevice | None:
        """``PUT /iot-device/:id``: the full DTO replaces the device (omitted lon/lat clear)."""
        device = self.devices.get(device_id)
        if device is None:
            return None
        settings = item.get("lorawanSettings") or {}
        profile = self.profile(str(settings.get("deviceProfileID")))
        if profile is None:
            raise ItemError("MESSAGE.POST-FAILED")
        device.name = str(item["name"])
        device.device_profile_id = profile.id
        device.app_key = str(settings.get("OTAAapplicationKey", device.app_key))
        for key, value in _optional(item, replace=True).items():
            setattr(device, key, value)
        device.updated_at = iso_now()
        self._to_chirpstack(device, profile)
        return device

    def delete(self, device_id: int) -> int:
        device = self.devices.pop(device_id, None)
        if device is None:
            return 0
        if self.netsim is not None:
            self.netsim.remove_device(device.dev_eui.lower())
        for target in self.targets.values():
            target.device_ids.discard(device_id)
        return 1

    def _to_chirpstack(self, device: IotDevice, profile: Profile) -> None:
        if self.netsim is None or device.activation_type != "OTAA":
            return
        self.netsim.add_device(
            NetsimDevice(
                dev_eui=device.dev_eui.lower(),
                join_eui="0000000000000000",  # OS2iot has no JoinEUI (docs/os2iot.md §2.2)
                app_key=AESKey.from_hex(device.app_key),
                device_class="C" if profile.class_c else "A",
                name=device.chirpstack_name,
                tags={
                    "internalOrganizationId": str(ORGANIZATION_ID),
                    "os2iot-created-by": "1",
                    "os2iot-updated-by": "1",
                },
            )
        )

    def search(self, q: str) -> list[dict[str, Any]]:
        """``GET /search``: ``name ILIKE %q% OR deviceEUI ILIKE q``."""
        needle = q.lower()
        return [
            {
                "type": "IoTDevice",
                "id": d.id,
                "name": d.name,
                "deviceEUI": d.dev_eui,
                "deviceType": "LORAWAN",
                "applicationId": d.application_id,
                "organizationId": ORGANIZATION_ID,
            }
            for d in sorted(self.devices.values(), key=lambda d: d.id)
            if needle in d.name.lower() or needle == d.dev_eui.lower()
        ]

    # --- downlinks ------------------------------------------------------------------------

    def enqueue(self, device: IotDevice, data_hex: str, port: int, confirmed: bool) -> None:
        """``POST /iot-device/:id/downlink``: an append to ChirpStack's queue, then the row."""
        if len(data_hex) % 2:
            data_hex = data_hex[:-1]  # Buffer.from(hex, "hex") drops an odd last nibble
        if self.faults.downlink_errors > 0:
            self.faults.downlink_errors -= 1
            raise ChirpStackUnavailable("injected fault")
        if self.netsim is None:
            raise ChirpStackUnavailable("no ChirpStack behind this OS2iot")
        try:
            item_id = self.netsim.enqueue(
                device.dev_eui.lower(), bytes.fromhex(data_hex), f_port=port, confirmed=confirmed
            )
        except CommandError as exc:
            raise ChirpStackUnavailable(str(exc)) from exc
        self.downlinks.append(Downlink(device.id, data_hex.lower(), port, confirmed, item_id))

    def pending(self, device_id: int) -> list[dict[str, Any]]:
        rows = [
            d
            for d in self.downlinks
            if d.device_id == device_id
            and not d.flushed
            and d.send_at is None
            and d.acknowledged_at is None
        ]
        return [d.item() for d in rows[:DOWNLINK_LIST_MAX]]

    def history(self, device_id: int) -> list[dict[str, Any]]:
        rows = [d for d in self.downlinks if d.device_id == device_id and d.send_at is not None]
        rows.sort(key=lambda d: d.send_at or "", reverse=True)
        return [d.item() for d in rows[:DOWNLINK_LIST_MAX]]

    def flush(self, device: IotDevice) -> None:
        for row in self.downlinks:
            if row.device_id == device.id and row.send_at is None:
                row.flushed = True
        if self.netsim is not None:
            self.netsim.flush_queue(device.dev_eui.lower())

    def on_txack(self, queue_item_id: str, time: str, f_cnt_down: int | None) -> None:
        row = self._row(queue_item_id)
        if row is not None:  # an event before the row exists is skipped (docs/os2iot.md §3.2)
            row.send_at = time
            row.f_cnt_down = f_cnt_down

    def on_ack(
        self, queue_item_id: str, time: str, acknowledged: bool, f_cnt_down: int | None
    ) -> None:
        row = self._row(queue_item_id)
        if row is not None:
            row.acknowledged_at = time
            row.acknowledged = acknowledged
            row.f_cnt_down = f_cnt_down

    def _row(self, queue_item_id: str) -> Downlink | None:
        return next((d for d in self.downlinks if d.queue_item_id == queue_item_id), None)

    # --- data targets ---------------------------------------------------------------------

    def create_target(self, doc: dict[str, Any]) -> DataTarget:
        target = DataTarget(
            id=self._next_target,
            name=str(doc["name"]),
            application_id=int(doc["applicationId"]),
            url=str(doc["url"]),
            timeout_ms=int(doc.get("timeout") or 30000),
            authorization_header=str(doc.get("authorizationHeader") or ""),
        )
        self._next_target += 1
        self.targets[target.id] = target
        self.logs[target.id] = []
        return target

    def targets_of(self, device_id: int) -> list[DataTarget]:
        return [t for t in self.targets.values() if device_id in t.device_ids]

    def log_push(self, target: DataTarget, device_id: int, status: int | None, text: str) -> None:
        """One push's outcome: an ERROR always, an OK only right after an ERROR."""
        target.last_message_date = iso_now()
        rows = self.logs.setdefault(target.id, [])
        ok = status is not None and 200 <= status < 300
        if ok and (not rows or rows[-1].type != "ERROR"):
            return
        rows.append(DataTargetLog("OK" if ok else "ERROR", status, text[:500], device_id))
        del rows[:-LOG_ROWS_MAX]


class ItemError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _optional(item: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
    """The optional DTO fields; on a replace (PUT) an omitted one is cleared."""
    names = {
        "latitude": "latitude",
        "longitude": "longitude",
        "comment": "comment",
        "commentOnLocation": "comment_on_location",
        "metadata": "metadata",
        "deviceModelId": "device_model_id",
    }
    out = {attr: item.get(key) for key, attr in names.items() if replace or key in item}
    settings = item.get("lorawanSettings") or {}
    for key, attr in (("skipFCntCheck", "skip_fcnt_check"), ("isDisabled", "is_disabled")):
        if replace or key in settings:
            out[attr] = bool(settings.get(key, False))
    # a point is stored only if both coordinates are given (docs/os2iot.md §2.2)
    incomplete = out.get("latitude") is None or out.get("longitude") is None
    if incomplete and ("latitude" in out or "longitude" in out):
        out["latitude"] = out["longitude"] = None
    return out
