"""The one place the gateway reaches into aiomqtt's and paho-mqtt's private attributes.

Why at all: the lean receive path (gateway/bridge.py) takes what paho has already put in
aiomqtt's queue without a task per message, PUBACKs a batch with one socket write and writes a
chunk of retained QoS 0 twins as one write; and on MQTT 5 (several instances) paho's decoding of
each PUBLISH's properties is made cheaper (:func:`lean_publish_properties`); and the socket is
read 64 KB at a time (:func:`buffered_reads`), so one readable event reads every packet that
came with it instead of one. aiomqtt 2.x has no
public handle on its paho client (needed for ``manual_ack_set``/``ack``, MQTT 3.1.1 §4.4 acks
after commit), nor on its incoming queue; paho 2.x writes each queued packet with its own
``send()``.

Every accessor is checked against the versions it was written for (:data:`TESTED`); outside
them :func:`supported` is False and the bridge uses only public calls (paho's per-message
``ack``/``publish``, aiomqtt's ``messages`` iterator), slower but correct.
tests/gateway/test_mqtt_internals.py checks each accessor on the installed versions.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from importlib import metadata
from typing import Any, ClassVar

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = [
    "TESTED",
    "incoming_queue",
    "lean_publish_properties",
    "packet_writer",
    "paho_client",
    "supported",
    "version_in",
]

# distribution -> (lowest tested, first untested) release, as (major, minor)
TESTED: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "aiomqtt": ((2, 3), (2, 6)),
    "paho-mqtt": ((2, 1), (2, 3)),
}


def version_in(version: str, bounds: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    """``"2.5.1"`` within ``((2, 3), (2, 6))``: at least the first, below the second."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = bounds
    return low <= (major, minor) < high


@functools.cache
def supported() -> bool:
    """Whether the installed aiomqtt and paho-mqtt are versions these accessors were written
    and tested for."""
    try:
        return all(version_in(metadata.version(name), b) for name, b in TESTED.items())
    except metadata.PackageNotFoundError:
        return False


def paho_client(client: aiomqtt.Client) -> paho.Client:
    """aiomqtt's paho client (``Client._client``); always there in aiomqtt 2.x, whose own
    ``publish``/``subscribe`` are built on it."""
    inner = client._client
    if not isinstance(inner, paho.Client):
        raise TypeError("aiomqtt.Client has no paho client: an unsupported aiomqtt")
    return inner


def incoming_queue(client: aiomqtt.Client) -> asyncio.Queue[aiomqtt.Message] | None:
    """aiomqtt's queue of received messages (``Client._queue``), None when not supported."""
    queue = getattr(client, "_queue", None) if supported() else None
    return queue if isinstance(queue, asyncio.Queue) else None


def packet_writer(client: paho.Client) -> Callable[[int, bytes, int, int], Any] | None:
    """paho's packet queue (``Client._packet_queue(command, packet, mid, qos)``) for writing
    several packets with one ``send()``; None when not supported, or on a protocol other than
    MQTT 3.1.1 and 5 (gateway/bridge.py builds PUBACK and QoS 0 PUBLISH packets for those two)."""
    if not supported() or client.protocol not in (paho.MQTTv311, paho.MQTTv5):
        return None
    queue = getattr(client, "_packet_queue", None)
    return queue if callable(queue) else None


class _PublishProperties(Properties):
    """paho's ``Properties`` with its three constant tables built once, not per instance.

    ``Properties.__init__`` builds the property names, identifiers and types (about 60 entries)
    for every instance, and ``clear()`` (which ``unpack`` calls first) walks every name to
    delete the ones set. The tables are never written after ``__init__`` (paho 2.1-2.2
    ``properties.py``), so one copy serves every instance; ``clear`` deletes what the instance
    holds besides the tables, which is exactly the properties set on it."""

    _TABLES: ClassVar[dict[str, Any]] = {
        name: value
        for name, value in vars(Properties(PacketTypes.PUBLISH)).items()  # type: ignore[no-untyped-call]
        if name in ("types", "names", "properties")
    }

    def __init__(self, packetType: int) -> None:  # paho's parameter name
        state = self.__dict__
        state.update(self._TABLES)
        state["packetType"] = packetType

    def clear(self) -> None:
        state = self.__dict__
        for name in [n for n in state if n not in _PRIVATE]:
            del state[name]


_PRIVATE = frozenset(("packetType", "types", "names", "properties"))


@functools.cache
def lean_publish_properties() -> bool:
    """Have paho decode a received MQTT 5 PUBLISH's properties with :class:`_PublishProperties`.

    paho 2.2's ``_packet.decode_publish`` builds a ``Properties`` for every MQTT 5 PUBLISH; with
    a shared subscription (several instances) that was 16 % of a gateway's event loop (py-spy,
    30,000 events, paho's own ``Properties.__init__``). Swapped in paho's ``_packet`` module
    only, on the tested versions, once per process; True when it is in place. The objects are
    ``Properties`` instances with the same attributes: tests/gateway/test_mqtt_internals.py
    decodes PUBLISH packets carrying every PUBLISH property both ways and compares."""
    if not supported():
        return False
    try:
        from paho.mqtt import _packet
    except ImportError:  # paho 2.1 decodes in client.py: left as it is
        return False
    current = getattr(_packet, "Properties", None)
    if current is not Properties:
        return current is _PublishProperties
    setattr(_packet, "Properties", _PublishProperties)  # noqa: B010 - not exported: mypy
    return True


READ_SIZE = 65_536  # bytes asked of the socket at once (_BufferedSocket)


class _BufferedSocket:
    """A socket whose ``recv`` asks the kernel for ``READ_SIZE`` bytes at once and hands paho
    the small reads it makes out of that.

    paho 2.2 reads a packet in at least three ``recv`` calls (its first byte, each byte of its
    remaining length, its body: ``Client._packet_read``), each a system call, and one packet
    per ``loop_read``. ``pending()`` is how paho and aiomqtt learn that bytes are ready without
    the socket being readable (they call it for TLS sockets, aiomqtt's reader callback reads
    again while it is above 0): here it is what the buffer holds, so one readable event reads
    every packet that arrived with it. Everything else is the socket's."""

    __slots__ = ("_at", "_buffer", "_inner_pending", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""
        self._at = 0
        # a TLS socket's own pending(): looked up once, not for every packet
        self._inner_pending: Callable[[], int] | None = getattr(sock, "pending", None)

    def recv(self, size: int) -> bytes:
        buffer, at = self._buffer, self._at
        if at < len(buffer):
            end = min(at + size, len(buffer))
            self._at = end
            return buffer[at:end]
        data: bytes = self._sock.recv(max(size, READ_SIZE))  # BlockingIOError, b"" at EOF: paho's
        if len(data) <= size:
            self._buffer, self._at = b"", 0
            return data
        self._buffer, self._at = data, size
        return data[:size]

    def pending(self) -> int:
        inner = self._inner_pending
        return len(self._buffer) - self._at + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def buffered_reads(client: paho.Client) -> bool:
    """Have ``client`` read its socket through :class:`_BufferedSocket` from its next
    connection on (paho's ``Client._create_socket``, which ``reconnect`` calls); True when in
    place, False on versions this was not tested with."""
    if not supported():
        return False
    create = getattr(client, "_create_socket", None)
    if not callable(create):
        return False

    def buffered() -> Any:
        return _BufferedSocket(create())

    client._create_socket = buffered  # type: ignore[method-assign]
    return True
