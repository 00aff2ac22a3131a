"""uvicorn's HTTP/1.1 connection with a header timeout and a connection cap (issue 14).

uvicorn's h11 protocol arms its keep-alive timer only after a response, so a connection that
never sends a request head stays open for ever, and uvicorn has no cap on connections
(``limit_concurrency`` answers 503 to a request, after its connection was taken). About 1,100 idle
connections exhausted the process's file handles, and every refused ``accept()`` wrote a
traceback. Here:

- a connection must complete its request head within ``[api] header_timeout_s`` (slowloris), and
  the head is at most 16 KiB (h11's incomplete-event limit);
- between requests a keep-alive connection is closed after ``[api] idle_timeout_s``
  (uvicorn's ``timeout_keep_alive``);
- at ``[api] max_connections`` open connections a new one evicts the oldest that has not started
  a request (an idle or slow attacker), so a health probe still gets in; when every connection
  is busy with a request, the new one is closed at once (no file handle is kept for it).

This is the one module that subclasses uvicorn's ``H11Protocol`` and reads its per-connection
fields (``transport``, ``cycle``); :data:`TESTED_UVICORN` names the versions it was written
against and tests/security/test_http_limits.py checks the behaviour on the installed one.
"""

from __future__ import annotations

import asyncio
import math
import resource
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.config import ApiConfig

__all__ = [
    "MAX_HEADER_BYTES",
    "TESTED_UVICORN",
    "connection_cap",
    "limited_protocol",
    "uvicorn_config",
]

TESTED_UVICORN = ((0, 30), (0, 99))  # the H11Protocol fields used here exist in this range
MAX_HEADER_BYTES = 16 * 1024
_RESERVED_FILES = 64  # the database, its WAL, MQTT, the listening socket, imports


def _version_ok() -> bool:
    parts = tuple(int(p) for p in uvicorn.__version__.split(".")[:2] if p.isdigit())
    return TESTED_UVICORN[0] <= parts <= TESTED_UVICORN[1]


class _Connections:
    """The server's connections in the order they opened; ``idle`` are those without a request
    in progress (eviction candidates)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.all: set[Any] = set()
        self.idle: dict[Any, None] = {}  # insertion-ordered: oldest first


def limited_protocol(max_connections: int, header_timeout_s: float) -> type[asyncio.Protocol]:
    """An ``H11Protocol`` subclass sharing one connection table (one per server)."""
    if not _version_ok():  # pragma: no cover - caught by the test on a new uvicorn
        raise RuntimeError(
            f"gateway.httpserver was written for uvicorn {TESTED_UVICORN}, "
            f"found {uvicorn.__version__}"
        )
    table = _Connections(max_connections)

    class LimitedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if len(table.all) >= table.limit:
                if table.idle:
                    oldest = next(iter(table.idle))
                    oldest._close_idle()
                else:
                    transport.close()  # every connection is busy: no room, no file handle kept
                    return
            super().connection_made(transport)  # type: ignore[arg-type]
            table.all.add(self)
            self._await_request()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            table.idle.pop(self, None)
            if self in table.all:
                table.all.discard(self)
                super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                self._cancel_header_timer()  # a request head arrived
                table.idle.pop(self, None)

        def on_response_complete(self) -> None:
            super().on_response_complete()  # arms uvicorn's keep-alive (idle) timer
            if not self.transport.is_closing() and self in table.all:
                table.idle[self] = None  # waiting for the next request: may be evicted

        def _await_request(self) -> None:
            table.idle[self] = None
            self._header_timer = self.loop.call_later(header_timeout_s, self._close_idle)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _close_idle(self) -> None:
            self._cancel_header_timer()
            table.idle.pop(self, None)
            if not self.transport.is_closing():
                self.transport.close()

    return LimitedH11Protocol


def connection_cap(max_connections: int) -> int:
    """``max_connections``, lowered to what the open-file limit leaves after
    :data:`_RESERVED_FILES` for the store, MQTT and the interpreter: a connection past the
    limit is never accepted into an ``EMFILE``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(16, min(max_connections, soft - _RESERVED_FILES))


def uvicorn_config(app: Any, api: ApiConfig) -> uvicorn.Config:
    """uvicorn's config for the gateway's API: our protocol, timeouts and limits, our logging."""
    cap = connection_cap(api.max_connections)
    return uvicorn.Config(
        app,
        http=limited_protocol(cap, api.header_timeout_s),
        log_config=None,
        access_log=False,
        lifespan="off",
        log_level="warning",
        # uvicorn takes whole seconds here (it is only handed to call_later)
        timeout_keep_alive=max(1, math.ceil(api.idle_timeout_s)),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        # requests being handled at once; past it uvicorn answers 503 (connections: see above)
        limit_concurrency=cap + 1,
        backlog=min(2048, cap),
    )
