"""gateway.mqtt_internals: every private attribute the bridge uses exists, with the type it
expects, on the installed aiomqtt and paho-mqtt; outside the tested versions the accessors
answer None so the bridge takes its public-API path."""

from __future__ import annotations

import array
import asyncio
import fcntl
import socket
import termios
import time
import uuid
from importlib import metadata

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from gateway import mqtt_internals as internals
from tests.helpers import procs


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
        inner = internals.paho_client(client)
        assert not internals.buffered_reads(inner)
        assert "_create_socket" not in vars(inner)  # paho's own method, untouched
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


class _CountingSocket:
    """A socket that counts the reads asked of the kernel."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reads = 0

    def recv(self, size: int) -> bytes:
        self.reads += 1
        return self.sock.recv(size)

    def fileno(self) -> int:
        return self.sock.fileno()


def test_buffered_socket_hands_out_the_stream_in_small_reads() -> None:
    """paho's read pattern (1 byte, 1 byte, the body: Client._packet_read) through the buffer
    gives back the exact stream, with a few kernel reads for many small ones; pending() says
    what is buffered (aiomqtt's reader reads again while it is above 0), a drained socket
    raises BlockingIOError as the socket does, and end of stream is b"" as it is."""
    writer, reader = socket.socketpair()
    reader.setblocking(False)
    counting = _CountingSocket(reader)
    wrapped = internals._BufferedSocket(counting)
    stream = bytes(range(256)) * 400  # 102,400 bytes: more than one READ_SIZE
    writer.sendall(stream)
    got = bytearray()
    small_reads = 0
    try:
        while True:
            for size in (1, 1, 875):
                part = wrapped.recv(size)
                assert 0 < len(part) <= size
                got += part
                small_reads += 1
            if small_reads == 3:
                assert wrapped.pending() > 0  # the rest of the first kernel read
    except BlockingIOError:
        pass
    assert bytes(got) == stream
    assert wrapped.pending() == 0
    assert counting.reads < small_reads / 20
    assert wrapped.fileno() == reader.fileno()  # everything else is the socket's
    writer.close()
    assert wrapped.recv(1) == b""
    reader.close()


async def test_buffered_reads_receive_every_message_in_order(
    mosquitto_broker: procs.Broker,
) -> None:
    """A real broker, MQTT 5 QoS 1, 875-byte payloads sent faster than they are read: every
    message arrives once, whole and in order, through the buffered socket."""
    count = 600
    topic = f"internals/{uuid.uuid4().hex}"
    sub = aiomqtt.Client(mosquitto_broker.host, mosquitto_broker.port,
                         protocol=aiomqtt.ProtocolVersion.V5)  # fmt: skip
    assert internals.buffered_reads(internals.paho_client(sub))
    async with sub:
        assert isinstance(internals.paho_client(sub).socket(), internals._BufferedSocket)
        await sub.subscribe(topic, qos=1)
        async with aiomqtt.Client(mosquitto_broker.host, mosquitto_broker.port) as pub:
            for n in range(count):
                await pub.publish(topic, n.to_bytes(4, "big") * 219, qos=1)
        received: list[int] = []
        async with asyncio.timeout(30):
            async for message in sub.messages:
                payload = message.payload
                assert isinstance(payload, bytes) and len(payload) == 876
                n = int.from_bytes(payload[:4], "big")
                assert payload == n.to_bytes(4, "big") * 219
                received.append(n)
                if len(received) == count:
                    break
    assert received == list(range(count))


def test_buffered_socket_adds_what_a_tls_socket_holds() -> None:
    """Over TLS the socket's own pending() (decrypted bytes not yet read) counts too, so
    aiomqtt's reader still reads them when the kernel has nothing more (paho issue 131)."""

    class _Tls:
        def __init__(self) -> None:
            self.chunks = [b"abcdef"]

        def recv(self, size: int) -> bytes:
            return self.chunks.pop(0)[:size]

        def pending(self) -> int:
            return 7

    wrapped = internals._BufferedSocket(_Tls())
    assert wrapped.pending() == 7
    assert wrapped.recv(2) == b"ab"
    assert wrapped.pending() == 4 + 7
    assert wrapped.recv(100) == b"cdef"
    assert wrapped.pending() == 7


async def test_one_readable_event_reads_every_packet_that_came_with_it(
    mosquitto_broker: procs.Broker,
) -> None:
    """The reason for the buffer (gateway/service.py ``_claim_burst``: a burst is what is
    waiting): messages the broker kept for a persistent session are all in the socket before
    the loop reads it (waited for with FIONREAD, the loop held), and one turn of the loop
    puts every one of them in aiomqtt's queue. Without the buffer paho reads one packet a
    readable event, and the queue would hold one."""
    count = 15  # under the broker's in-flight window (tests/helpers/procs.py: 100)
    topic = f"b/{uuid.uuid4().hex[:8]}"
    payload = b"x" * 60
    size = 2 + 2 + len(topic) + 2 + len(payload)  # PUBLISH QoS 1, remaining length < 128
    assert size - 2 < 128
    identifier = f"burst-{uuid.uuid4().hex[:8]}"
    host, port = mosquitto_broker.host, mosquitto_broker.port

    def client() -> aiomqtt.Client:
        return aiomqtt.Client(host, port, identifier=identifier, clean_session=False)

    async with client() as first:  # the persistent session and its subscription
        await first.subscribe(topic, qos=1)
    async with aiomqtt.Client(host, port) as pub:
        for _ in range(count):
            await pub.publish(topic, payload, qos=1)
    sub = client()
    assert internals.buffered_reads(internals.paho_client(sub))
    async with sub:
        queue = internals.incoming_queue(sub)
        assert queue is not None
        sock = internals.paho_client(sub).socket()
        assert sock is not None
        waiting = array.array("i", [0])
        deadline = time.monotonic() + 10
        while True:  # the loop is held: nothing is read meanwhile
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, waiting)
            if queue.qsize() + waiting[0] // size >= count:
                break
            assert time.monotonic() < deadline, "the broker did not send the kept messages"
            time.sleep(0.01)  # noqa: ASYNC251 - held on purpose: no read may run
        await asyncio.sleep(0)  # one turn: one readable event, if any bytes were left
        assert queue.qsize() == count
