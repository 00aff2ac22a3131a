"""OS2iot: uplinks pushed by an OS2iot data target, and commands sent through OS2iot's API.

In an OS2iot city ChirpStack belongs to OS2iot (docs/os2iot.md): devices, downlinks and
multicast groups go through OS2iot's API, and other systems receive uplinks through OS2iot
data targets. ``[os2iot]`` (gateway/config.py :class:`Os2iotConfig`) chooses:

**Ingest.** ``ingest = "mqtt"`` (preferred) reads ChirpStack's MQTT with read-only access, as
everywhere else: at least once, acknowledged after the commit. ``ingest = "http_push"`` takes
``POST /api/v1/ingest/os2iot`` from an OS2iot HTTP-push data target connected *without* a payload
decoder, so the body is the raw ChirpStack ``up`` JSON. The request is authenticated by the
``Authorization`` value OS2iot sends verbatim (``push_authorization_file``), not by the API's
bearer token; it goes through the same parser, dedup, dead letters and rules as an MQTT message
and is answered 200 only once committed (503 while the store cannot commit; 422 for a body that
is not an ``up`` event, kept as a dead letter with the reason). OS2iot pushes **at
most once, with no retry**: an uplink pushed while the gateway is down or not ready is lost to
it, and shows as an ERROR row in the data target's log (``GET /datatarget-log/:id``).

**Downlinks.** With ``downlinks = true`` a command is handed to ``POST /iot-device/:id/downlink``
(hex data, port, confirmed flag; the OS2iot id found from the DevEUI with ``/search`` and
cached). OS2iot answers an empty 201 and never says which queue item it made, so the command's
state is read back by polling the device's pending queue and ``historicalDownlink``: a row with
the command's payload and port, created after the hand-over, that has ``sendAt`` is "sent"; with
``acknowledged`` true "acknowledged", false a nack (failed). "Applied" comes from the node's
``command_result`` uplink as everywhere. Invariant 4 (one downlink per device in ChirpStack's
queue) holds as with MQTT: the next command waits until the handed-over one left the queue. Any
ChirpStack error reaches us as OS2iot's 500 "Could not send to chirpstack, try again later.":
the command stays queued and is retried with a growing back-off. OS2iot does not track expired
items (they stay "pending"), so when a handed-over command expires here the device's OS2iot
queue is flushed before the next command goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway import chirpstack as cs
from gateway.config import Os2iotConfig, read_secret
from gateway.errors import InvalidEvent
from gateway.lazy import lazy_import
from gateway.store.base import TERMINAL_STATES, CommandRecord

if TYPE_CHECKING:
    import httpx

    from gateway.service import Gateway
else:
    # at the first OS2iot client (gateway/lazy.py): httpx and what it imports (its command line's
    # click, rich and pygments among them) are ~3 MB of a gateway that has no [os2iot] (issue 17)
    httpx = lazy_import("httpx")

__all__ = ["Os2iotClient", "Os2iotDownlinks", "Os2iotError", "ingest_router"]

INGEST_PATH = "/api/v1/ingest/os2iot"
# Pushed uplinks held in memory while the store cannot commit (answered 503 ``not_committed``,
# committed once it can: OS2iot never pushes one again). MQTT's input is bounded by the broker's
# in-flight window; a push has none, so past this many a push is refused unprocessed and the
# memory a long outage takes stays bounded: 2.8-2.9 KB of RSS each held (measured with 3,950
# full-size ChirpStack events of 1,021 B from distinct devices), so ~28 MB, ~90 s of a
# 100,000-device city's uplinks.
HELD_PUSHES_MAX = 10_000
_CLOCK_SKEW_S = 5.0  # OS2iot's createdAt vs our hand-over time (two machines' clocks)


class Os2iotError(Exception):
    """OS2iot could not be reached or refused a call; ``retry`` says whether to try again."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Os2iotClient:
    """The calls the gateway makes (async; the API key only in the ``X-API-KEY`` header)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout_s: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = url.rstrip("/")
        self.base_url = base if base.endswith("/api/v1") else base + "/api/v1"
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"X-API-KEY": api_key},
            timeout=timeout_s,
            transport=transport,
        )
        self._ids: dict[str, int] = {}

    def __repr__(self) -> str:  # never the key
        return f"Os2iotClient({self.base_url!r})"

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; unreachable, 5xx and a refused key raise :class:`Os2iotError`."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Os2iotError(f"OS2iot unreachable: {type(exc).__name__}", retry=True) from None
        if response.status_code >= 500:
            raise Os2iotError(f"OS2iot {response.status_code}: {_text(response)}", retry=True)
        if response.status_code in (401, 403):
            raise Os2iotError(f"OS2iot refused the API key ({response.status_code})", retry=True)
        return response

    async def device_id(self, dev_eui: str) -> int | None:
        """The OS2iot id of a DevEUI (``/search``, case-insensitive), cached once found."""
        cached = self._ids.get(dev_eui)
        if cached is not None:
            return cached
        response = await self.call(
            "GET", "/search", params={"q": dev_eui, "limit": 20, "offset": 0}
        )
        if response.status_code != 200:
            raise Os2iotError(f"OS2iot search: {response.status_code}", retry=True)
        for hit in response.json().get("data", []):
            eui = hit.get("deviceEUI")
            if hit.get("type") == "IoTDevice" and isinstance(eui, str) and eui.lower() == dev_eui:
                self._ids[dev_eui] = int(hit["id"])
                return self._ids[dev_eui]
        return None

    async def send(self, device_id: int, data: bytes, f_port: int, confirmed: bool) -> None:
        body = {"data": data.hex(), "port": f_port, "confirmedDownlink": confirmed}
        response = await self.call("POST", f"/iot-device/{device_id}/downlink", json=body)
        if response.status_code != 201:
            raise Os2iotError(
                f"OS2iot downlink: {response.status_code} {_text(response)}", retry=False
            )

    async def rows(self, device_id: int) -> list[dict[str, Any]]:
        """The device's pending and sent downlinks (25 of each at most, as OS2iot lists them)."""
        out: list[dict[str, Any]] = []
        for path in ("downlink", "historicalDownlink"):
            response = await self.call("GET", f"/iot-device/{device_id}/{path}")
            if response.status_code != 200:
                raise Os2iotError(f"OS2iot {path}: {response.status_code}", retry=True)
            rows = response.json()
            out += [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
        return out

    async def flush(self, device_id: int) -> None:
        await self.call("POST", f"/iot-device/{device_id}/flushDownlinkQueue")


def _text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:120]
    return str(body.get("message") if isinstance(body, dict) else body)[:120]


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return None


def _row_of(row: dict[str, Any], command: CommandRecord, since: float) -> bool:
    """Whether an OS2iot downlink row can be this command: its payload and port, created after
    its hand-over (OS2iot's rows carry no id, docs/os2iot.md §3.2)."""
    return (
        row.get("payload") == command.data.hex()
        and row.get("port") == command.f_port
        and (_epoch(row.get("createdAt")) or 0.0) >= since - _CLOCK_SKEW_S
    )


@dataclass
class _Handed:
    device_id: int
    since: float  # our clock at the hand-over
    row: str = ""  # OS2iot's createdAt of the row matched to it


class Os2iotDownlinks:
    """Hands commands to OS2iot and reads their state back (see the module docstring)."""

    def __init__(
        self,
        config: Os2iotConfig,
        client: Os2iotClient,
        gateway: Gateway,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.client = client
        self.gateway = gateway
        self.clock = clock
        self.log = gateway.log
        self._handed: dict[str, _Handed] = {}  # command id -> hand-over
        self._retry_at: dict[str, float] = {}  # dev_eui -> monotonic time to try again
        self._backoff: dict[str, float] = {}
        self._to_flush: set[str] = set()

    def waiting_for_retry(self, dev_eui: str) -> bool:
        return time.monotonic() < self._retry_at.get(dev_eui, 0.0)

    async def dispatch(self, command: CommandRecord, *, look_first: bool = False) -> bool:
        """Hand one command to OS2iot; True once it is in ChirpStack's queue behind OS2iot.

        ``look_first``: the command was handed over before (a restart, or a call whose answer
        was lost), so OS2iot's rows are searched for it before it is sent again. A call that
        fails without an answer is settled the same way. On False the command was not enqueued
        and the device waits out its back-off (the poll loop kicks it again)."""
        dev_eui = command.dev_eui
        since = command.published_at if command.published_at is not None else self.clock()
        try:
            device_id = await self.client.device_id(dev_eui)
            if device_id is None:
                raise Os2iotError(f"{dev_eui} is not a device in OS2iot", retry=True)
            if look_first and await self._enqueued(command, device_id, since):
                self._handed[command.id] = _Handed(device_id, since)
                return True
            if dev_eui in self._to_flush:  # an expired item may still sit in ChirpStack's queue
                await self.client.flush(device_id)
                self._to_flush.discard(dev_eui)
            try:
                await self.client.send(device_id, command.data, command.f_port, command.confirmed)
            except Os2iotError as exc:
                # no answer (time-out, connection lost): OS2iot may have enqueued it anyway
                lost = exc.retry and "unreachable" in str(exc)
                if lost and await self._enqueued(command, device_id, since):
                    self._handed[command.id] = _Handed(device_id, since)
                    return True
                raise
        except Os2iotError as exc:
            delay = min(
                self._backoff.get(dev_eui, self.config.retry_min_s / 2) * 2,
                self.config.retry_max_s,
            )
            self._backoff[dev_eui] = delay
            self._retry_at[dev_eui] = time.monotonic() + delay
            self.log.warning(
                "os2iot downlink not handed over; will retry",
                extra={
                    "id": command.id,
                    "dev_eui": dev_eui,
                    "error": str(exc),
                    "retry_in_s": delay,
                },
            )
            return False
        self._backoff.pop(dev_eui, None)
        self._retry_at.pop(dev_eui, None)
        self._handed[command.id] = _Handed(device_id, since)
        return True

    async def _enqueued(self, command: CommandRecord, device_id: int, since: float) -> bool:
        """Whether OS2iot holds a row of this command (payload, port, created since ``since``)."""
        rows = await self.client.rows(device_id)
        return any(_row_of(r, command, since) for r in rows)

    def _tracked(self) -> list[CommandRecord]:
        """Commands handed to OS2iot whose state may still change there (also after a restart:
        every active command with ``published_at`` set)."""
        out = []
        for command in self.gateway.commands.active.values():
            if command.published_at is None or command.state in TERMINAL_STATES:
                continue
            if command.state == "acknowledged" or (
                command.state == "sent" and not command.confirmed
            ):
                continue  # nothing more comes from OS2iot; "applied" comes from the node
            out.append(command)
        return out

    async def poll_once(self) -> None:
        """Read back the state of every tracked command (one pass)."""
        for command in self._tracked():
            handed = self._handed.get(command.id)
            try:
                if handed is None:  # handed over before a restart
                    device_id = await self.client.device_id(command.dev_eui)
                    if device_id is None:
                        continue
                    since = command.published_at or self.clock()
                    handed = self._handed[command.id] = _Handed(device_id, since)
                rows = await self.client.rows(handed.device_id)
            except Os2iotError as exc:
                self.log.warning("os2iot poll failed", extra={"error": str(exc)})
                return
            await self._apply(command, handed, rows)
        for command_id in [c for c in self._handed if c not in self.gateway.commands.active]:
            del self._handed[command_id]
            record = await self.gateway.store.get_command(command_id)
            if record is not None and record.state == "expired":
                self._to_flush.add(record.dev_eui)

    async def _apply(
        self, command: CommandRecord, handed: _Handed, rows: list[dict[str, Any]]
    ) -> None:
        claimed = {h.row for cid, h in self._handed.items() if cid != command.id and h.row}
        candidates = [
            r
            for r in rows
            if _row_of(r, command, handed.since)
            and (handed.row == "" or r.get("createdAt") == handed.row)
            and r.get("createdAt") not in claimed
        ]
        if not candidates:
            return
        row = min(candidates, key=lambda r: str(r.get("createdAt")))
        handed.row = str(row.get("createdAt"))
        f_cnt_row = row.get("fCntDown")
        f_cnt = f_cnt_row if isinstance(f_cnt_row, int) else 0
        changed: CommandRecord | None = None
        info = cs.DeviceInfo(dev_eui=command.dev_eui)
        if row.get("sendAt") is not None and command.state == "queued":
            changed = await self.gateway.commands.on_txack(
                cs.TxAckEvent(
                    event="txack", topic_application_id="", device_info=info,
                    time=str(row["sendAt"]), downlink_id=0, queue_item_id=command.id,
                    f_cnt_down=f_cnt, gateway_id="", frequency=None, power=None,
                )
            )  # fmt: skip
        if row.get("acknowledgedAt") is not None and row.get("acknowledged") is not None:
            changed = await self.gateway.commands.on_ack(
                cs.AckEvent(
                    event="ack", topic_application_id="", device_info=info,
                    time=str(row["acknowledgedAt"]), deduplication_id="",
                    queue_item_id=command.id, acknowledged=bool(row["acknowledged"]),
                    f_cnt_down=f_cnt,
                )
            )  # fmt: skip
        if changed is not None:
            self.gateway.command_changed(changed)

    async def run(self) -> None:
        """Poll every ``poll_interval_s``; kick devices whose back-off is over."""
        while True:
            await asyncio.sleep(self.config.poll_interval_s)
            await self.poll_once()
            now = time.monotonic()
            for dev_eui, at in list(self._retry_at.items()):
                if at <= now:
                    self.gateway.kick(dev_eui)
            await self.gateway.flush()


def ingest_router(gateway: Gateway) -> APIRouter:
    """``POST /api/v1/ingest/os2iot`` (only with ``[os2iot] ingest = "http_push"``)."""
    router = APIRouter(tags=["os2iot"])
    config = gateway.config.os2iot
    expected = read_secret(config.push_authorization_file).encode()
    last_refusal_log = [0.0]
    held = [0]  # pushes answered not_committed since the store last committed (HELD_PUSHES_MAX)
    last_held_log = [0.0]

    @router.post(
        INGEST_PATH,
        summary="Uplinks from an OS2iot HTTP-push data target (raw ChirpStack up JSON)",
        status_code=200,
    )
    async def ingest(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            now = time.monotonic()
            if now - last_refusal_log[0] >= 60.0:  # once a minute, not once per request
                last_refusal_log[0] = now
                gateway.log.warning(
                    "os2iot push refused: wrong Authorization header",
                    extra={"client": request.client.host if request.client else ""},
                )
            return JSONResponse(
                {"error": "unauthorized", "message": "wrong Authorization header"},
                status_code=401,
            )
        limit = gateway.config.mqtt.max_event_bytes
        raw = await _read_limited(request, limit)
        if raw is None:
            return JSONResponse(
                {"error": "too_large", "message": f"body over {limit} bytes"}, status_code=413
            )
        topic = _topic_of(raw)
        try:
            is_up = isinstance(cs.parse_event(topic, raw), cs.UplinkEvent)
            reason = "" if is_up else "not a ChirpStack up event"
        except InvalidEvent as exc:
            reason = str(exc)
        if gateway.store_ok:
            held[0] = 0  # what was held is committed
        elif held[0] >= HELD_PUSHES_MAX:
            now = time.monotonic()
            if now - last_held_log[0] >= 60.0:  # once a minute, not once per request
                last_held_log[0] = now
                gateway.log.warning(
                    "os2iot push refused unprocessed: the store cannot commit and "
                    f"{HELD_PUSHES_MAX} pushed uplinks wait for it",
                    extra={"held": held[0]},
                )
            return JSONResponse(
                {
                    "error": "not_committed",
                    "message": f"the store cannot commit now and {HELD_PUSHES_MAX} pushed "
                    "uplinks wait for it; this one is not kept",
                },
                status_code=503,
            )
        # committed before the answer (a body that is not an up event: a dead letter)
        await gateway.process_committed(topic, raw)
        if not gateway.store_ok:
            held[0] += 1
            return JSONResponse(
                {
                    "error": "not_committed",
                    "message": "the store cannot commit now; kept in memory and committed when "
                    "it can, unless the gateway stops first",
                },
                status_code=503,
            )
        if reason:  # kept as a dead letter; the data target's log shows the refusal
            return JSONResponse(
                {"error": "not_an_uplink", "message": f"stored as a dead letter: {reason}"},
                status_code=422,
            )
        return JSONResponse({"status": "committed"})

    return router


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it passes ``limit`` bytes (nothing more is read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _topic_of(raw: bytes) -> str:
    """The ChirpStack topic the pushed event would have had; a body that is not an ``up``
    event gets a topic the parser refuses, so it becomes a dead letter with the reason."""
    try:
        doc = json.loads(raw)
        info = doc["deviceInfo"]
        app, eui = str(info["applicationId"]), str(info["devEui"]).lower()
    except (ValueError, KeyError, TypeError):
        return "os2iot/push/not-a-chirpstack-up-event"
    if not app or not eui or any(c in app + eui for c in "/+#"):
        return "os2iot/push/not-a-chirpstack-up-event"
    return f"application/{app}/device/{eui}/event/up"
