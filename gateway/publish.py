"""Normalised MQTT topics (ARCHITECTURE.md "Normalised MQTT") and Home Assistant discovery.

Under ``[publish] base_topic`` (default ``citypack``):

- ``devices/{devEui}/state``: the twin as JSON, retained, QoS 0 (superseded by the next one);
- ``devices/{devEui}/availability``: ``online`` / ``offline``, retained, QoS 1;
- ``devices/{devEui}/set``: commands in, ``{"message": ..., "fields": {...}}``;
- ``events/{type}``: derived events as JSON (not retained, QoS 1);
- ``bridge/{client_id}/state``: ``online`` retained while this instance is connected; its last
  will sets ``offline`` (one topic per instance, so one stopping says nothing about the others).

Home Assistant MQTT discovery (HA docs, MQTT Discovery) is opt-in (``[publish] homeassistant``):
one retained config per entity under ``<discovery_prefix>/<component>/<devEui>/<object>/config``,
with availability from both this instance's ``bridge/{client_id}/state`` and the device's own
topic (``availability_mode: all``), as zigbee2mqtt does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gateway.config import PublishConfig
from gateway.store.base import Device, EventRecord

__all__ = ["Publisher", "SendFn", "SendRetainedFn"]

# one payload object per availability state: a fleet's first uplinks put every device's
# ``online`` in the outbox at once (100,000 at city scale), each an object of its own before
# (issue 17: the transient that fragments the heap, gateway/README.md section 8)
_AVAILABILITY = {state: state.encode() for state in ("online", "offline", "unknown")}

SendFn = Callable[[str, bytes, int, bool], None]
# publishes a batch of (topic, payload) retained at QoS 0 (the bridge writes them at once)
SendRetainedFn = Callable[[list[tuple[str, bytes]]], None]

_JSON = json.JSONEncoder(separators=(",", ":"), default=str)

# (component, object id, state field, extra config)
_HA_BIN: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("sensor", "fill", "fill_percent", {"unit_of_measurement": "%", "state_class": "measurement"}),
    (
        "sensor",
        "temperature",
        "temperature_c",
        {"device_class": "temperature", "unit_of_measurement": "°C", "state_class": "measurement"},
    ),
    (
        "sensor",
        "battery",
        "battery_percent",
        {"device_class": "battery", "unit_of_measurement": "%", "entity_category": "diagnostic"},
    ),
    ("binary_sensor", "full", "full", {}),
    ("binary_sensor", "fire", "fire", {"device_class": "heat"}),
    ("binary_sensor", "tilt", "tilt", {"device_class": "tamper"}),
)
_HA_LAMP: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("sensor", "dim_level", "dim_level", {"unit_of_measurement": "%"}),
    (
        "sensor",
        "power",
        "active_power_w",
        {"device_class": "power", "unit_of_measurement": "W", "state_class": "measurement"},
    ),
    (
        "sensor",
        "energy",
        "active_energy_wh",
        {"device_class": "energy", "unit_of_measurement": "Wh", "state_class": "total_increasing"},
    ),
    ("binary_sensor", "lamp_failure", "lamp_failure", {"device_class": "problem"}),
)


class PublishListener(Protocol):
    """Told of what the publisher sends, after it sent it (the dashboard's live stream)."""

    def event(self, record: EventRecord) -> None: ...

    def device(self, device: Device) -> None: ...


class Publisher:
    def __init__(
        self,
        config: PublishConfig,
        send: SendFn,
        send_retained: SendRetainedFn | None = None,
        *,
        client_id: str = "citypack",
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.base = config.base_topic
        self._send = send
        self._send_retained = send_retained
        self._state_prefix = f"{self.base}/devices/"
        self._announced: set[str] = set()
        self._listeners: list[PublishListener] = []

    def add_listener(self, listener: PublishListener) -> None:
        """``listener`` hears every derived event and every device whose twin or availability
        was published, in the order they went out."""
        self._listeners.append(listener)

    # topics
    def state_topic(self, dev_eui: str) -> str:
        return f"{self.base}/devices/{dev_eui}/state"

    def availability_topic(self, dev_eui: str) -> str:
        return f"{self.base}/devices/{dev_eui}/availability"

    def set_subscription(self) -> str:
        return f"{self.base}/devices/+/set"

    def bridge_topic(self) -> str:
        return f"{self.base}/bridge/{self.client_id}/state"

    def set_dev_eui(self, topic: str) -> str | None:
        """The devEui of a ``devices/{devEui}/set`` topic, else None."""
        prefix = f"{self.base}/devices/"
        if topic.startswith(prefix) and topic.endswith("/set"):
            middle = topic[len(prefix) : -len("/set")]
            if middle and "/" not in middle:
                return middle.lower()
        return None

    # messages
    def state(self, device: Device, payload: bytes | None = None) -> None:
        """Publish the twin (``payload`` when the caller already encoded it). QoS 0: the next
        update supersedes a lost one, and a PUBACK per uplink costs a third of the throughput."""
        if payload is None:
            payload = device.twin_json()
        self._send(self.state_topic(device.dev_eui), payload, 0, True)
        if self.config.homeassistant and device.dev_eui not in self._announced:
            self.discovery(device)
        for listener in self._listeners:
            listener.device(device)

    def states(self, twins: list[tuple[Device, bytes]]) -> None:
        """Publish a batch's twins (each device once, already encoded) as :meth:`state` does,
        handed to ``send_retained`` together (the bridge writes them at once)."""
        prefix = self._state_prefix
        messages = [(f"{prefix}{device.dev_eui}/state", payload) for device, payload in twins]
        if self._send_retained is not None:
            self._send_retained(messages)
        else:
            for topic, payload in messages:
                self._send(topic, payload, 0, True)
        if self.config.homeassistant:
            for device, _ in twins:
                if device.dev_eui not in self._announced:
                    self.discovery(device)
        for listener in self._listeners:
            for device, _ in twins:
                listener.device(device)

    def availability(self, device: Device) -> None:
        state = device.availability
        payload = _AVAILABILITY.get(state) or state.encode()
        self._send(self.availability_topic(device.dev_eui), payload, 1, True)
        for listener in self._listeners:
            listener.device(device)

    def event(self, event: EventRecord) -> None:
        doc = {"type": event.type, "dev_eui": event.dev_eui, "at": event.at, **event.data}
        self._send(f"{self.base}/events/{event.type}", _JSON.encode(doc).encode(), 1, False)
        for listener in self._listeners:
            listener.event(event)

    def watched(self) -> bool:
        """Whether a listener wants device changes now: one with a ``watching`` attribute (the
        dashboard's stream hub: while a page is open) says so, any other always does. With
        several instances, another instance's device changes are then read at once, not when
        needed (gateway/fleet_sync.py)."""
        return any(getattr(listener, "watching", True) for listener in self._listeners)

    def heard_elsewhere(
        self, events: Sequence[EventRecord] = (), devices: Sequence[Device] = ()
    ) -> None:
        """Tell the listeners (the live stream) of events and device changes another gateway
        instance processed and published; nothing is sent on MQTT (that instance did)."""
        for listener in self._listeners:
            for event in events:
                listener.event(event)
            for device in devices:
                listener.device(device)

    def clear(self, device: Device) -> None:
        """Remove the device's retained topics: a zero-length retained message deletes the
        retained one (MQTT 3.1.1 §3.3.1.3, MQTT 5 §3.3.1.3), discovery configs included (Home
        Assistant removes the entities). For a decommissioned device."""
        self._send(self.state_topic(device.dev_eui), b"", 1, True)
        self._send(self.availability_topic(device.dev_eui), b"", 1, True)
        entities = {"bin": _HA_BIN, "lamp": _HA_LAMP}.get(device.kind, ())
        if self.config.homeassistant:
            for component, object_id, _, _ in entities:
                where = f"{component}/{device.dev_eui}/{object_id}"
                self._send(f"{self.config.discovery_prefix}/{where}/config", b"", 1, True)
        self._announced.discard(device.dev_eui)
        for listener in self._listeners:
            listener.device(device)

    def discovery(self, device: Device) -> None:
        entities = {"bin": _HA_BIN, "lamp": _HA_LAMP}.get(device.kind)
        if entities is None:
            return
        self._announced.add(device.dev_eui)
        for component, object_id, key, extra in entities:
            source = "derived" if key == "full" else "reported"
            if component == "binary_sensor":
                template = f"{{{{ 'ON' if value_json.{source}.{key} else 'OFF' }}}}"
            else:
                template = f"{{{{ value_json.{source}.{key} }}}}"
            config = {
                "name": object_id.replace("_", " "),
                "unique_id": f"citypack_{device.dev_eui}_{object_id}",
                "state_topic": self.state_topic(device.dev_eui),
                "value_template": template,
                "availability": [
                    {"topic": self.bridge_topic()},
                    {"topic": self.availability_topic(device.dev_eui)},
                ],
                "availability_mode": "all",
                "device": {
                    "identifiers": [f"citypack_{device.dev_eui}"],
                    "name": device.name or device.dev_eui,
                    "manufacturer": "citypack",
                    "model": device.kind,
                },
                "origin": {"name": "citypack"},
                **extra,
            }
            topic = (
                f"{self.config.discovery_prefix}/{component}/{device.dev_eui}/{object_id}/config"
            )
            self._send(topic, _JSON.encode(config).encode(), 1, True)
