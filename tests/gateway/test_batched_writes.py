"""The bridge's batched writes against a real mosquitto: a batch's PUBACKs and its retained QoS 0
twins leave as one write each (gateway/bridge.py), and the broker must see exactly the packets
paho would have sent one by one (MQTT 3.1.1 §3.3 PUBLISH, §3.4 PUBACK), on MQTT 3.1.1 and on the
MQTT 5 session several instances use (``[mqtt] shared_group``; MQTT 5.0 §3.3, §3.4)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import pytest

from gateway import mqtt_internals as internals
from gateway.bridge import _publish_qos0_retained
from protocol import codec
from tests.gateway import events as ev
from tests.gateway.harness import mqtt_client, running_gateway, start, wait_for
from tests.helpers.procs import Broker

pytestmark = pytest.mark.broker


def test_publish_packet_framing_and_remaining_length() -> None:
    # §2.2.3: 127 fits one length byte, 128 needs two, 16,384 needs three
    for size, length_bytes in ((0, 1), (120, 1), (121, 2), (16_376, 2), (16_377, 3)):
        packet = _publish_qos0_retained("a/b/c", b"x" * size)
        assert packet[0] == 0x31  # PUBLISH, QoS 0, RETAIN
        remaining = 2 + 5 + size
        encoded = packet[1 : 1 + length_bytes]
        value = sum((b & 0x7F) << (7 * i) for i, b in enumerate(encoded))
        assert value == remaining
        assert all(b & 0x80 for b in encoded[:-1]) and not encoded[-1] & 0x80
        rest = packet[1 + length_bytes :]
        assert rest[:2] == (5).to_bytes(2, "big") and rest[2:7] == b"a/b/c"
        assert rest[7:] == b"x" * size


def test_mqtt5_publish_packet_has_an_empty_property_length() -> None:
    # MQTT 5.0 §3.3.2.3: the variable header ends with the property length (0: no properties)
    packet = _publish_qos0_retained("a/b", b"xyz", mqtt5=True)
    assert packet == b"\x31\x09\x00\x03a/b\x00xyz"
    assert _publish_qos0_retained("a/b", b"xyz") == b"\x31\x08\x00\x03a/bxyz"


# one instance on MQTT 3.1.1, and one of several: a shared subscription over MQTT 5
PROTOCOLS = [
    pytest.param({}, id="mqtt311"),
    pytest.param({"shared_group": "batched"}, id="mqtt5-shared"),
]


@pytest.mark.parametrize("mqtt", PROTOCOLS)
@pytest.mark.usefixtures("each_store")  # on SQLite and PostgreSQL
async def test_batched_twins_arrive_retained_and_exact(
    mosquitto_broker: Broker, tmp_path: Path, mqtt: dict[str, str]
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path, mqtt=mqtt) as gw:
        assert gw.gateway.bridge.client is not None
        inner = internals.paho_client(gw.gateway.bridge.client)
        assert inner.protocol == (paho.MQTTv5 if mqtt else paho.MQTTv311)
        assert internals.packet_writer(inner) is not None  # the one-write path, on both
        sizes = [1, 127, 128, 16_383, 16_384, 300_000]
        messages = [(f"{gw.base}/raw/{i}", bytes([i % 251]) * size) for i, size in enumerate(sizes)]
        gw.gateway.bridge.send_retained_qos0(messages)
        await asyncio.sleep(0.2)
        # a subscriber that comes later gets every one, retained, byte for byte (an empty
        # retained payload would clear the topic, §3.3.1.3, so sizes start at 1)
        async with mqtt_client(mosquitto_broker, f"{gw.base}/raw/#") as (_, got):
            await wait_for(lambda: len(got) == len(messages), "retained messages")
        assert sorted(got) == sorted(messages)


@pytest.mark.usefixtures("each_store")  # on SQLite and PostgreSQL
@pytest.mark.parametrize("mqtt", PROTOCOLS)
async def test_batch_of_devices_states_retained_and_every_uplink_acked(
    mosquitto_broker: Broker, tmp_path: Path, mqtt: dict[str, str]
) -> None:
    devices = [f"a84041000181c{i:03x}" for i in range(40)]
    async with running_gateway(mosquitto_broker, tmp_path, mqtt=mqtt) as gw:
        config, clock, app, base = gw.config, gw.clock, gw.app, gw.base
        async with mqtt_client(mosquitto_broker) as (client, _):
            for f_cnt in (1, 2):
                for index, dev_eui in enumerate(devices):
                    f_port, data = codec.encode(
                        "bin_status",
                        {"fill_percent": index + f_cnt, "temperature_c": 9, "battery_percent": 70},
                    )
                    doc = ev.up(app, dev_eui, f_cnt=f_cnt, f_port=f_port, data=data)
                    await client.publish(ev.topic(app, dev_eui, "up"), ev.dumps(doc), qos=1)
            await wait_for(lambda: gw.counter("processed") == 2 * len(devices), "all processed")
        await gw.gateway.flush()  # the last batch is committed and its twins published
        wanted = {
            f"{base}/devices/{dev_eui}/state": index + 2 for index, dev_eui in enumerate(devices)
        }
        async with mqtt_client(mosquitto_broker, f"{base}/devices/+/state") as (_, got):

            def latest() -> dict[str, object]:
                return {t: json.loads(p)["reported"]["fill_percent"] for t, p in got}

            await wait_for(lambda: latest() == wanted, "every device's latest retained state")
    # every uplink was acknowledged: the persistent session holds nothing to redeliver, so the
    # next uplink (delivered after anything the broker kept for the session) is the only one
    again = await start(config, clock, app, base)
    try:
        async with mqtt_client(mosquitto_broker) as (client, _):
            f_port, data = codec.encode(
                "bin_status", {"fill_percent": 50, "temperature_c": 9, "battery_percent": 70}
            )
            doc = ev.up(app, devices[0], f_cnt=3, f_port=f_port, data=data)
            await client.publish(ev.topic(app, devices[0], "up"), ev.dumps(doc), qos=1)
            await wait_for(lambda: again.counter("processed") >= 1, "the fresh uplink")
        assert again.counter("processed") == 1 and again.counter("duplicate") == 0
    finally:
        await again.stop()


@pytest.mark.usefixtures("each_store")  # on SQLite and PostgreSQL
async def test_acks_of_an_old_connection_are_not_sent(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        bridge = gw.gateway.bridge
        client = bridge.client
        assert client is not None
        queued = len(client._client._out_packet)
        bridge.ack_many(bridge.generation - 1, [1, 2, 3])
        bridge.ack_many(bridge.generation, [])
        assert len(client._client._out_packet) == queued
        async with aiomqtt.Client(
            mosquitto_broker.host, mosquitto_broker.port, identifier=f"t-{uuid.uuid4().hex[:8]}"
        ) as probe:
            await probe.publish(f"{gw.base}/probe", b"x", qos=1)
        assert gw.gateway.ready


def test_publisher_states_sends_what_state_sends() -> None:
    from gateway.config import PublishConfig
    from gateway.publish import Publisher
    from gateway.store import Device

    twins = [(Device(dev_eui=f"a84041000181c{i:03x}"), f"{{{i}}}".encode()) for i in range(3)]
    one_by_one: list[tuple[str, bytes, int, bool]] = []
    Publisher(PublishConfig(), lambda *m: one_by_one.append(m)).states([])
    for device, payload in twins:
        Publisher(PublishConfig(), lambda *m: one_by_one.append(m)).state(device, payload)
    fallback: list[tuple[str, bytes, int, bool]] = []
    Publisher(PublishConfig(), lambda *m: fallback.append(m)).states(twins)
    batched: list[list[tuple[str, bytes]]] = []
    Publisher(PublishConfig(), lambda *m: None, batched.append).states(twins)
    assert fallback == one_by_one and len(one_by_one) == 3
    assert batched == [[(topic, payload) for topic, payload, qos, retain in one_by_one]]
    assert all(qos == 0 and retain for _, _, qos, retain in one_by_one)


def test_availability_payloads_are_shared() -> None:
    """Every device's ``online`` is one object: a fleet's first uplinks queue one a device at
    once (gateway/publish.py ``_AVAILABILITY``), and the payload and its topic are all that
    waits; a state outside the known ones is still sent as it is."""
    from gateway.config import PublishConfig
    from gateway.publish import Publisher
    from gateway.store import Device

    sent: list[tuple[str, bytes, int, bool]] = []
    publisher = Publisher(PublishConfig(), lambda *m: sent.append(m))
    devices = [Device(dev_eui=f"a84041000181c{i:03x}", availability="online") for i in range(3)]
    odd = Device(dev_eui="a84041000181cfff", availability="sleeping")
    for device in [*devices, odd]:
        publisher.availability(device)
    assert [payload for _, payload, _, _ in sent] == [b"online"] * 3 + [b"sleeping"]
    assert sent[0][1] is sent[1][1] is sent[2][1]
    assert all(qos == 1 and retain for _, _, qos, retain in sent)
    assert sent[0][0] == f"citypack/devices/{devices[0].dev_eui}/availability"
