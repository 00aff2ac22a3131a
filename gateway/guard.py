"""The API's front door: the bearer token and the body size are checked before any body is read.

FastAPI parses a request's body (to build the endpoint's arguments) before a dependency such as
the token check runs, so without this an unauthenticated 300 MB body was read into memory in
full (issue 14). :class:`Guard` is plain ASGI middleware in front of the whole app:

1. a path under ``/api/`` (the ``/api/v1`` routes and the dashboard's stream) without the right
   ``Authorization: Bearer <token>`` gets a JSON 401 at once; the body is never read (uvicorn
   closes a connection whose request body was not consumed);
2. a ``Content-Length`` over ``[api] max_body_bytes`` gets a JSON 413 at once;
3. a body without ``Content-Length`` (``Transfer-Encoding: chunked``) is counted as the app
   reads it; at the first chunk past the limit the client gets a 413, the app is told the client
   went away (``http.disconnect``), and nothing past the limit is read.

``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json`` and the dashboard's static files stay
open (ARCHITECTURE.md "HTTP API"), and so is a path that checks its own credentials
(``own_auth``: the OS2iot push, authenticated by OS2iot's header); the body limit holds
everywhere. The token is compared with
``hmac.compare_digest``. RFC 9110 §15.5.2 (401), §15.5.14 (413 Content Too Large).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Guard", "token_matches"]

_PROTECTED_PREFIX = "/api/"
_CLOSE = (b"connection", b"close")


def token_matches(header: str, expected: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <expected>`` (constant-time)."""
    scheme, _, given = header.partition(" ")
    return bool(
        expected
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": code, "message": message}).encode()


class Guard:
    """ASGI middleware: ``Guard(app, token=lambda: gateway.api_token, max_body_bytes=...)``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: Callable[[], str | None],
        max_body_bytes: int,
        own_auth: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes
        # paths under /api/ that check their own credentials (the OS2iot push, gateway/os2iot.py)
        self.own_auth = frozenset(own_auth)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        path = str(scope.get("path", ""))
        if path.startswith(_PROTECTED_PREFIX) and path not in self.own_auth:
            expected = self.token()
            if not token_matches(headers.get(b"authorization", b"").decode("latin-1"), expected):
                message = (
                    "missing or wrong bearer token"
                    if expected
                    else "the API token is not configured (api.token_file)"
                )
                await _respond(send, 401, "unauthorized", message)
                return
        limit = self.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _respond(send, 400, "invalid_request", "Content-Length is not a number")
                return
            if declared > limit:
                await _respond(
                    send, 413, "too_large", f"request body of {declared} bytes > {limit}"
                )
                return
        state = _BodyState()
        state.body_done = not (
            (length is not None and length.strip() != b"0") or b"transfer-encoding" in headers
        )

        async def counted_receive() -> Message:
            if state.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state.received += len(message.get("body", b""))
                if not message.get("more_body"):
                    state.body_done = True
                if state.received > limit:
                    state.refused = True
                    if not state.started:
                        state.started = True
                        await _respond(
                            send, 413, "too_large", f"request body larger than {limit} bytes"
                        )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state.refused:
                return  # the 413 went out; what the app answers to the disconnect is dropped
            if message["type"] == "http.response.start":
                state.started = True
                if not state.body_done:
                    # answered before the body was read (405, 404, an error): close the
                    # connection after the answer instead of reading the rest to discard it
                    message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state.refused:
                raise
            # the app gave up on the body it was cut off from: that is the 413 already sent


class _BodyState:
    __slots__ = ("body_done", "received", "refused", "started")

    def __init__(self) -> None:
        self.body_done = False
        self.received = 0
        self.refused = False
        self.started = False


async def _respond(send: Send, status: int, code: str, message: str) -> None:
    body = _error_body(code, message)
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        _CLOSE,  # what the client sent after the head is not read
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
