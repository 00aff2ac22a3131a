"""Backhauls: how the simulated gateways reach a network server.

- :class:`EmulatorBackhaul` — the in-process path into ``tools.netsim.NetworkServer``: each
  gateway's reception becomes a GWMP ``rxpk`` handed to ``receive_uplink``, and the server's
  ``txpk`` downlinks come back through ``attach_gateway`` callbacks (tools/netsim/server.py).
- :class:`UdpBackhaul` — real GWMP v2 over UDP, one ``tools.netsim.gwmp.GwmpClient`` per
  simulated gateway, to any packet-forwarder endpoint (the emulator's GWMP port or a real
  ChirpStack Gateway Bridge).

Timestamps (Semtech packet forwarder ``PROTOCOL.TXT``): ``tmst`` is the concentrator's 32-bit
microsecond counter at the end of reception; a class A answer carries ``tmst`` = uplink ``tmst`` +
RX delay, and ``imme: true`` (class C) means "now". The simulated concentrator counter is the
node clock in µs, so a ``txpk`` maps straight back to the node's clock ticks.

A ``txpk`` does not name its device. Class A answers go to the node whose uplink ``tmst`` they
answer (RX1/RX2 after an uplink, or the join-accept delays); ``imme`` data downlinks are matched
on their DevAddr against the simulated nodes' own sessions (``Air.resolve_dev_addr``), which
works the same whichever network server assigned the address. Over the real air every listening node
would receive the frame and drop it on DevAddr or MIC; delivering it to its node only is the same
outcome without N-fold work.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tools.sim.air import Air, Uplink
from tools.sim.clock import HalClock

log = logging.getLogger("citypack.sim")

_TMST_MOD = 1 << 32
_RECENT_UPLINKS = 4096  # (gateway, tmst) → node for matching class A answers (bounded)


def rxpk(frame: Uplink, gateway_id: str, rssi: int, snr: float, when: datetime) -> dict[str, Any]:
    """The GWMP ``rxpk`` a packet forwarder would push for this reception."""
    return {
        "time": when.isoformat().replace("+00:00", "Z"),
        "tmst": (frame.t_ms * 1000) % _TMST_MOD,
        "chan": 0,
        "rfch": 0,
        "freq": round(frame.freq_hz / 1_000_000, 6),
        "stat": 1,
        "modu": "LORA",
        "datr": frame.datr,
        "codr": "4/5",
        "rssi": rssi,
        "lsnr": snr,
        "size": len(frame.phy),
        "data": base64.b64encode(frame.phy).decode("ascii"),
    }


def ticks_of_tmst(tmst: int, now_ms: int) -> int:
    """The node clock tick (ms) a 32-bit µs ``tmst`` means, taking the one nearest ``now_ms``."""
    delta = (tmst - now_ms * 1000) % _TMST_MOD
    if delta >= _TMST_MOD // 2:
        delta -= _TMST_MOD
    return now_ms + delta // 1000


def _dev_addr_of(phy: bytes) -> str | None:
    """DevAddr (MSB-first hex) of a data frame: bytes 1..4 little-endian (L2 §4.3.1)."""
    if len(phy) < 12 or (phy[0] >> 5) not in (2, 3, 4, 5):
        return None
    return phy[4:0:-1].hex()


class _Matcher:
    """Finds the node a downlink is for (see the module docstring)."""

    def __init__(self, resolve_dev_addr: Callable[[str], str | None]) -> None:
        self._recent: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._resolve = resolve_dev_addr

    def heard(self, gateway_id: str, tmst: int, node_id: str) -> None:
        self._recent[(gateway_id, tmst)] = node_id
        while len(self._recent) > _RECENT_UPLINKS:
            self._recent.popitem(last=False)

    def node_for(self, gateway_id: str, txpk: dict[str, Any], phy: bytes) -> str | None:
        if not txpk.get("imme") and "tmst" in txpk:
            for delay_s in (1, 2, 5, 6, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16):
                key = (gateway_id, (int(txpk["tmst"]) - delay_s * 1_000_000) % _TMST_MOD)
                if key in self._recent:
                    return self._recent[key]
        addr = _dev_addr_of(phy)
        return None if addr is None else self._resolve(addr)


class EmulatorBackhaul:
    """The in-process path between :class:`~tools.sim.air.Air` and a netsim ``NetworkServer``."""

    def __init__(
        self,
        server: Any,
        air: Air,
        clock: HalClock,
        sim_now: Any,
        *,
        multicast_loss: float = 0.0,
        seed: int = 18,
    ) -> None:
        self.server = server
        self.air = air
        self.clock = clock
        self._sim_now = sim_now  # () -> datetime, simulated
        self._matcher = _Matcher(air.resolve_dev_addr)
        # a multicast frame (its DevAddr is a group's McAddr) reaches each member on its own,
        # and each member loses it with this probability (issue 18: FUOTA under fragment loss)
        self.multicast_loss = multicast_loss
        self._rng = random.Random(seed)
        self.multicast_frames = 0  # multicast frames put on the air (one per gateway sending)
        self.multicast_fcnts: set[tuple[str, int]] = set()  # distinct frames: (McAddr, FCnt)
        self.multicast_lost = 0  # (member, frame) pairs lost to multicast_loss
        for gateway_id in air.coverage.gateways:
            server.attach_gateway(gateway_id, self._downlink_from(gateway_id))
        air.backhaul = self

    def uplink(self, frame: Uplink) -> None:
        when = self._sim_now()
        tmst = (frame.t_ms * 1000) % _TMST_MOD
        for rx in frame.receptions:
            self._matcher.heard(rx.gateway_id, tmst, frame.node_id)
            self.server.receive_uplink(
                rx.gateway_id, rxpk(frame, rx.gateway_id, rx.rssi_dbm, rx.snr_db, when)
            )

    def _downlink_from(self, gateway_id: str) -> Any:
        def on_downlink(txpk: dict[str, Any], token: int) -> None:
            phy = base64.b64decode(str(txpk["data"]))
            node = self._matcher.node_for(gateway_id, txpk, phy)
            now = self.clock.ticks_ms()
            t_ms = now if txpk.get("imme") else ticks_of_tmst(int(txpk["tmst"]), now)
            freq_hz = round(float(txpk["freq"]) * 1_000_000)
            if node is None:
                members = self._multicast_members(phy)
                if members is None:
                    self.air.coverage.stats.downlinks_missed += 1
                    return
                self.multicast_frames += 1
                self.multicast_fcnts.add((phy[4:0:-1].hex(), int.from_bytes(phy[6:8], "little")))
                for member in members:
                    if self.multicast_loss and self._rng.random() < self.multicast_loss:
                        self.multicast_lost += 1
                        continue
                    self.air.downlink(
                        member, gateway_id, phy, freq_hz, str(txpk["datr"]), t_ms,
                        float(txpk["powe"]),
                    )  # fmt: skip
                return
            self.air.downlink(
                node, gateway_id, phy, freq_hz, str(txpk["datr"]), t_ms, float(txpk["powe"])
            )

        return on_downlink

    def _multicast_members(self, phy: bytes) -> list[str] | None:
        """The members of the multicast group whose McAddr the frame carries, if it is one."""
        addr = _dev_addr_of(phy)
        return None if addr is None else _members_of(self.server, addr)


def _members_of(server: Any, addr: str) -> list[str] | None:
    registry = getattr(server, "multicast", None)
    if registry is None:
        return None
    for group in registry.groups():
        if f"{group.mc_addr:08x}" == addr:
            return sorted(group.devices)
    return None


def sim_datetime(epoch: float, clock: HalClock) -> Any:
    """A ``now()`` for the emulator's timestamps: simulated UTC time."""

    def now() -> datetime:
        return datetime.fromtimestamp(epoch + clock.ticks_ms() / 1000.0, UTC)

    return now


class UdpBackhaul:
    """GWMP v2 over UDP: every simulated gateway is a packet forwarder talking to ``host:port``."""

    def __init__(self, air: Air, clock: HalClock, host: str, port: int, sim_now: Any) -> None:
        self.air = air
        self.clock = clock
        self.host = host
        self.port = port
        self._sim_now = sim_now
        self._clients: dict[str, Any] = {}
        self._matcher = _Matcher(air.resolve_dev_addr)
        self._tasks: list[asyncio.Task[None]] = []
        self._stack = contextlib.AsyncExitStack()
        self._pending: set[asyncio.Task[None]] = set()
        self.pushed = 0
        self.downlinks = 0

    async def __aenter__(self) -> UdpBackhaul:
        from tools.netsim.gwmp import GwmpClient

        for gateway_id in self.air.coverage.gateways:
            client = GwmpClient(gateway_id, self.host, self.port)
            self._clients[gateway_id] = await self._stack.enter_async_context(client)
            self._tasks.append(
                asyncio.create_task(self._pull(gateway_id), name=f"gwmp-pull-{gateway_id}")
            )
        self.air.backhaul = self
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.air.backhaul = None
        for task in [*self._tasks, *self._pending]:
            task.cancel()
        for task in [*self._tasks, *self._pending]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stack.aclose()

    def uplink(self, frame: Uplink) -> None:
        when = self._sim_now()
        tmst = (frame.t_ms * 1000) % _TMST_MOD
        for rx in frame.receptions:
            self._matcher.heard(rx.gateway_id, tmst, frame.node_id)
            packet = rxpk(frame, rx.gateway_id, rx.rssi_dbm, rx.snr_db, when)
            task = asyncio.create_task(self._push(rx.gateway_id, packet))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _push(self, gateway_id: str, packet: dict[str, Any]) -> None:
        try:
            await self._clients[gateway_id].push([packet])
            self.pushed += 1
        except Exception as exc:  # a lost PUSH_ACK is a lost uplink, as on a real backhaul
            log.warning("sim: GWMP push from %s failed: %s", gateway_id, exc)

    async def _pull(self, gateway_id: str) -> None:
        client = self._clients[gateway_id]
        while True:
            try:
                token, txpk = await client.downlink(timeout_s=3600.0)
            except TimeoutError:
                continue
            phy = base64.b64decode(str(txpk.get("data", "")))
            node = self._matcher.node_for(gateway_id, txpk, phy)
            now = self.clock.ticks_ms()
            t_ms = now if txpk.get("imme") else ticks_of_tmst(int(txpk.get("tmst", 0)), now)
            if node is None:  # transmitted, but no simulated node was listening for it
                self.air.coverage.stats.downlinks_missed += 1
            else:
                self.downlinks += 1
                self.air.downlink(
                    node,
                    gateway_id,
                    phy,
                    round(float(txpk["freq"]) * 1_000_000),
                    str(txpk["datr"]),
                    t_ms,
                    float(txpk.get("powe", 14)),
                )
            await client.tx_ack(token, "NONE")
