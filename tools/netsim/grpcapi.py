"""ChirpStack v4's gRPC ``MulticastGroupService`` on the emulator (``api/multicast_group.proto``),
and ``DeviceService.List`` (``api/device.proto``; the filter by multicast group is how a client
reads a group's members).

Served with the ``chirpstack-api`` stubs on ``grpc.aio`` in the emulator's event loop, so every
call runs between radio events and needs no lock. Authorisation is ChirpStack's: per-call
metadata ``authorization: Bearer <API token>``, UNAUTHENTICATED otherwise (reference/chirpstack.md
§5). Status codes as ChirpStack maps its storage errors: NOT_FOUND for an unknown group, device
or membership, INVALID_ARGUMENT for a malformed id, EUI, key or field (``api/error.rs``).

Emulated: Create, Get, Update, Delete, List, AddDevice, RemoveDevice, AddGateway,
RemoveGateway, Enqueue, FlushQueue, ListQueue, for class C groups with DELAY scheduling in
EU868 (:mod:`tools.netsim.multicast`). Class B and GPS-time groups are refused with
INVALID_ARGUMENT: the emulator has no beacon and no GPS clock.
"""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from datetime import UTC
from typing import Any, NoReturn

import grpc
from chirpstack_api import api, common
from google.protobuf import empty_pb2

from tools.netsim.config import NetsimError
from tools.netsim.events import timestamp
from tools.netsim.multicast import McGroup, MulticastExists, MulticastNotFound
from tools.netsim.server import NetworkServer

__all__ = ["DeviceApi", "MulticastGroupApi", "start_grpc"]

log = logging.getLogger("citypack.netsim")

_HEX = re.compile(r"^[0-9a-fA-F]*$")


def _hex(text: str, size: int, what: str) -> bytes:
    if len(text) != 2 * size or not _HEX.match(text):
        raise NetsimError(f"{what} must be {2 * size} hex digits")
    return bytes.fromhex(text)


def _uuid(text: str, what: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise NetsimError(f"{what} is not a UUID: {text!r}") from None


async def _guard(token: str | None, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """ChirpStack's bearer-token check (``api/auth``): UNAUTHENTICATED without the token."""
    if token is None:
        return
    metadata = dict(context.invocation_metadata() or ())
    given = str(metadata.get("authorization", ""))
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication failed")


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: NetsimError) -> NoReturn:
    if isinstance(exc, MulticastNotFound):
        code = grpc.StatusCode.NOT_FOUND
    elif isinstance(exc, MulticastExists):
        code = grpc.StatusCode.ALREADY_EXISTS
    else:
        code = grpc.StatusCode.INVALID_ARGUMENT
    await context.abort(code, str(exc))
    raise AssertionError("abort returned")  # pragma: no cover


class MulticastGroupApi(api.MulticastGroupServiceServicer):  # type: ignore[misc]
    """The servicer: translates messages to :class:`~tools.netsim.multicast.MulticastGroups`."""

    def __init__(self, server: NetworkServer, api_token: str | None) -> None:
        self.server = server
        self._token = api_token

    # -- helpers -----------------------------------------------------------------------------
    async def _guard(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await _guard(self._token, context)

    async def _fail(
        self, context: grpc.aio.ServicerContext[Any, Any], exc: NetsimError
    ) -> NoReturn:
        await _abort(context, exc)

    def _group(self, message: Any, group_id: str) -> McGroup:
        if message.group_type != api.MulticastGroupType.Value("CLASS_C"):
            raise NetsimError("only class C multicast groups are emulated (no class B beacon)")
        if message.class_c_scheduling_type != api.MulticastGroupSchedulingType.Value("DELAY"):
            raise NetsimError("only DELAY class C scheduling is emulated (no GPS time)")
        if message.region != common.Region.Value("EU868"):
            raise NetsimError("the emulator serves EU868 only")
        application_id = _uuid(message.application_id, "application_id")
        if application_id != self.server.config.application_id:
            raise MulticastNotFound(f"Object does not exist (id: {application_id})")
        now = self.server.config.now()
        return McGroup(
            id=group_id,
            name=message.name,
            application_id=application_id,
            mc_addr=int.from_bytes(_hex(message.mc_addr, 4, "mc_addr"), "big"),
            mc_nwk_s_key=_hex(message.mc_nwk_s_key, 16, "mc_nwk_s_key"),
            mc_app_s_key=_hex(message.mc_app_s_key, 16, "mc_app_s_key"),
            f_cnt=message.f_cnt,
            dr=message.dr,
            frequency_hz=message.frequency,
            created_at=now,
            updated_at=now,
        )

    def _message(self, group: McGroup) -> Any:
        return api.MulticastGroup(
            id=group.id,
            name=group.name,
            application_id=group.application_id,
            region=common.Region.Value("EU868"),
            mc_addr=f"{group.mc_addr:08x}",
            mc_nwk_s_key=group.mc_nwk_s_key.hex(),
            mc_app_s_key=group.mc_app_s_key.hex(),
            f_cnt=group.f_cnt,
            group_type=api.MulticastGroupType.Value("CLASS_C"),
            dr=group.dr,
            frequency=group.frequency_hz,
            class_c_scheduling_type=api.MulticastGroupSchedulingType.Value("DELAY"),
        )

    # -- the service -------------------------------------------------------------------------
    async def Create(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        try:
            group = self._group(request.multicast_group, str(uuid.uuid4()))
            self.server.multicast.create(group)
        except NetsimError as exc:
            await self._fail(context, exc)
        return api.CreateMulticastGroupResponse(id=group.id)

    async def Get(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        try:
            group = self.server.multicast.get(_uuid(request.id, "id"))
        except NetsimError as exc:
            await self._fail(context, exc)
        return api.GetMulticastGroupResponse(
            multicast_group=self._message(group),
            created_at=timestamp(group.created_at),
            updated_at=timestamp(group.updated_at),
        )

    async def Update(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        try:
            group = self._group(
                request.multicast_group, _uuid(request.multicast_group.id, "multicast_group.id")
            )
            self.server.multicast.update(group)
        except NetsimError as exc:
            await self._fail(context, exc)
        return empty_pb2.Empty()

    async def Delete(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        try:
            self.server.multicast.delete(_uuid(request.id, "id"))
        except NetsimError as exc:
            await self._fail(context, exc)
        return empty_pb2.Empty()

    async def List(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        groups = [
            g
            for g in self.server.multicast.groups()
            if (not request.application_id or g.application_id == request.application_id)
            and (not request.dev_eui or request.dev_eui.lower() in g.devices)
            and (not request.search or request.search.lower() in g.name.lower())
        ]
        page = groups[request.offset :]
        if request.limit:
            page = page[: request.limit]
        return api.ListMulticastGroupsResponse(
            total_count=len(groups),
            result=[
                api.MulticastGroupListItem(
                    id=g.id,
                    created_at=timestamp(g.created_at),
                    updated_at=timestamp(g.updated_at),
                    name=g.name,
                    region=common.Region.Value("EU868"),
                    group_type=api.MulticastGroupType.Value("CLASS_C"),
                    application_id=g.application_id,
                    application_name=self.server.config.application_name,
                )
                for g in page
            ],
        )

    async def AddDevice(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        try:
            dev_eui = _hex(request.dev_eui, 8, "dev_eui").hex()
            self.server.multicast.add_device(
                _uuid(request.multicast_group_id, "multicast_group_id"), dev_eui
            )
        except NetsimError as exc:
            await self._fail(context, exc)
        return empty_pb2.Empty()

    async def RemoveDevice(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        try:
            dev_eui = _hex(request.dev_eui, 8, "dev_eui").hex()
            self.server.multicast.remove_device(
                _uuid(request.multicast_group_id, "multicast_group_id"), dev_eui
            )
        except NetsimError as exc:
            await self._fail(context, exc)
        return empty_pb2.Empty()

    async def AddGateway(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        try:
            gateway_id = _hex(request.gateway_id, 8, "gateway_id").hex()
            self.server.multicast.add_gateway(
                _uuid(request.multicast_group_id, "multicast_group_id"), gateway_id
            )
        except NetsimError as exc:
            await self._fail(context, exc)
        return empty_pb2.Empty()

    async def RemoveGateway(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        try:
            gateway_id = _hex(request.gateway_id, 8, "gateway_id").hex()
            self.server.multicast.remove_gateway(
                _uuid(request.multicast_group_id, "multicast_group_id"), gateway_id
            )
        except NetsimError as exc:
            await self._fail(context, exc)
        return empty_pb2.Empty()

    async def Enqueue(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        item = request.queue_item
        try:
            expires_at = (
                item.expires_at.ToDatetime(tzinfo=UTC) if item.HasField("expires_at") else None
            )
            f_cnt = self.server.enqueue_multicast(
                _uuid(item.multicast_group_id, "multicast_group_id"),
                bytes(item.data),
                f_port=item.f_port,
                expires_at=expires_at,
            )
        except NetsimError as exc:
            await self._fail(context, exc)
        return api.EnqueueMulticastGroupQueueItemResponse(f_cnt=f_cnt)

    async def FlushQueue(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        try:
            group_id = _uuid(request.multicast_group_id, "multicast_group_id")
            self.server.multicast.get(group_id)
            self.server.multicast.flush(group_id)
        except NetsimError as exc:
            await self._fail(context, exc)
        return empty_pb2.Empty()

    async def ListQueue(self, request: Any, context: Any) -> Any:
        await self._guard(context)
        try:
            items = self.server.multicast.queue(
                _uuid(request.multicast_group_id, "multicast_group_id")
            )
        except NetsimError as exc:
            await self._fail(context, exc)
        return api.ListMulticastGroupQueueResponse(
            items=[
                api.MulticastGroupQueueItem(
                    multicast_group_id=i.group_id,
                    f_cnt=i.f_cnt,
                    f_port=i.f_port,
                    data=i.data,
                    expires_at=timestamp(i.expires_at) if i.expires_at else None,
                )
                for i in items
            ]
        )


class DeviceApi(api.DeviceServiceServicer):  # type: ignore[misc]
    """``DeviceService.List`` and ``GetKeys`` (the other calls answer UNIMPLEMENTED, the stub's
    default). ``GetKeys`` answers as ChirpStack v4 does for a LoRaWAN 1.0.x device: the AppKey in
    ``nwk_key`` (its ``app_key`` is for 1.1 only); a FUOTA server derives the McRootKey from it
    (TS004 §3.1.2, gateway/fuota_campaign.py)."""

    def __init__(self, server: NetworkServer, api_token: str | None) -> None:
        self.server = server
        self._token = api_token

    async def List(self, request: Any, context: Any) -> Any:
        await _guard(self._token, context)
        if request.application_id and request.application_id != self.server.config.application_id:
            return api.ListDevicesResponse(total_count=0)
        devices = self.server.devices()
        if request.multicast_group_id:
            try:
                group = self.server.multicast.get(
                    _uuid(request.multicast_group_id, "multicast_group_id")
                )
            except NetsimError as exc:
                await _abort(context, exc)
            devices = [d for d in devices if d.dev_eui in group.devices]
        if request.search:
            devices = [d for d in devices if request.search.lower() in d.name.lower()]
        devices.sort(key=lambda d: d.name)
        page = devices[request.offset :]
        if request.limit:
            page = page[: request.limit]
        return api.ListDevicesResponse(
            total_count=len(devices),
            result=[api.DeviceListItem(dev_eui=d.dev_eui, name=d.name, tags=d.tags) for d in page],
        )

    async def GetKeys(self, request: Any, context: Any) -> Any:
        await _guard(self._token, context)
        wanted = str(request.dev_eui).lower()
        for device in self.server.devices():
            if device.dev_eui == wanted:
                return api.GetDeviceKeysResponse(
                    device_keys=api.DeviceKeys(
                        dev_eui=device.dev_eui, nwk_key=device.app_key.to_bytes().hex()
                    )
                )
        await _abort(context, MulticastNotFound(f"Object does not exist (dev_eui: {wanted})"))


async def start_grpc(
    server: NetworkServer, host: str, port: int, api_token: str | None
) -> tuple[grpc.aio.Server, int]:
    """Serve the API on ``host:port`` (port 0: a free one); returns the server and its port."""
    grpc_server = grpc.aio.server()
    api.add_MulticastGroupServiceServicer_to_server(
        MulticastGroupApi(server, api_token), grpc_server
    )
    api.add_DeviceServiceServicer_to_server(DeviceApi(server, api_token), grpc_server)
    bound = grpc_server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await grpc_server.start()
    return grpc_server, bound
