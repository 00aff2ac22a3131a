"""The operator's dashboard: a static single-page app at ``/`` and a live stream for it.

Issue 9 ("An operator's web dashboard, served by the gateway"). The page itself is our own
hand-written source in ``gateway/web/static/`` (ES modules, CSS, an SVG map; nothing from a CDN).
It reads everything through the existing ``/api/v1`` routes with the operator's bearer token and
adds only what the API lacks:

- ``GET /api/v1/stream``: server-sent events (``text/event-stream``, WHATWG HTML §9.2) of
  ``event`` (each derived event as published on ``citypack/events/{type}``, command state changes
  included: ``command_queued`` … ``command_applied``) and ``device`` (the device JSON of
  ``GET /api/v1/devices/{devEui}``, coalesced: at most one per device per ``_COALESCE_S``).
- ``GET /api/v1/web/config``: the dashboard's ``[web]`` options (tile URL and attribution).

Why fetch() streaming and not ``EventSource`` with a query ticket: ``EventSource`` cannot send an
``Authorization`` header, so a ticket would put a credential in a URL (access logs, browser
history) and need server-side ticket state. ``fetch()`` with a ``ReadableStream`` body sends the
same bearer header as every other call, so the stream is authorised exactly like the API; the page
parses the SSE framing itself and reconnects with a backoff.

Where the stream's data comes from: the gateway publishes every derived event, twin and
availability change through its :class:`gateway.publish.Publisher` right after the batch is
committed, so the dashboard taps those three calls (it never sees uncommitted state and adds no
store queries). Streams end when the gateway stops, so uvicorn's graceful shutdown is not held up.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Security
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from gateway.config import WebConfig
from gateway.store.base import Device, EventRecord

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["StreamHub", "hub_for", "mount"]

STATIC_DIR = Path(__file__).with_name("static")
_EVENT_BACKLOG = 1000  # events kept per slow subscriber before the oldest are dropped
_COALESCE_S = 0.25  # at most this often a subscriber is sent a burst of device updates
_POLL_S = 0.5  # how often a quiet stream checks whether the gateway is stopping
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


def _device_doc(device: Device) -> dict[str, Any]:
    doc = device.to_json()
    # rule scratch state (fill samples...) is not for the page; the API's twin() hides it too
    doc["derived"] = {k: v for k, v in device.derived.items() if not k.startswith("_")}
    return doc


class _Subscriber:
    __slots__ = ("devices", "dropped", "events", "wake")

    def __init__(self) -> None:
        self.events: collections.deque[EventRecord] = collections.deque(maxlen=_EVENT_BACKLOG)
        self.devices: set[str] = set()
        self.dropped = 0
        self.wake = asyncio.Event()


class StreamHub:
    """Fans committed events and device changes out to the open streams (bounded per stream)."""

    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()
        self.events_seen = 0
        self.events_dropped = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def watching(self) -> bool:
        """A page is open: device changes other instances made are read at once for it
        (gateway/publish.py ``watched``)."""
        return bool(self._subscribers)

    def event(self, record: EventRecord) -> None:
        self.events_seen += 1
        for sub in self._subscribers:
            if len(sub.events) == _EVENT_BACKLOG:
                sub.dropped += 1  # the page is told and reloads its lists
                self.events_dropped += 1
            sub.events.append(record)
            sub.wake.set()

    def device(self, device: Device) -> None:
        for sub in self._subscribers:
            sub.devices.add(device.dev_eui)
            sub.wake.set()

    def subscribe(self) -> _Subscriber:
        sub = _Subscriber()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        self._subscribers.discard(sub)


_HUBS: weakref.WeakKeyDictionary[Any, StreamHub] = weakref.WeakKeyDictionary()


def hub_for(gateway: Gateway) -> StreamHub:
    """The gateway's hub, listening to its publisher from the first call on (one per gateway)."""
    hub = _HUBS.get(gateway)
    if hub is None:
        hub = StreamHub()
        gateway.publisher.add_listener(hub)
        _HUBS[gateway] = hub
    return hub


def _sse(kind: str, doc: Any) -> bytes:
    return f"event: {kind}\ndata: {_JSON.encode(doc)}\n\n".encode()


async def _stream(gateway: Gateway, hub: StreamHub, keepalive_s: float) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    sub = hub.subscribe()
    try:
        # retry: the reconnect delay the SSE spec defines; the page's own reader honours it too
        yield b"retry: 2000\n" + _sse(
            "hello", {"at": gateway.clock(), "devices": len(gateway.devices)}
        )
        last_sent = loop.time()
        while not gateway.stopping:
            try:
                async with asyncio.timeout(_POLL_S):  # not wait_for: CPython gh-86296
                    await sub.wake.wait()
            except TimeoutError:
                if loop.time() - last_sent >= keepalive_s:
                    last_sent = loop.time()
                    yield b": keepalive\n\n"
                continue
            sub.wake.clear()
            chunks: list[bytes] = []
            if sub.dropped:
                chunks.append(_sse("lagged", {"dropped": sub.dropped}))
                sub.dropped = 0
            while sub.events:
                chunks.append(_sse("event", sub.events.popleft().to_json()))
            devices, sub.devices = sub.devices, set()
            for dev_eui in sorted(devices):
                device = gateway.devices.get(dev_eui)
                if device is not None:
                    chunks.append(_sse("device", _device_doc(device)))
            if chunks:
                last_sent = loop.time()
                yield b"".join(chunks)
            await asyncio.sleep(_COALESCE_S)
    finally:
        hub.unsubscribe(sub)


def _authorised(gateway: Gateway, request: Request) -> bool:
    expected = gateway.api_token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return bool(
        expected
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


def _unauthorised(gateway: Gateway) -> JSONResponse:
    message = (
        "missing or wrong bearer token"
        if gateway.api_token
        else "the API token is not configured (api.token_file)"
    )
    return JSONResponse({"error": "unauthorized", "message": message}, status_code=401)


def mount(app: FastAPI, gateway: Gateway, config: WebConfig) -> None:
    """Serve the dashboard at ``/`` and its stream on ``app`` (called by :func:`create_app`)."""
    if not config.enabled:
        return
    hub = hub_for(gateway)
    index = STATIC_DIR / "index.html"
    tiles = urlsplit(config.tile_url)
    tile_origin = f" {tiles.scheme}://{tiles.netloc}" if config.tile_url else ""
    headers = {
        "Cache-Control": "no-store",  # a new gateway must not run yesterday's page on its API
        # everything is our own origin; only the configured tile server may add images
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; connect-src 'self'; "
            f"img-src 'self' data: blob:{tile_origin}; style-src 'self' 'unsafe-inline'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(index, media_type="text/html", headers=headers)

    from gateway.api import BEARER  # the schema's bearer scheme (imported here: no cycle)

    @app.get("/api/v1/web/config", tags=["dashboard"], dependencies=[Security(BEARER)])
    async def web_config(request: Request) -> Response:
        if not _authorised(gateway, request):
            return _unauthorised(gateway)
        return JSONResponse(
            {
                "tile_url": config.tile_url,
                "tile_attribution": config.tile_attribution,
                "timezone": config.timezone,
                "sim_clock": (
                    {
                        "epoch": config.sim_epoch,
                        "wall_start": config.sim_wall_start,
                        "speed": config.sim_speed,
                    }
                    if config.sim_speed > 0
                    else None
                ),
            }
        )

    @app.get("/api/v1/stream", tags=["dashboard"], dependencies=[Security(BEARER)])
    async def stream(request: Request) -> Response:
        """Server-sent events: ``hello``, ``event``, ``device``, ``lagged``; see module doc."""
        if not _authorised(gateway, request):
            return _unauthorised(gateway)
        return StreamingResponse(
            _stream(gateway, hub, config.stream_keepalive_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
