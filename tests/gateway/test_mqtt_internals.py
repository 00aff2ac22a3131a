"""gateway.mqtt_internals: every private attribute the bridge uses exists, with the type it
expects, on the installed aiomqtt and paho-mqtt; outside the tested versions the accessors
answer None so the bridge takes its public-API path."""

from __future__ import annotations

import asyncio
from importlib import metadata

import aiomqtt
import paho.mqtt.client as paho
import pytest

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
    # the hand-built packets are MQTT 3.1.1 ones: none for an MQTT 5 session
    assert (
        internals.packet_writer(internals.paho_client(_client(aiomqtt.ProtocolVersion.V5))) is None
    )


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
