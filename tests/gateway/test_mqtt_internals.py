"""gateway.mqtt_internals: every private attribute the bridge uses exists, with the type it
expects, on the installed aiomqtt and paho-mqtt; outside the tested versions the accessors
answer None so the bridge takes its public-API path."""

from __future__ import annotations

import asyncio
from importlib import metadata

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from gateway import mqtt_internals as internals


def _client(protocol: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
    # not connected: only the objects aiomqtt builds in its constructor are looked at
    return aiomqtt.Client("127.0.0.1", 1, identifier="internals-test", protocol=protocol)


def test_the_installed_versions_are_the_tested_ones() -> None:
    for name, bounds in internals.TESTED.items():
        assert internals.version_in(metadata.version(name), bounds), name
    assert internals.supported()


@pytest.mark.parametrize(
    ("version", "inside"),
    [("2.5.1", True), ("2.3", True), ("2.6.0", False), ("2.2.9", False), ("3.0", False)],
)
def test_version_bounds(version: str, inside: bool) -> None:
    assert internals.version_in(version, ((2, 3), (2, 6))) is inside
    assert internals.version_in("not-a-version", ((2, 3), (2, 6))) is False


async def test_accessors_on_the_installed_libraries() -> None:
    client = _client(aiomqtt.ProtocolVersion.V311)
    inner = internals.paho_client(client)
    assert isinstance(inner, paho.Client)
    assert isinstance(internals.incoming_queue(client), asyncio.Queue)
    writer = internals.packet_writer(inner)
    assert writer is not None and callable(writer)
    # the bridge builds MQTT 3.1.1 and MQTT 5 packets (a shared subscription is MQTT 5); none
    # for MQTT 3.1, whose packets it does not build
    v5 = internals.paho_client(_client(aiomqtt.ProtocolVersion.V5))
    assert callable(internals.packet_writer(v5))
    v31 = internals.paho_client(_client(aiomqtt.ProtocolVersion.V31))
    assert internals.packet_writer(v31) is None


async def test_unsupported_versions_use_public_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(internals.TESTED, "paho-mqtt", ((9, 0), (9, 1)))
    internals.supported.cache_clear()
    try:
        assert not internals.supported()
        client = _client(aiomqtt.ProtocolVersion.V311)
        assert internals.incoming_queue(client) is None
        assert internals.packet_writer(internals.paho_client(client)) is None
    finally:
        internals.supported.cache_clear()


def _publish_v5(properties: Properties | None) -> bytes:
    """The variable header and payload of an MQTT 5 QoS 1 PUBLISH (what follows the fixed
    header; MQTT 5.0 §3.3.2), with ``properties`` packed by paho itself."""
    topic = b"application/a/device/0102030405060708/event/up"
    packed = properties.pack() if properties is not None else b"\x00"
    return len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big") + packed + b'{"x":1}'


def _every_publish_property() -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = 60
    props.ContentType = "application/json"
    props.ResponseTopic = "reply/here"
    props.CorrelationData = b"\x01\x02\x03"
    props.UserProperty = [("city", "Aarhus"), ("kind", "bin")]
    props.SubscriptionIdentifier = [5, 70000]
    props.TopicAlias = 3
    return props


@pytest.mark.parametrize("with_properties", [False, True])
def test_lean_publish_properties_decode_what_paho_decodes(with_properties: bool) -> None:
    from paho.mqtt import _packet

    packet = _publish_v5(_every_publish_property() if with_properties else None)
    original = _packet.Properties
    try:
        _packet.Properties = Properties  # paho's own, whatever an earlier test installed
        expected = _packet.decode_publish(0x32, packet, paho.MQTTv5)
        internals.lean_publish_properties.cache_clear()
        assert internals.lean_publish_properties()
        assert _packet.Properties is not Properties
        got = _packet.decode_publish(0x32, packet, paho.MQTTv5)
    finally:
        _packet.Properties = original
        internals.lean_publish_properties.cache_clear()
    assert isinstance(got.properties, Properties)
    assert (got.topic, got.mid, got.payload) == (expected.topic, expected.mid, expected.payload)
    assert got.properties.json() == expected.properties.json()
    assert got.properties.pack() == expected.properties.pack()
    if with_properties:
        assert got.properties.UserProperty == [("city", "Aarhus"), ("kind", "bin")]
        assert got.properties.SubscriptionIdentifier == [5, 70000]
    # each instance starts empty (the tables are shared, the properties are not), and paho's
    # checks on setting a property still apply
    fresh = type(got.properties)(PacketTypes.PUBLISH)
    assert fresh.json() == {}
    with pytest.raises(MQTTException):
        fresh.SessionExpiryInterval = 1  # not a PUBLISH property
    fresh.unpack(_every_publish_property().pack())
    fresh.unpack(b"\x00")  # unpack clears what was there
    assert fresh.json() == {}
