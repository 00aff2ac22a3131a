"""OS2iot's class C multicasts in the emulator (reference/os2iot.md §3.3).

What OS2iot's ``multicast.controller.ts`` and ``multicast.service.ts`` do, on the slice the
gateway uses (gateway/os2iot_groups.py): a multicast is a row of OS2iot's (name, application,
its LoRaWAN definition, member devices) and a ChirpStack multicast group made from it, here in
the ChirpStack emulator (:attr:`tools.netsim.NetworkServer.multicast`). ``PUT`` writes every
field of the definition to ChirpStack again, the frame counter included, and adds or removes
the members that changed; a downlink flushes the group's queue first (``overwriteDownlink``) and
answers the FCnt it was queued with.

Validation follows ``CreateMulticastDto``: name 1..50 characters, an existing application,
``mcAddr`` 8 hex digits, the two session keys 32 hex digits, ``fCnt``/``dr``/``frequency``
integers >= 0, ``groupType`` a string; OS2iot answers 400 with the validator's messages. The
members must be LoRaWAN devices of the same ChirpStack application.
"""

from __future__ import annotations

import base64
import string
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tools.netsim.config import NetsimError
from tools.netsim.multicast import McGroup
from tools.os2iot.model import iso_now

if TYPE_CHECKING:
    from tools.os2iot.state import Os2iotState

__all__ = ["Multicast", "MulticastInvalid", "Os2iotMulticasts"]

_HEX = frozenset(string.hexdigits)


class MulticastInvalid(Exception):
    """A body OS2iot answers 400 for; ``messages`` as its validator lists them."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass
class Multicast:
    id: int
    name: str
    application_id: int
    mc_addr: str
    mc_nwk_s_key: str = field(repr=False)
    mc_app_s_key: str = field(repr=False)
    f_cnt: int
    dr: int
    frequency: int
    group_type: str
    chirpstack_group_id: str
    device_ids: list[int] = field(default_factory=list)
    created_at: str = field(default_factory=iso_now)
    updated_at: str = field(default_factory=iso_now)


def _hex_field(doc: dict[str, Any], name: str, size: int, errors: list[str]) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or len(value) != size or any(c not in _HEX for c in value):
        errors.append(f"{name} must be a hexadecimal number of {size} characters")
        return ""
    return value.lower()


def _int_field(doc: dict[str, Any], name: str, errors: list[str]) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        errors.append(f"{name} must not be less than 0")
        return 0
    return value


class Os2iotMulticasts:
    def __init__(self, state: Os2iotState) -> None:
        self.state = state
        self.rows: dict[int, Multicast] = {}
        self._next = 1

    # -- validation ----------------------------------------------------------------------------
    def _parse(self, doc: Any) -> tuple[dict[str, Any], list[int]]:
        if not isinstance(doc, dict):
            raise MulticastInvalid(["body must be an object"])
        errors: list[str] = []
        name = doc.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 50:
            errors.append("name must be shorter than or equal to 50 characters")
        app = doc.get("applicationID")
        if not isinstance(app, int) or isinstance(app, bool) or app not in self.state.applications:
            errors.append("applicationID must be an existing application")
        fields = {
            "name": name,
            "application_id": app,
            "mc_addr": _hex_field(doc, "mcAddr", 8, errors),
            "mc_nwk_s_key": _hex_field(doc, "mcNwkSKey", 32, errors),
            "mc_app_s_key": _hex_field(doc, "mcAppSKey", 32, errors),
            "f_cnt": _int_field(doc, "fCnt", errors),
            "dr": _int_field(doc, "dr", errors),
            "frequency": _int_field(doc, "frequency", errors),
            "group_type": doc.get("groupType"),
        }
        if not isinstance(fields["group_type"], str) or not fields["group_type"]:
            errors.append("groupType must be a string")
        device_ids: list[int] = []
        for item in doc.get("iotDevices") or []:
            device_id = item.get("id") if isinstance(item, dict) else None
            device = self.state.devices.get(device_id) if isinstance(device_id, int) else None
            if device is None:
                errors.append(f"iotDevices: no device with id {device_id!r}")
            elif item.get("type", "LORAWAN") == "LORAWAN":
                device_ids.append(device.id)
        if errors:
            raise MulticastInvalid(errors)
        if fields["group_type"] != "CLASS_C":  # OS2iot offers class C only
            raise MulticastInvalid(["groupType must be CLASS_C"])
        return fields, sorted(set(device_ids))

    # -- ChirpStack ----------------------------------------------------------------------------
    def _group(self, row: Multicast, group_id: str) -> McGroup:
        netsim = self.state.netsim
        assert netsim is not None
        now = netsim.config.now()
        return McGroup(
            id=group_id,
            name=row.name,
            application_id=netsim.config.application_id,
            mc_addr=int(row.mc_addr, 16),
            mc_nwk_s_key=bytes.fromhex(row.mc_nwk_s_key),
            mc_app_s_key=bytes.fromhex(row.mc_app_s_key),
            f_cnt=row.f_cnt,
            dr=row.dr,
            frequency_hz=row.frequency,
            created_at=now,
            updated_at=now,
        )

    def _members(self, row: Multicast, wanted: list[int]) -> None:
        netsim = self.state.netsim
        assert netsim is not None
        euis = {self.state.devices[i].dev_eui.lower() for i in wanted if i in self.state.devices}
        current = netsim.multicast.get(row.chirpstack_group_id).devices
        for eui in sorted(euis - current):
            netsim.multicast.add_device(row.chirpstack_group_id, eui)
        for eui in sorted(current - euis):
            netsim.multicast.remove_device(row.chirpstack_group_id, eui)
        row.device_ids = wanted

    # -- the calls -------------------------------------------------------------------------------
    def create(self, doc: Any) -> Multicast:
        fields, device_ids = self._parse(doc)
        row = Multicast(id=self._next, chirpstack_group_id="", **fields)
        netsim = self.state.netsim
        if netsim is not None and device_ids:  # OS2iot makes the ChirpStack group with devices
            row.chirpstack_group_id = str(uuid.uuid4())
            try:
                netsim.multicast.create(self._group(row, row.chirpstack_group_id))
                self._members(row, device_ids)
            except NetsimError as exc:
                raise MulticastInvalid([str(exc)]) from None
        row.device_ids = device_ids
        self._next += 1
        self.rows[row.id] = row
        return row

    def update(self, row: Multicast, doc: Any) -> Multicast:
        fields, device_ids = self._parse(doc)
        for name, value in fields.items():
            setattr(row, name, value)
        row.updated_at = iso_now()
        netsim = self.state.netsim
        if netsim is not None:
            try:
                if not row.chirpstack_group_id and device_ids:
                    row.chirpstack_group_id = str(uuid.uuid4())
                    netsim.multicast.create(self._group(row, row.chirpstack_group_id))
                elif row.chirpstack_group_id:  # every field again, the frame counter too
                    netsim.multicast.update(self._group(row, row.chirpstack_group_id))
                if row.chirpstack_group_id:
                    self._members(row, device_ids)
            except NetsimError as exc:
                raise MulticastInvalid([str(exc)]) from None
        row.device_ids = device_ids
        return row

    def delete(self, row: Multicast) -> None:
        netsim = self.state.netsim
        if netsim is not None and row.chirpstack_group_id:
            try:
                netsim.multicast.delete(row.chirpstack_group_id)
            except NetsimError:
                pass  # already gone in ChirpStack
        del self.rows[row.id]

    def downlink(self, row: Multicast, data: bytes, port: int) -> int:
        """Flush the group's queue, queue one frame, answer its FCnt (``overwriteDownlink``)."""
        netsim = self.state.netsim
        if netsim is None or not row.chirpstack_group_id:
            raise MulticastInvalid(["the multicast has no ChirpStack group (no devices)"])
        netsim.multicast.flush(row.chirpstack_group_id)
        return netsim.enqueue_multicast(row.chirpstack_group_id, data, f_port=port)

    def queue(self, row: Multicast) -> list[dict[str, Any]]:
        netsim = self.state.netsim
        if netsim is None or not row.chirpstack_group_id:
            return []
        return [
            {
                "multicastGroupId": item.group_id,
                "fCnt": item.f_cnt,
                "fPort": item.f_port,
                "data": base64.b64encode(item.data).decode(),
            }
            for item in netsim.multicast.queue(row.chirpstack_group_id)
        ]

    # -- the entity ------------------------------------------------------------------------------
    def entity(self, row: Multicast, *, with_devices: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": row.id,
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
            "groupName": row.name,
            "application": {"id": row.application_id},
            "lorawanMulticastDefinition": {
                "address": row.mc_addr,
                "networkSessionKey": row.mc_nwk_s_key,
                "applicationSessionKey": row.mc_app_s_key,
                "frameCounter": row.f_cnt,
                "dataRate": row.dr,
                "frequency": row.frequency,
                "groupType": row.group_type,
                "chirpstackGroupId": row.chirpstack_group_id or None,
            },
        }
        if with_devices:
            doc["iotDevices"] = [
                self.state.devices[i].entity() for i in row.device_ids if i in self.state.devices
            ]
        return doc
