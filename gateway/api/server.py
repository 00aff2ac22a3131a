"""Serving the app: uvicorn inside the gateway's own event loop, on a socket bound up front."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

import uvicorn

from gateway.api.app import create_app
from gateway.httpserver import uvicorn_config

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["bind_api", "start_api"]


class _Server(uvicorn.Server):
    """uvicorn inside our loop: the gateway owns the signals (SIGTERM stops everything)."""

    def capture_signals(self) -> Any:
        return contextlib.nullcontext()


def bind_api(gateway: Gateway) -> socket.socket:
    """Bind ``[api] listen`` (port 0 = any free port, see ``gateway.api_port``); an address in
    use is a plain :class:`OSError` here, before any task starts."""
    host, _, port = gateway.config.api.listen.rpartition(":")
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart past TIME_WAIT
    try:
        sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"api.listen {gateway.config.api.listen}: {exc.strerror}") from exc
    sock.setblocking(False)
    gateway.api_port = int(sock.getsockname()[1])
    return sock


async def start_api(
    gateway: Gateway, group: asyncio.TaskGroup, sock: socket.socket
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve the API on ``sock`` (from :func:`bind_api`) as the task named ``api``."""
    host = gateway.config.api.listen.rpartition(":")[0]
    app = create_app(gateway)
    # timeouts, connection cap and logging of gateway/httpserver.py (issue 14)
    server = _Server(uvicorn_config(app, gateway.config.api))

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            queue = getattr(app.state, "chirpstack_queue", None)  # gateway/api/deps.py
            if queue is not None:
                await queue.close()
            # when cancelled, uvicorn skips its shutdown: close its asyncio servers first (they
            # own the listening socket's selector registration), then the socket itself
            for listener in server.servers:
                listener.close()
            sock.close()

    task: asyncio.Task[None] = group.create_task(serve(), name="api")
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event for it
        await asyncio.sleep(0.01)
    gateway.log.info("api listening", extra={"listen": f"{host}:{gateway.api_port}"})
    return server, task
