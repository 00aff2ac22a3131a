"""Cancel a command ChirpStack already holds, through its gRPC API ([chirpstack] api): a real
grpc.aio server with the chirpstack-api DeviceService servicer (GetQueue, FlushQueue) on a free
loopback port stands in for ChirpStack's queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from chirpstack_api import api

from tests.gateway.harness import mqtt_client, running_gateway, wait_for
from tests.gateway.test_service import LAMP1, lamp_status, register, send_up
from tests.helpers.procs import Broker, free_port

pytestmark = pytest.mark.broker

KEY = "chirpstack-api-key-for-tests"
OVERRIDE = {"message": "lamp_override", "fields": {"dim_level": 100, "duration_s": 60}}


class Queue(api.DeviceServiceServicer):  # type: ignore[misc]
    """ChirpStack's device queue, the two RPCs the gateway uses (reference chirpstack.md §5)."""

    def __init__(self) -> None:
        self.items: dict[str, list[Any]] = {}
        self.flushed: list[str] = []

    async def _auth(self, context: Any) -> None:
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {KEY}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad api key")

    async def GetQueue(self, request: Any, context: Any) -> Any:
        await self._auth(context)
        items = self.items.get(request.dev_eui, [])
        return api.GetDeviceQueueItemsResponse(total_count=len(items), result=items)

    async def FlushQueue(self, request: Any, context: Any) -> Any:
        await self._auth(context)
        self.flushed.append(request.dev_eui)
        self.items.pop(request.dev_eui, None)
        from google.protobuf import empty_pb2

        return empty_pb2.Empty()


async def test_a_published_command_is_taken_out_of_chirpstacks_queue(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    queue = Queue()
    server = grpc.aio.server()
    api.add_DeviceServiceServicer_to_server(queue, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    key_file = tmp_path / "chirpstack-key"
    key_file.write_text(KEY + "\n")
    try:
        async with running_gateway(
            mosquitto_broker,
            tmp_path,
            chirpstack={"api": f"127.0.0.1:{port}", "api_token_file": str(key_file)},
        ) as gw:
            await register(gw, LAMP1, kind="lamp")
            async with mqtt_client(mosquitto_broker) as (client, _):
                await send_up(client, gw, LAMP1, 1, lamp_status())
                await wait_for(lambda: gw.counter("processed") == 1, "uplink")

            async def published() -> dict[str, Any]:
                command = (
                    await gw.http.post(f"/api/v1/devices/{LAMP1}/commands", json=OVERRIDE)
                ).json()
                await wait_for(
                    lambda: gw.gateway.commands.active[command["id"]].published_at, "published"
                )
                return dict(command)

            # ChirpStack holds ours and has not started sending it: flushed, cancelled
            first = await published()
            queue.items[LAMP1] = [api.DeviceQueueItem(id=first["id"], dev_eui=LAMP1)]
            done = await gw.http.post(f"/api/v1/commands/{first['id']}/cancel")
            assert done.status_code == 200, done.text
            assert done.json()["state"] == "cancelled"
            assert "removed from ChirpStack's queue" in done.json()["error"]
            assert queue.flushed == [LAMP1]

            # being sent: nothing flushed, the command goes on being tracked
            second = await published()
            queue.items[LAMP1] = [
                api.DeviceQueueItem(id=second["id"], dev_eui=LAMP1, is_pending=True)
            ]
            sending = await gw.http.post(f"/api/v1/commands/{second['id']}/cancel")
            assert sending.status_code == 409 and "ChirpStack is sending it" in sending.text
            # someone else's item beside ours: never flushed with it
            queue.items[LAMP1] = [
                api.DeviceQueueItem(id="00000000-0000-4000-8000-000000000001", dev_eui=LAMP1),
                api.DeviceQueueItem(id=second["id"], dev_eui=LAMP1),
            ]
            shared = await gw.http.post(f"/api/v1/commands/{second['id']}/cancel")
            assert shared.status_code == 409 and "other items" in shared.text
            queue.items[LAMP1] = []
            gone = await gw.http.post(f"/api/v1/commands/{second['id']}/cancel")
            assert gone.status_code == 409 and "no longer holds it" in gone.text
            assert queue.flushed == [LAMP1]
            assert gw.gateway.commands.active[second["id"]].state == "queued"
    finally:
        await server.stop(None)


async def test_without_the_api_a_published_command_cannot_be_cancelled_and_a_bad_key_is_clear(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    server = grpc.aio.server()
    queue = Queue()
    api.add_DeviceServiceServicer_to_server(queue, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    key_file = tmp_path / "chirpstack-key"
    key_file.write_text("not-the-key\n")
    try:
        async with running_gateway(
            mosquitto_broker,
            tmp_path,
            chirpstack={"api": f"127.0.0.1:{port}", "api_token_file": str(key_file)},
        ) as gw:
            await register(gw, LAMP1, kind="lamp")
            async with mqtt_client(mosquitto_broker) as (client, _):
                await send_up(client, gw, LAMP1, 1, lamp_status())
                await wait_for(lambda: gw.counter("processed") == 1, "uplink")
            command = (
                await gw.http.post(f"/api/v1/devices/{LAMP1}/commands", json=OVERRIDE)
            ).json()
            await wait_for(
                lambda: gw.gateway.commands.active[command["id"]].published_at, "published"
            )
            refused = await gw.http.post(f"/api/v1/commands/{command['id']}/cancel")
            assert refused.status_code == 409 and "UNAUTHENTICATED" in refused.text
            assert "not-the-key" not in refused.text and queue.flushed == []
    finally:
        await server.stop(None)
