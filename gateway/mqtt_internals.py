"""The one place the gateway reaches into aiomqtt's and paho-mqtt's private attributes.

Why at all: the lean receive path (gateway/bridge.py) takes what paho has already put in
aiomqtt's queue without a task per message, PUBACKs a batch with one socket write and writes a
chunk of retained QoS 0 twins as one write. aiomqtt 2.x has no public handle on its paho client
(needed for ``manual_ack_set``/``ack``, MQTT 3.1.1 §4.4 acks after commit), nor on its incoming
queue; paho 2.x writes each queued packet with its own ``send()``.

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
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

__all__ = [
    "TESTED",
    "incoming_queue",
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
    several MQTT 3.1.1 packets with one ``send()``; None when not supported or not MQTT 3.1.1
    (the packets built by hand in gateway/bridge.py are 3.1.1 ones)."""
    if not supported() or getattr(client, "_protocol", None) != paho.MQTTv311:
        return None
    queue = getattr(client, "_packet_queue", None)
    return queue if callable(queue) else None
