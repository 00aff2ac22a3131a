"""Semtech's UDP packet-forwarder protocol (GWMP), version 2, both ends.

Source: Lora-net/packet_forwarder ``PROTOCOL.TXT`` (protocol version 2): every datagram starts
``version(1) | token(2) | identifier(1)``; then

=========  ==  =====================================================  ===============
PUSH_DATA  0   ``| gateway EUI (8) | JSON {"rxpk": [...], "stat": {}}``  gateway → server
PUSH_ACK   1   nothing                                                server → gateway
PULL_DATA  2   ``| gateway EUI (8)``                                  gateway → server
PULL_RESP  3   ``| JSON {"txpk": {...}}`` (v2: token echoed by TX_ACK)   server → gateway
PULL_ACK   4   nothing                                                server → gateway
TX_ACK     5   ``| gateway EUI (8) | [JSON {"txpk_ack": {"error"}}]``  gateway → server
=========  ==  =====================================================  ===============

The token is 16 random bits chosen by the sender; it travels as two bytes in the order the
sender wrote them (the reference forwarder copies them verbatim), here big-endian. The gateway
EUI is MSB-first (it is written that way by the forwarder, unlike LoRaWAN's little-endian EUIs).

:func:`decode` raises only :class:`GwmpError` for any datagram; :class:`GwmpServer` logs and
drops such datagrams. :class:`GwmpClient` is a minimal packet forwarder for tests and for
``citypack sim --udp``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

__all__ = [
    "PROTOCOL_VERSION",
    "PULL_ACK",
    "PULL_DATA",
    "PULL_RESP",
    "PUSH_ACK",
    "PUSH_DATA",
    "TX_ACK",
    "GwmpClient",
    "GwmpError",
    "GwmpServer",
    "Packet",
    "RadioBackend",
    "decode",
    "encode",
]

PROTOCOL_VERSION = 2
PUSH_DATA = 0x00
PUSH_ACK = 0x01
PULL_DATA = 0x02
PULL_RESP = 0x03
PULL_ACK = 0x04
TX_ACK = 0x05

_WITH_EUI = {PUSH_DATA, PULL_DATA, TX_ACK}
_WITH_JSON = {PUSH_DATA, PULL_RESP, TX_ACK}
_NAMES = {
    PUSH_DATA: "PUSH_DATA",
    PUSH_ACK: "PUSH_ACK",
    PULL_DATA: "PULL_DATA",
    PULL_RESP: "PULL_RESP",
    PULL_ACK: "PULL_ACK",
    TX_ACK: "TX_ACK",
}

log = logging.getLogger("citypack.netsim.gwmp")


class GwmpError(Exception):
    """A datagram that is not a valid GWMP packet."""


@dataclass(frozen=True)
class Packet:
    """One GWMP datagram. ``gateway_id`` is 16 lower-case hex digits (MSB first) or None."""

    identifier: int
    token: int
    gateway_id: str | None = None
    payload: dict[str, Any] | None = None
    version: int = PROTOCOL_VERSION

    @property
    def name(self) -> str:
        return _NAMES.get(self.identifier, f"0x{self.identifier:02x}")


def decode(data: bytes) -> Packet:
    """Parse one datagram; raises :class:`GwmpError` for anything malformed."""
    if len(data) < 4:
        raise GwmpError(f"a GWMP datagram is at least 4 bytes, got {len(data)}")
    version, identifier = data[0], data[3]
    if version not in (1, 2):
        raise GwmpError(f"unsupported GWMP protocol version {version}")
    if identifier not in _NAMES:
        raise GwmpError(f"unknown GWMP identifier 0x{identifier:02x}")
    token = int.from_bytes(data[1:3], "big")
    rest = data[4:]
    gateway_id = None
    if identifier in _WITH_EUI:
        if len(rest) < 8:
            raise GwmpError(f"{_NAMES[identifier]} lacks the 8-byte gateway EUI")
        gateway_id = rest[:8].hex()
        rest = rest[8:]
    payload: dict[str, Any] | None = None
    if identifier in _WITH_JSON and rest.strip(b"\x00 \r\n"):
        try:
            parsed = json.loads(rest.decode("utf-8").rstrip("\x00"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise GwmpError(f"{_NAMES[identifier]} carries invalid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise GwmpError(f"{_NAMES[identifier]} JSON must be an object")
        payload = parsed
    elif identifier in (PUSH_DATA, PULL_RESP):
        raise GwmpError(f"{_NAMES[identifier]} without a JSON object")
    elif rest and identifier not in _WITH_JSON:
        raise GwmpError(f"{_NAMES[identifier]} has {len(rest)} unexpected trailing bytes")
    return Packet(identifier, token, gateway_id, payload, version)


def encode(packet: Packet) -> bytes:
    """The datagram of ``packet``."""
    out = bytes([packet.version]) + (packet.token & 0xFFFF).to_bytes(2, "big")
    out += bytes([packet.identifier])
    if packet.identifier in _WITH_EUI:
        if packet.gateway_id is None:
            raise GwmpError(f"{packet.name} needs a gateway EUI")
        out += bytes.fromhex(packet.gateway_id)
    if packet.payload is not None:
        out += json.dumps(packet.payload, separators=(",", ":")).encode()
    return out


class RadioBackend(Protocol):
    """What :class:`GwmpServer` needs of the network server (implemented by NetworkServer)."""

    def receive_uplink(self, gateway_id: str, rxpk: dict[str, Any]) -> None: ...

    def attach_gateway(
        self,
        gateway_id: str,
        on_downlink: Callable[[dict[str, Any], int], None],
        *,
        auto_ack: bool = ...,
    ) -> None: ...

    def tx_ack(self, gateway_id: str, token: int, error: str = ...) -> None: ...


class GwmpServer(asyncio.DatagramProtocol):
    """The network-server end: a UDP endpoint speaking GWMP v2 to packet forwarders.

    Uplinks (rxpk with ``stat`` 1, CRC OK) go to ``backend.receive_uplink``; a gateway becomes
    reachable for downlinks with its first PULL_DATA (PULL_RESP goes to the address of the
    latest PULL_DATA); TX_ACK goes to ``backend.tx_ack``.
    """

    def __init__(self, backend: RadioBackend) -> None:
        self.backend = backend
        self.transport: asyncio.DatagramTransport | None = None
        self._pull_addr: dict[str, tuple[str, int]] = {}
        self._versions: dict[str, int] = {}
        self.dropped = 0

    @classmethod
    async def start(cls, backend: RadioBackend, host: str, port: int) -> GwmpServer:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: cls(backend), local_addr=(host, port)
        )
        protocol.transport = transport  # connection_made runs only on the next loop turn
        return protocol

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _send(self, packet: Packet, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(encode(packet), addr)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            packet = decode(data)
        except GwmpError as exc:
            self.dropped += 1
            log.warning("dropped a datagram from %s:%s: %s", addr[0], addr[1], exc)
            return
        gateway_id = packet.gateway_id or ""
        if packet.identifier == PUSH_DATA:
            self._send(Packet(PUSH_ACK, packet.token, version=packet.version), addr)
            rxpks = (packet.payload or {}).get("rxpk", [])
            if not isinstance(rxpks, list):
                self.dropped += 1
                log.warning("PUSH_DATA from %s: rxpk is not a list", gateway_id)
                return
            for rxpk in rxpks:
                if not isinstance(rxpk, dict):
                    self.dropped += 1
                    continue
                if rxpk.get("stat", 1) != 1:  # -1 bad CRC, 0 no CRC: not a LoRaWAN uplink
                    continue
                self.backend.receive_uplink(gateway_id, rxpk)
        elif packet.identifier == PULL_DATA:
            first = gateway_id not in self._pull_addr
            self._pull_addr[gateway_id] = addr
            self._versions[gateway_id] = packet.version
            self._send(Packet(PULL_ACK, packet.token, version=packet.version), addr)
            if first:
                self.backend.attach_gateway(
                    gateway_id, self._downlink_sender(gateway_id), auto_ack=False
                )
        elif packet.identifier == TX_ACK:
            error = "NONE"
            if packet.payload is not None:
                ack = packet.payload.get("txpk_ack", {})
                if isinstance(ack, dict):
                    error = str(ack.get("error", "NONE"))
            self.backend.tx_ack(gateway_id, packet.token, error)
        else:
            self.dropped += 1
            log.warning("unexpected %s from %s:%s", packet.name, addr[0], addr[1])

    def _downlink_sender(self, gateway_id: str) -> Callable[[dict[str, Any], int], None]:
        def send(txpk: dict[str, Any], token: int) -> None:
            addr = self._pull_addr.get(gateway_id)
            if addr is None:
                return
            version = self._versions.get(gateway_id, PROTOCOL_VERSION)
            self._send(Packet(PULL_RESP, token, payload={"txpk": txpk}, version=version), addr)
            if version == 1:  # v1 has no TX_ACK: assume it was sent
                self.backend.tx_ack(gateway_id, token, "NONE")

        return send


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: GwmpClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client._received(data)


class GwmpClient:
    """A minimal packet forwarder: PUSH_DATA uplinks, PULL_DATA keep-alive, PULL_RESP in.

    ::

        async with GwmpClient("0016c001f153a14c", "127.0.0.1", 1700) as gw:
            await gw.push([rxpk])                 # waits for PUSH_ACK
            token, txpk = await gw.downlink(5.0)  # the next PULL_RESP
            await gw.tx_ack(token)                # TX_ACK, error "NONE"
    """

    def __init__(
        self,
        gateway_id: str,
        host: str,
        port: int,
        *,
        keepalive_s: float = 10.0,
        ack_timeout_s: float = 2.0,
    ) -> None:
        self.gateway_id = bytes.fromhex(gateway_id).hex()
        if len(self.gateway_id) != 16:
            raise GwmpError("a gateway EUI is 16 hex digits")
        self.host, self.port = host, port
        self.keepalive_s = keepalive_s
        self.ack_timeout_s = ack_timeout_s
        self._transport: asyncio.DatagramTransport | None = None
        self._acks: dict[tuple[int, int], asyncio.Future[None]] = {}
        self._downlinks: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue(maxsize=1000)
        self._keepalive: asyncio.Task[None] | None = None
        self.dropped = 0

    async def __aenter__(self) -> GwmpClient:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ClientProtocol(self), remote_addr=(self.host, self.port)
        )
        self._transport = transport
        await self.pull()
        self._keepalive = asyncio.create_task(self._keep_alive(), name="gwmp-keepalive")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            with contextlib.suppress(TimeoutError):
                await self.pull()

    def _received(self, data: bytes) -> None:
        try:
            packet = decode(data)
        except GwmpError:
            self.dropped += 1
            return
        if packet.identifier in (PUSH_ACK, PULL_ACK):
            future = self._acks.pop((packet.identifier, packet.token), None)
            if future is not None and not future.done():
                future.set_result(None)
        elif packet.identifier == PULL_RESP and packet.payload is not None:
            txpk = packet.payload.get("txpk")
            if isinstance(txpk, dict):
                try:
                    self._downlinks.put_nowait((packet.token, txpk))
                except asyncio.QueueFull:
                    self.dropped += 1
        else:
            self.dropped += 1

    async def _request(self, packet: Packet, ack: int) -> None:
        if self._transport is None:
            raise GwmpError("the client is not started (use `async with`)")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[(ack, packet.token)] = future
        self._transport.sendto(encode(packet))
        try:
            await asyncio.wait_for(future, self.ack_timeout_s)
        finally:
            self._acks.pop((ack, packet.token), None)

    async def pull(self) -> None:
        """Send PULL_DATA and wait for PULL_ACK (TimeoutError if none)."""
        token = random.getrandbits(16)
        await self._request(Packet(PULL_DATA, token, self.gateway_id), PULL_ACK)

    async def push(self, rxpk: list[dict[str, Any]], stat: dict[str, Any] | None = None) -> None:
        """Send PUSH_DATA with these rxpk objects and wait for PUSH_ACK."""
        payload: dict[str, Any] = {"rxpk": rxpk}
        if stat is not None:
            payload["stat"] = stat
        token = random.getrandbits(16)
        await self._request(Packet(PUSH_DATA, token, self.gateway_id, payload), PUSH_ACK)

    async def downlink(self, timeout_s: float) -> tuple[int, dict[str, Any]]:
        """The next PULL_RESP as ``(token, txpk)``; TimeoutError when none arrives in time."""
        return await asyncio.wait_for(self._downlinks.get(), timeout_s)

    async def tx_ack(self, token: int, error: str = "NONE") -> None:
        """Send TX_ACK for a PULL_RESP token (``error`` as in the forwarder: NONE, TOO_LATE...)."""
        if self._transport is None:
            raise GwmpError("the client is not started (use `async with`)")
        payload = {"txpk_ack": {"error": error}}
        self._transport.sendto(encode(Packet(TX_ACK, token, self.gateway_id, payload)))


def rxpk(
    phy: bytes,
    *,
    tmst: int,
    freq_mhz: float = 868.1,
    datr: str = "SF7BW125",
    rssi: int = -60,
    lsnr: float = 7.5,
    chan: int = 0,
    rfch: int = 0,
) -> dict[str, Any]:
    """An rxpk object as a packet forwarder reports a received LoRa frame (CRC OK)."""
    return {
        "tmst": tmst & 0xFFFFFFFF,
        "chan": chan,
        "rfch": rfch,
        "freq": freq_mhz,
        "stat": 1,
        "modu": "LORA",
        "datr": datr,
        "codr": "4/5",
        "rssi": rssi,
        "lsnr": lsnr,
        "size": len(phy),
        "data": base64.b64encode(phy).decode("ascii"),
    }
