"""The emulator end to end through a real private mosquitto: GWMP in, ChirpStack MQTT out.

A fake node (frames from protocol.lorawan) talks through the GWMP client over loopback UDP; the
test plays the application on MQTT exactly as the reference describes it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from chirpstack_api import integration

from tests.helpers.procs import Broker, free_port, start_mosquitto
from tests.netsim.conftest import CLASS_A, CLASS_C, GW1, fast_config, until
from tests.netsim.fakenode import FakeNode, air, phy_of
from tools.netsim.gwmp import GwmpClient
from tools.netsim.runner import Netsim

pytestmark = [
    pytest.mark.broker,
]


@asynccontextmanager
async def application(broker: Broker, app_id: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"app-{app_id[:8]}") as client:
        await client.subscribe(f"application/{app_id}/device/+/event/+", qos=1)
        yield client


async def next_event(client: aiomqtt.Client, kind: str, wait_s: float = 5.0) -> tuple[str, Any]:
    async with asyncio.timeout(wait_s):
        async for message in client.messages:
            topic = str(message.topic)
            if topic.endswith(f"/event/{kind}"):
                assert isinstance(message.payload, bytes)
                assert message.qos == 1  # published at QoS 1
                return topic, message.payload
    raise AssertionError("the broker closed the stream")


async def test_join_uplink_confirmed_downlink_ack_over_mqtt(mosquitto_broker: Broker) -> None:
    app_id = str(uuid.uuid4())
    config = fast_config(application_id=app_id)
    netsim = Netsim([CLASS_A], broker_url=mosquitto_broker.url, config=config, udp=("127.0.0.1", 0))
    async with application(mosquitto_broker, app_id) as app, netsim:
        assert netsim.gwmp is not None
        async with GwmpClient(GW1, *netsim.gwmp.address) as gw:
            node = FakeNode.for_device(CLASS_A)
            phy = node.join_request()
            await gw.push([air(phy)])
            token, txpk = await gw.downlink(5.0)
            await gw.tx_ack(token)
            node.join_accept(phy_of(txpk))
            await gw.push([air(node.uplink(b"\x01\x02", fport=2))])
            topic, payload = await next_event(app, "join")
            assert topic == f"application/{app_id}/device/{CLASS_A.dev_eui}/event/join"
            join = json.loads(payload)
            topic, payload = await next_event(app, "up")
            up = json.loads(payload)
            assert up["deduplicationId"] == join["deduplicationId"]
            assert base64.b64decode(up["data"]) == b"\x01\x02" and up["fCnt"] == 0
            assert up["deviceInfo"]["applicationId"] == app_id

            item_id = str(uuid.uuid4())
            command = {
                "id": item_id,
                "devEui": CLASS_A.dev_eui,
                "confirmed": True,
                "fPort": 10,
                "data": base64.b64encode(b"\xaa\x55").decode(),
            }
            await app.publish(
                f"application/{app_id}/device/{CLASS_A.dev_eui}/command/down",
                json.dumps(command),
                qos=1,
            )
            await until(lambda: bool(netsim.server.queue(CLASS_A.dev_eui)))
            await gw.push([air(node.uplink(b"\x03", fport=2))])
            token, txpk = await gw.downlink(5.0)
            down = node.downlink(phy_of(txpk), 0)
            assert down.payload == b"\xaa\x55" and down.frame.mhdr.mtype.is_confirmed
            await gw.tx_ack(token)
            txack = json.loads((await next_event(app, "txack"))[1])
            assert (txack["queueItemId"], txack["fCntDown"], txack["gatewayId"]) == (
                item_id,
                0,
                GW1,
            )
            await gw.push([air(node.uplink(b"\x04", fport=2, ack=True))])
            ack = json.loads((await next_event(app, "ack"))[1])
            assert (ack["queueItemId"], ack["acknowledged"], ack["fCntDown"]) == (item_id, True, 0)


async def test_protobuf_marshaler_round_trip(mosquitto_broker: Broker) -> None:
    app_id = str(uuid.uuid4())
    netsim = Netsim(
        [CLASS_C],
        broker_url=mosquitto_broker.url,
        config=fast_config(application_id=app_id),
        marshaler="protobuf",
    )
    downlinks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with application(mosquitto_broker, app_id) as app, netsim:
        netsim.server.attach_gateway(GW1, lambda txpk, token: downlinks.put_nowait(txpk))
        node = FakeNode.for_device(CLASS_C)
        netsim.server.receive_uplink(GW1, air(node.join_request()))
        node.join_accept(phy_of(await asyncio.wait_for(downlinks.get(), 5)))
        netsim.server.receive_uplink(GW1, air(node.uplink(b"\x05", fport=3)))
        join = integration.JoinEvent.FromString((await next_event(app, "join"))[1])
        up = integration.UplinkEvent.FromString((await next_event(app, "up"))[1])
        assert up.deduplication_id == join.deduplication_id
        assert (up.data, up.f_port, up.device_info.dev_eui) == (b"\x05", 3, CLASS_C.dev_eui)
        assert up.rx_info[0].gateway_id == GW1
        await asyncio.sleep(0.2)  # past the class A lock: the command goes out as class C
        command = integration.DownlinkCommand(
            id=str(uuid.uuid4()), dev_eui=CLASS_C.dev_eui, f_port=20, data=b"\x77"
        )
        await app.publish(
            f"application/{app_id}/device/{CLASS_C.dev_eui}/command/down",
            command.SerializeToString(),
            qos=1,
        )
        txpk = await asyncio.wait_for(downlinks.get(), 5)
        assert txpk["imme"] is True
        assert node.downlink(phy_of(txpk), 0).payload == b"\x77"
        txack = integration.TxAckEvent.FromString((await next_event(app, "txack"))[1])
        assert txack.queue_item_id == command.id
        assert txack.tx_info.timing.HasField("immediately")


async def test_command_dev_eui_mismatch_is_ignored(mosquitto_broker: Broker) -> None:
    app_id = str(uuid.uuid4())
    netsim = Netsim(
        [CLASS_A, CLASS_C],
        broker_url=mosquitto_broker.url,
        config=fast_config(application_id=app_id),
    )
    async with application(mosquitto_broker, app_id) as app, netsim:
        topic = f"application/{app_id}/device/{CLASS_A.dev_eui}/command/down"
        wrong = {"devEui": CLASS_C.dev_eui, "fPort": 1, "data": "AQ=="}
        right = {"devEui": CLASS_A.dev_eui, "fPort": 2, "data": "Ag=="}
        await app.publish(topic, json.dumps(wrong), qos=1)
        await app.publish(topic, json.dumps(right), qos=1)
        assert netsim.mqtt is not None
        mqtt = netsim.mqtt
        await until(lambda: mqtt.commands >= 2)
        assert [i.f_port for i in netsim.server.queue(CLASS_A.dev_eui)] == [2]
        assert netsim.server.queue(CLASS_C.dev_eui) == []


async def test_events_survive_a_broker_restart(tmp_path: Path) -> None:
    """Events produced while the broker is away are published (PUBACKed) after the reconnect."""
    port = free_port()
    broker = start_mosquitto(port, directory=tmp_path)
    app_id = str(uuid.uuid4())
    netsim = Netsim([CLASS_A], broker_url=broker.url, config=fast_config(application_id=app_id))
    downlinks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    try:
        async with netsim:
            assert netsim.mqtt is not None
            mqtt = netsim.mqtt
            netsim.server.attach_gateway(GW1, lambda txpk, token: downlinks.put_nowait(txpk))
            node = FakeNode.for_device(CLASS_A)
            netsim.server.receive_uplink(GW1, air(node.join_request()))
            node.join_accept(phy_of(await asyncio.wait_for(downlinks.get(), 5)))
            netsim.server.receive_uplink(GW1, air(node.uplink(b"\x01", fport=2)))
            await until(lambda: mqtt.published == 2)  # join + up
            broker.stop()
            await until(lambda: not mqtt.connected.is_set())
            netsim.server.receive_uplink(GW1, air(node.uplink(b"\x02", fport=2)))
            await until(lambda: not mqtt._outbox.empty())
            broker = start_mosquitto(port, directory=tmp_path)
            await until(lambda: mqtt.published == 3, wait_s=20)  # the outage's event went out
            assert mqtt.dropped == 0
            async with application(broker, app_id) as app:
                netsim.server.receive_uplink(GW1, air(node.uplink(b"\x03", fport=2)))
                up = json.loads((await next_event(app, "up"))[1])
                assert base64.b64decode(up["data"]) == b"\x03" and up["fCnt"] == 2
    finally:
        broker.stop()
