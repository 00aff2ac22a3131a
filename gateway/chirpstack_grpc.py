"""ChirpStack v4's gRPC API as the gateway uses it for multicast groups.

``MulticastGroupService`` (Create, Get, List, Delete, AddDevice, RemoveDevice, Enqueue) and
``DeviceService.List`` filtered by ``multicast_group_id`` (how a group's members are read), from
the ``chirpstack-api`` stubs on ``grpc.aio``. Authorisation as ChirpStack wants it: metadata
``authorization: Bearer <API token>`` on every call (reference/chirpstack.md §5). Every
``grpc.aio.AioRpcError`` becomes :class:`~gateway.errors.ChirpStackApiError` with the status
name in ``code``; the token never appears in a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.errors import ChirpStackApiError
from gateway.lazy import lazy_import

# executed at the first call, not at import (gateway/lazy.py: ~35 MB a gateway without
# [chirpstack] api never needs)
grpc = lazy_import("grpc")
api = lazy_import("chirpstack_api.api")
common = lazy_import("chirpstack_api.common")

__all__ = ["ChirpStackGroups", "GroupSpec"]


@dataclass(frozen=True)
class GroupSpec:
    """What a class C multicast group is in ChirpStack (``api.MulticastGroup``)."""

    name: str
    application_id: str
    mc_addr: int
    mc_nwk_s_key: bytes
    mc_app_s_key: bytes
    dr: int
    frequency_hz: int

    def __repr__(self) -> str:  # keys stay out of logs and tracebacks
        return f"GroupSpec(name={self.name!r}, mc_addr={self.mc_addr:08x})"


class ChirpStackGroups:
    """A client of the two services; ``async with`` closes the channel."""

    def __init__(
        self, *, target: str, token: str, tls: bool = False, timeout_s: float = 10.0
    ) -> None:
        self.target = target
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout_s = timeout_s
        self._channel = (
            grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
            if tls
            else grpc.aio.insecure_channel(target)
        )
        self._groups = api.MulticastGroupServiceStub(self._channel)
        self._devices = api.DeviceServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> ChirpStackGroups:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, what: str, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        try:
            return await method(request, metadata=self._metadata, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
            raise ChirpStackApiError(
                f"ChirpStack {what} at {self.target}: {code}: {exc.details() or ''}".rstrip(": "),
                code=code,
            ) from None

    async def find(self, application_id: str, name: str) -> str | None:
        """The id of the application's group named exactly ``name``, if there is one."""
        offset = 0
        while True:
            page = await self._call(
                "MulticastGroupService.List",
                self._groups.List,
                api.ListMulticastGroupsRequest(
                    application_id=application_id, search=name, limit=100, offset=offset
                ),
            )
            for item in page.result:
                if item.name == name:
                    return str(item.id)
            offset += len(page.result)
            if not page.result or offset >= page.total_count:
                return None

    @staticmethod
    def _message(spec: GroupSpec, group_id: str = "", f_cnt: int = 0) -> Any:
        return api.MulticastGroup(
            id=group_id,
            name=spec.name,
            application_id=spec.application_id,
            region=common.Region.Value("EU868"),
            mc_addr=f"{spec.mc_addr:08x}",
            mc_nwk_s_key=spec.mc_nwk_s_key.hex(),
            mc_app_s_key=spec.mc_app_s_key.hex(),
            f_cnt=f_cnt,
            group_type=api.MulticastGroupType.Value("CLASS_C"),
            dr=spec.dr,
            frequency=spec.frequency_hz,
            class_c_scheduling_type=api.MulticastGroupSchedulingType.Value("DELAY"),
        )

    @staticmethod
    def matches(spec: GroupSpec, group: Any) -> bool:
        """Whether ChirpStack's ``api.MulticastGroup`` is what ``spec`` asks for."""
        return bool(
            group.mc_addr.lower() == f"{spec.mc_addr:08x}"
            and group.mc_nwk_s_key.lower() == spec.mc_nwk_s_key.hex()
            and group.mc_app_s_key.lower() == spec.mc_app_s_key.hex()
            and group.dr == spec.dr
            and group.frequency == spec.frequency_hz
            and group.group_type == api.MulticastGroupType.Value("CLASS_C")
        )

    async def create(self, spec: GroupSpec) -> str:
        response = await self._call(
            "MulticastGroupService.Create",
            self._groups.Create,
            api.CreateMulticastGroupRequest(multicast_group=self._message(spec)),
        )
        return str(response.id)

    async def update(self, group_id: str, spec: GroupSpec, f_cnt: int) -> None:
        """Make the group ``spec`` again, keeping its frame counter (a lower FCnt would be
        refused by every member as a replay)."""
        await self._call(
            "MulticastGroupService.Update",
            self._groups.Update,
            api.UpdateMulticastGroupRequest(multicast_group=self._message(spec, group_id, f_cnt)),
        )

    async def get(self, group_id: str) -> Any:
        response = await self._call(
            "MulticastGroupService.Get", self._groups.Get, api.GetMulticastGroupRequest(id=group_id)
        )
        return response.multicast_group

    async def delete(self, group_id: str) -> None:
        await self._call(
            "MulticastGroupService.Delete",
            self._groups.Delete,
            api.DeleteMulticastGroupRequest(id=group_id),
        )

    async def members(self, application_id: str, group_id: str) -> set[str]:
        """DevEUIs in the group (``DeviceService.List`` with ``multicast_group_id``)."""
        found: set[str] = set()
        offset = 0
        while True:
            page = await self._call(
                "DeviceService.List",
                self._devices.List,
                api.ListDevicesRequest(
                    application_id=application_id,
                    multicast_group_id=group_id,
                    limit=100,
                    offset=offset,
                ),
            )
            found.update(str(item.dev_eui).lower() for item in page.result)
            offset += len(page.result)
            if not page.result or offset >= page.total_count:
                return found

    async def add_device(self, group_id: str, dev_eui: str) -> None:
        await self._call(
            "MulticastGroupService.AddDevice",
            self._groups.AddDevice,
            api.AddDeviceToMulticastGroupRequest(multicast_group_id=group_id, dev_eui=dev_eui),
        )

    async def remove_device(self, group_id: str, dev_eui: str) -> None:
        await self._call(
            "MulticastGroupService.RemoveDevice",
            self._groups.RemoveDevice,
            api.RemoveDeviceFromMulticastGroupRequest(multicast_group_id=group_id, dev_eui=dev_eui),
        )

    async def sync_members(
        self, application_id: str, group_id: str, current: set[str], wanted: list[str]
    ) -> dict[str, str]:
        """Add the missing members and remove the leavers; the refused ones, with why."""
        refused: dict[str, str] = {}
        for dev_eui in sorted(set(wanted) - current):
            try:
                await self.add_device(group_id, dev_eui)
            except ChirpStackApiError as exc:
                if exc.context.get("code") != "ALREADY_EXISTS":
                    refused[dev_eui] = f"not added to the multicast group: {exc.message}"
        for dev_eui in sorted(current - set(wanted)):
            await self.remove_device(group_id, dev_eui)
        return refused

    async def enqueue(
        self, group_id: str, f_port: int, data: bytes, expires_at: datetime | None = None
    ) -> int:
        """Queue a payload for the group; returns the group FCnt it goes out with."""
        item = api.MulticastGroupQueueItem(multicast_group_id=group_id, f_port=f_port, data=data)
        if expires_at is not None:
            item.expires_at.FromDatetime(expires_at)
        response = await self._call(
            "MulticastGroupService.Enqueue",
            self._groups.Enqueue,
            api.EnqueueMulticastGroupQueueItemRequest(queue_item=item),
        )
        return int(response.f_cnt)

    async def device_root_key(self, dev_eui: str) -> bytes:
        """The key a FUOTA server derives a device's McRootKey from (TS004 §3.1.2): the
        GenAppKey when ChirpStack holds one, else the LoRaWAN 1.0.x AppKey, which ChirpStack v4
        keeps in ``nwk_key`` (``DeviceService.GetKeys``). Never logged."""
        response = await self._call(
            "DeviceService.GetKeys",
            self._devices.GetKeys,
            api.GetDeviceKeysRequest(dev_eui=dev_eui),
        )
        keys = response.device_keys
        for text in (keys.gen_app_key, keys.nwk_key):
            try:
                key = bytes.fromhex(text)
            except ValueError:
                continue
            if len(key) == 16 and any(key):
                return key
        raise ChirpStackApiError(
            f"ChirpStack DeviceService.GetKeys at {self.target}: no AppKey for {dev_eui}",
            code="FAILED_PRECONDITION",
        )

    async def queue_length(self, group_id: str) -> int:
        """Items still waiting in the group's queue (``MulticastGroupService.ListQueue``)."""
        response = await self._call(
            "MulticastGroupService.ListQueue",
            self._groups.ListQueue,
            api.ListMulticastGroupQueueRequest(multicast_group_id=group_id),
        )
        return len(response.items)

    async def flush_queue(self, group_id: str) -> None:
        await self._call(
            "MulticastGroupService.FlushQueue",
            self._groups.FlushQueue,
            api.FlushMulticastGroupQueueRequest(multicast_group_id=group_id),
        )
