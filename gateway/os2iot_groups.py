"""Multicast groups through OS2iot's API, for a city whose ChirpStack belongs to OS2iot.

With ``[os2iot] downlinks`` the gateway may not call ChirpStack itself (docs/os2iot.md), so the
lamp groups of gateway/multicast.py are OS2iot multicasts (reference/os2iot.md §3.3, OS2iot's
``multicast.controller.ts``): ``POST /multicast`` creates one (name, application number, McAddr,
session keys, FCnt, data rate, frequency, ``groupType: "CLASS_C"`` and the member devices as
``iotDevices``), ``PUT /multicast/:id`` replaces the same fields, ``GET /multicast?applicationId=``
lists them, and ``POST /multicast/:id/downlink-multicast`` ``{"data": hex, "port": n}`` queues
one frame for the group and answers its ``fCnt``.

:class:`Os2iotGroups` has the calls :class:`gateway.multicast.MulticastManager` makes of
:class:`gateway.chirpstack_grpc.ChirpStackGroups` (find, create, get, matches, update,
sync_members, enqueue, close) and raises :class:`~gateway.errors.ChirpStackApiError` with a gRPC
status name (``NOT_FOUND``, ``UNAVAILABLE``, ...) so the manager and the API treat both alike.

The frame counter. OS2iot keeps the ``fCnt`` it was last given and hands it to ChirpStack on
every ``PUT``, the one way to change a member list; a stale value would set the group's counter
back and every member would drop the next frames as replays (LoRaWAN L2 1.0.4 §4.3.1.5). So the
next FCnt is learnt from each enqueue's answer and written back with a ``PUT`` right after it:
OS2iot's record then always holds ChirpStack's counter, also for the next gateway process. A
crash between the two calls leaves it one frame behind; the manager's next enqueue answers the
true value again (ChirpStack's counter was never moved back by it, only a ``PUT`` does that).

Differences from ChirpStack that the manager's callers see: OS2iot takes no ``expires_at`` (a
group command's members expire in the manager, ``command_timeout_s``), and an enqueue flushes
the group's queue first (OS2iot's ``overwriteDownlink``): a class C group frame goes out within
seconds of being queued, so only a command queued while the previous one still waits for its
slot replaces it; its members then expire rather than report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.chirpstack_grpc import GroupSpec
from gateway.errors import ChirpStackApiError
from gateway.os2iot import Os2iotClient, Os2iotError

__all__ = ["Os2iotGroup", "Os2iotGroups"]

_PAGE = 100


@dataclass
class Os2iotGroup:
    """An OS2iot multicast as :meth:`Os2iotGroups.get` reads it (keys kept out of the repr)."""

    id: int
    name: str
    application: int
    f_cnt: int
    definition: dict[str, Any]
    members: dict[str, int]  # DevEUI -> OS2iot device id

    def __repr__(self) -> str:
        return f"Os2iotGroup(id={self.id}, name={self.name!r}, members={len(self.members)})"


def _code(status: int) -> str:
    return {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}.get(status, "UNKNOWN")


class Os2iotGroups:
    """OS2iot multicasts of one OS2iot application (``application_id`` is its number)."""

    def __init__(self, client: Os2iotClient) -> None:
        self.client = client
        self.target = client.base_url
        self._groups: dict[str, Os2iotGroup] = {}  # id -> last read or written
        self._next_f_cnt: dict[str, int] = {}

    async def close(self) -> None:
        """The HTTP client belongs to the gateway's OS2iot downlinks; nothing of ours to close."""

    async def _call(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.client.call(method, path, **kwargs)
        except Os2iotError as exc:
            raise ChirpStackApiError(f"OS2iot {what}: {exc}", code="UNAVAILABLE") from None
        if response.status_code >= 300:
            try:
                detail = response.json().get("message", "")
            except ValueError:
                detail = response.text[:200]
            raise ChirpStackApiError(
                f"OS2iot {what}: {response.status_code} {detail}".rstrip(),
                code=_code(response.status_code),
            )
        return response.json() if response.content else None

    @staticmethod
    def _application(application_id: str) -> int:
        try:
            return int(application_id)
        except ValueError:
            raise ChirpStackApiError(
                f"OS2iot application numbers are integers, not {application_id!r}"
                " ([multicast] application_id or [mqtt] application_id)",
                code="INVALID_ARGUMENT",
            ) from None

    def _read(self, doc: dict[str, Any]) -> Os2iotGroup:
        definition = doc.get("lorawanMulticastDefinition") or {}
        members = {
            str(d["deviceEUI"]).lower(): int(d["id"])
            for d in doc.get("iotDevices") or []
            if isinstance(d, dict) and d.get("deviceEUI") and "id" in d
        }
        group = Os2iotGroup(
            id=int(doc["id"]),
            name=str(doc.get("groupName", "")),
            application=int((doc.get("application") or {}).get("id") or 0),
            f_cnt=int(definition.get("frameCounter") or 0),
            definition=definition,
            members=members,
        )
        self._groups[str(group.id)] = group
        return group

    async def find(self, application_id: str, name: str) -> str | None:
        number = self._application(application_id)
        offset = 0
        while True:
            page = await self._call(
                "list multicasts",
                "GET",
                "/multicast",
                params={"applicationId": number, "limit": _PAGE, "offset": offset},
            )
            rows = page.get("data", []) if isinstance(page, dict) else []
            for row in rows:
                if isinstance(row, dict) and row.get("groupName") == name:
                    return str(row["id"])
            offset += len(rows)
            if not rows or offset >= int(page.get("count", 0)):
                return None

    def _body(self, spec: GroupSpec, f_cnt: int, members: dict[str, int]) -> dict[str, Any]:
        return {
            "name": spec.name,
            "applicationID": self._application(spec.application_id),
            "mcAddr": f"{spec.mc_addr:08x}",
            "mcNwkSKey": spec.mc_nwk_s_key.hex(),
            "mcAppSKey": spec.mc_app_s_key.hex(),
            "fCnt": f_cnt,
            "dr": spec.dr,
            "frequency": spec.frequency_hz,
            "groupType": "CLASS_C",
            "multicastId": "",
            "iotDevices": [
                {"id": device_id, "type": "LORAWAN", "deviceEUI": eui}
                for eui, device_id in sorted(members.items())
            ],
        }

    async def create(self, spec: GroupSpec) -> str:
        doc = await self._call(
            "create multicast", "POST", "/multicast", json=self._body(spec, 0, {})
        )
        group = self._read(doc)
        self._next_f_cnt[str(group.id)] = 0
        return str(group.id)

    async def get(self, group_id: str) -> Os2iotGroup:
        return self._read(await self._call("read multicast", "GET", f"/multicast/{group_id}"))

    @staticmethod
    def matches(spec: GroupSpec, group: Os2iotGroup) -> bool:
        d = group.definition
        return bool(
            str(d.get("address", "")).lower() == f"{spec.mc_addr:08x}"
            and str(d.get("networkSessionKey", "")).lower() == spec.mc_nwk_s_key.hex()
            and str(d.get("applicationSessionKey", "")).lower() == spec.mc_app_s_key.hex()
            and d.get("dataRate") == spec.dr
            and d.get("frequency") == spec.frequency_hz
            and d.get("groupType") == "CLASS_C"
        )

    def _f_cnt(self, group: Os2iotGroup) -> int:
        """The FCnt a PUT must carry: never below what an enqueue answered (module docstring)."""
        return max(group.f_cnt, self._next_f_cnt.get(str(group.id), 0))

    async def _put(self, group: Os2iotGroup, spec: GroupSpec, members: dict[str, int]) -> None:
        doc = await self._call(
            "update multicast",
            "PUT",
            f"/multicast/{group.id}",
            json=self._body(spec, self._f_cnt(group), members),
        )
        if isinstance(doc, dict) and "id" in doc:
            self._read(doc)

    @staticmethod
    def _spec(group: Os2iotGroup, application_id: str) -> GroupSpec:
        d = group.definition
        return GroupSpec(
            name=group.name,
            application_id=application_id,
            mc_addr=int(str(d.get("address", "0")), 16),
            mc_nwk_s_key=bytes.fromhex(str(d.get("networkSessionKey", ""))),
            mc_app_s_key=bytes.fromhex(str(d.get("applicationSessionKey", ""))),
            dr=int(d.get("dataRate") or 0),
            frequency_hz=int(d.get("frequency") or 0),
        )

    async def update(self, group_id: str, spec: GroupSpec, f_cnt: int) -> None:
        group = self._groups.get(group_id) or await self.get(group_id)
        self._next_f_cnt[group_id] = max(self._next_f_cnt.get(group_id, 0), f_cnt)
        await self._put(group, spec, group.members)

    async def members(self, application_id: str, group_id: str) -> set[str]:
        return set((await self.get(group_id)).members)

    async def sync_members(
        self, application_id: str, group_id: str, current: set[str], wanted: list[str]
    ) -> dict[str, str]:
        """One ``PUT`` with the wanted members OS2iot knows; the others refused, with why."""
        group = self._groups.get(group_id) or await self.get(group_id)
        refused: dict[str, str] = {}
        members: dict[str, int] = {}
        for eui in wanted:
            try:
                device_id = group.members.get(eui) or await self.client.device_id(eui)
            except Os2iotError as exc:
                raise ChirpStackApiError(f"OS2iot search: {exc}", code="UNAVAILABLE") from None
            if device_id is None:
                refused[eui] = "not added to the multicast group: OS2iot has no such device"
            else:
                members[eui] = device_id
        if set(members) != current:
            await self._put(group, self._spec(group, application_id), members)
        return refused

    async def enqueue(
        self, group_id: str, f_port: int, data: bytes, expires_at: datetime | None = None
    ) -> int:
        """Queue a payload for the group; returns the FCnt it goes out with (OS2iot takes no
        ``expires_at``: the manager expires the members itself)."""
        answer = await self._call(
            "multicast downlink",
            "POST",
            f"/multicast/{group_id}/downlink-multicast",
            json={"data": data.hex(), "port": f_port},
        )
        f_cnt = int(answer.get("fCnt", 0)) if isinstance(answer, dict) else 0
        self._next_f_cnt[group_id] = f_cnt + 1
        group = self._groups.get(group_id)
        if group is not None:  # OS2iot's record follows ChirpStack's counter (docstring)
            await self._put(group, self._spec(group, str(group.application)), group.members)
        return f_cnt

    # -- what FUOTA campaigns ask of ChirpStack (gateway/fuota_campaign.py) --------------------
    async def queue_length(self, group_id: str) -> int:
        """Frames still waiting in the group's queue (``GET .../downlink-multicast``)."""
        answer = await self._call(
            "multicast queue", "GET", f"/multicast/{group_id}/downlink-multicast"
        )
        items = answer.get("deviceQueueItems") if isinstance(answer, dict) else None
        return len(items) if isinstance(items, list) else 0

    async def flush_queue(self, group_id: str) -> None:
        raise ChirpStackApiError(
            "OS2iot has no call that empties a multicast's queue: FUOTA campaigns need"
            " ChirpStack's gRPC API ([chirpstack] api)",
            code="FAILED_PRECONDITION",
        )

    async def device_root_key(self, dev_eui: str) -> bytes:
        raise ChirpStackApiError(
            "FUOTA campaigns need the devices' root keys from ChirpStack's gRPC API"
            " ([chirpstack] api); OS2iot's API does not give them",
            code="FAILED_PRECONDITION",
        )
