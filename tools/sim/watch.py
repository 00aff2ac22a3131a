"""Feed the demo's :class:`~tools.sim.view.CityState` from MQTT, as an outside observer would.

It subscribes to the ChirpStack v4 topics (``application/+/device/+/event/+`` and
``.../command/down``, reference/chirpstack.md §1, §3) and to the gateway's normalised topics
(``citypack/devices/+/state``, ``citypack/events/+``; ARCHITECTURE.md "Normalised MQTT"). It
decodes application payloads with ``protocol.codec`` when that is installed, so the view shows
what actually went over the air and what the gateway made of it, nothing it guessed.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import secrets
from collections.abc import Callable
from typing import Any

import aiomqtt

from tools.sim.view import CityState

_REPORTED_KEYS = {"bin": "fill_percent", "lamp": "dim_level"}


def _codec() -> Any | None:
    try:
        return importlib.import_module("protocol.codec")
    except ImportError:
        return None


def _decode(fport: int, data: bytes, direction: str) -> tuple[str, dict[str, Any]] | None:
    codec = _codec()
    if codec is None:
        return None
    try:
        decoded = codec.decode(fport, data, direction)
    except Exception:  # ProtocolError subclasses; the view must not stop on a bad frame
        return None
    return str(decoded.message), dict(decoded.fields)


def _reported(twin: dict[str, Any]) -> dict[str, Any]:
    for key in ("reported", "state"):
        inner = twin.get(key)
        if isinstance(inner, dict):
            return inner
    return twin


class MqttWatcher:
    """Subscribes and updates ``state`` until cancelled."""

    def __init__(
        self,
        state: CityState,
        *,
        host: str,
        port: int,
        base_topic: str = "citypack",
        on_gateway_event: Callable[[str, str], None] | None = None,
    ):
        self.state = state
        self.on_gateway_event = on_gateway_event  # (type, dev_eui): outcome accounting
        self.host = host
        self.port = port
        self.base_topic = base_topic

    async def run(self) -> None:
        identifier = f"citypack-demo-view-{secrets.token_hex(4)}"  # one per viewer
        async with aiomqtt.Client(self.host, self.port, identifier=identifier) as client:
            await client.subscribe("application/+/device/+/event/+")
            await client.subscribe("application/+/device/+/command/down")
            await client.subscribe(f"{self.base_topic}/devices/+/state")
            await client.subscribe(f"{self.base_topic}/events/+")
            async for message in client.messages:
                payload = message.payload
                if not isinstance(payload, bytes | bytearray):
                    continue
                with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                    self.handle(str(message.topic), json.loads(payload))

    def handle(self, topic: str, body: Any) -> None:
        """One MQTT message (already JSON-decoded); ignores what it does not understand."""
        parts = topic.split("/")
        state = self.state
        if parts[0] == "application" and len(parts) >= 6 and isinstance(body, dict):
            dev_eui = parts[3]
            if parts[4] == "event":
                self._event(parts[5], dev_eui, body)
            elif parts[4] == "command" and parts[5] == "down":
                self._command_down(dev_eui, body)
            return
        if parts[0] != self.base_topic:
            return
        if parts[1] == "devices" and len(parts) == 4 and parts[3] == "state":
            row = state.nodes.get(parts[2])
            if row is not None and isinstance(body, dict):
                reported = _reported(body)
                value = reported.get(_REPORTED_KEYS[row.kind])
                if isinstance(value, int | float):
                    row.reported_value = float(value)
                mode = reported.get("mode")
                if isinstance(mode, str):
                    row.mode = mode
        elif parts[1] == "events" and len(parts) == 3 and isinstance(body, dict):
            self._gateway_event(parts[2], body)

    def _gateway_event(self, kind: str, body: dict[str, Any]) -> None:
        """A derived event of the gateway (``citypack/events/{type}``): the city's story."""
        state = self.state
        eui = str(body.get("dev_eui") or "")
        who = state.name_of(eui) if eui else ""
        row = state.nodes.get(eui)
        state.count(f"gateway_event_{kind}")
        if self.on_gateway_event is not None and eui:
            self.on_gateway_event(kind, eui)
        if kind.startswith("command_"):
            state.command(
                str(body.get("id", "")),
                eui,
                str(body.get("message") or ""),
                kind.removeprefix("command_"),
                str(body.get("error") or ""),
            )
        elif kind == "bin_full":
            state.event(f"{who} is full ({body.get('fill_percent')} %): on the collection list")
        elif kind == "bin_pickup":
            before, after = body.get("fill_before"), body.get("fill_percent")
            state.event(f"{who} emptied ({before} % → {after} %)")
            if row is not None and row.alarm == "tilt":
                row.alarm = ""
        elif kind == "bin_fire":
            if row is not None:
                row.alarm = "fire"
            state.event(f"ALARM fire in {who} ({body.get('temperature_c')} °C)")
        elif kind == "bin_tilt":
            if row is not None:
                row.alarm = "tilt"
            state.event(f"ALARM {who} knocked over")
        elif kind in ("lamp_presence", "config_applied", "device_joined"):
            return  # many and alike: counted, shown in the summaries
        else:  # offline/online, lamp_failure, device_discovered, decommissioned, ...
            state.event(f"gateway: {kind.replace('_', ' ')} {who}".rstrip())

    def _event(self, kind: str, dev_eui: str, body: dict[str, Any]) -> None:
        state = self.state
        row = state.nodes.get(dev_eui)
        if kind == "join":
            state.count("joins")
            if row is not None:
                row.joined = True
        elif kind == "up":
            state.count("uplinks_published")
            if row is None:
                return
            row.joined = True
            row.uplinks += 1
            row.last_uplink = state.sim_time
            fport = int(body.get("fPort", 0))
            data = base64.b64decode(str(body.get("data", "")), validate=True) if fport else b""
            decoded = _decode(fport, data, "up") if fport else None
            if decoded is None:
                return
            message, fields = decoded
            key = _REPORTED_KEYS[row.kind]
            if isinstance(fields.get(key), int | float):
                row.reported_value = float(fields[key])
            if message == "bin_status" and not fields.get("fire") and row.alarm == "fire":
                row.alarm = ""
        elif kind == "log":
            state.count("network_logs")
            state.event(f"network log {body.get('code')} {state.name_of(dev_eui)}")

    def _command_down(self, dev_eui: str, body: dict[str, Any]) -> None:
        """A command handed to ChirpStack; its states come from the gateway's command events."""
        self.state.count("commands_sent")
