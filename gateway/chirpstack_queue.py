"""Taking a command back out of ChirpStack's device queue over its gRPC API (optional).

ChirpStack's MQTT integration only enqueues (``command/down``; reference chirpstack.md §3); the
gRPC ``DeviceService`` can read a device's queue (``GetQueue``) and empty it (``FlushQueue``),
§5, with an API key as ``authorization: Bearer`` metadata. ``FlushQueue`` removes every item of
the device, so :meth:`ChirpStackQueue.remove` flushes only when the queue holds exactly the one
item to remove and ChirpStack has not started sending it (``is_pending`` false): the gateway keeps
at most one of its own downlinks per device there (ARCHITECTURE.md invariant 4), and an item of
someone else (another integration) is never thrown away with it.

A frame already on its way (a class C transmission scheduled between ``GetQueue`` and
``FlushQueue``) cannot be called back by anyone; its ``txack`` then finds the command
``cancelled`` and changes nothing.
"""

from __future__ import annotations

from typing import Any

from gateway.config import ChirpstackConfig, read_secret
from gateway.errors import GatewayError
from gateway.lazy import lazy_import

grpc = lazy_import("grpc")  # at the first call (gateway/lazy.py)
api = lazy_import("chirpstack_api.api")

__all__ = ["ChirpStackQueue", "QueueError"]


class QueueError(GatewayError):
    """ChirpStack's gRPC API refused or could not be reached (carries ``code``)."""


class ChirpStackQueue:
    """One gRPC channel to ChirpStack's ``DeviceService`` (grpc.aio, in the gateway's loop)."""

    def __init__(self, target: str, token: str, *, tls: bool = False, timeout_s: float = 5.0):
        self.target = target
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout_s = timeout_s
        self._channel = (
            grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
            if tls
            else grpc.aio.insecure_channel(target)
        )
        self._devices = api.DeviceServiceStub(self._channel)

    def __repr__(self) -> str:  # never the token
        return f"ChirpStackQueue({self.target!r})"

    @classmethod
    def from_config(cls, config: ChirpstackConfig) -> ChirpStackQueue | None:
        if not config.api:
            return None
        return cls(
            config.api,
            read_secret(config.api_token_file),
            tls=config.api_tls,
            timeout_s=config.api_timeout_s,
        )

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, metadata=self._metadata, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise QueueError(
                f"ChirpStack gRPC {self.target}: {exc.code().name}: {exc.details()}",
                code=exc.code().name,
            ) from None

    async def remove(self, dev_eui: str, item_id: str) -> str:
        """Take ``item_id`` out of ``dev_eui``'s queue: ``"removed"``, ``"absent"`` (it is not
        there: already sent, or never arrived), ``"pending"`` (being sent) or ``"shared"``
        (other items are queued too: not flushed). Raises :class:`QueueError`."""
        queue = await self._call(
            self._devices.GetQueue, api.GetDeviceQueueItemsRequest(dev_eui=dev_eui)
        )
        ours = [item for item in queue.result if item.id == item_id]
        if not ours:
            return "absent"
        if ours[0].is_pending:
            return "pending"
        if len(queue.result) > 1:
            return "shared"
        await self._call(self._devices.FlushQueue, api.FlushDeviceQueueRequest(dev_eui=dev_eui))
        return "removed"

    async def close(self) -> None:
        await self._channel.close(None)
