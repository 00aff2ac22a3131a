"""The demo's embedded MQTT broker (amqtt) on a free loopback port.

amqtt 0.12 loads plugins from the ``plugins`` table of its config; naming only the anonymous
authentication plugin keeps out ``BrokerSysPlugin`` (its ``$SYS`` tree and a DeprecationWarning
about psutil). Source: amqtt ``amqtt/plugins/manager.py`` and ``docs/references/broker_config.md``.
"""

from __future__ import annotations

import logging
import socket
from types import TracebackType

from amqtt.broker import Broker


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReservedPort:
    """A free loopback port held until the server that will listen on it has started.

    ``free_port()`` closes its socket, so between picking a port and a server binding it another
    process can take it: a concurrent ``bind``, or a ``connect`` whose ephemeral port is picked
    from the same range (seen once, as gRPC's "Failed to bind to address", when a rig's gateway
    config named a port that the emulator bound only after the gateway had started). This socket
    stays bound without listening, with ``SO_REUSEPORT``: the kernel gives the port to no other
    socket of another owner or without that option, and never as an ephemeral port; a gRPC
    server (which sets ``SO_REUSEPORT`` on Linux) can still bind and listen on it, and since
    this socket does not listen, no connection is ever handed to it. Close it once the server
    is up (or keep it until the server stops)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._sock.bind((host, 0))
        self.port = int(self._sock.getsockname()[1])

    def close(self) -> None:
        self._sock.close()


class EmbeddedBroker:
    """``async with EmbeddedBroker() as broker: broker.url`` — an MQTT 3.1.1 broker in this loop."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> EmbeddedBroker:
        # amqtt logs every connection at INFO; the demo's screen is not the place for it.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = Broker(config)
        await self._broker.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
