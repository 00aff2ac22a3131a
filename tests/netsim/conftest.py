"""Fixtures for the emulator tests: known devices, a fast-clocked emulator, in-process gateways."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from protocol.lorawan.keys import AESKey
from tests.netsim.fakenode import FakeNode, air, phy_of
from tools.netsim.devices import Device
from tools.netsim.server import NetsimConfig, NetworkServer

CLASS_A = Device(
    dev_eui="70b3d57ed0000a01",
    join_eui="70b3d57ed00000ff",
    app_key=AESKey(bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")),
    device_class="A",
    name="bin-001",
    tags={"kind": "bin"},
)
CLASS_C = Device(
    dev_eui="70b3d57ed0000c01",
    join_eui="70b3d57ed00000ff",
    app_key=AESKey(bytes.fromhex("000102030405060708090a0b0c0d0e0f")),
    device_class="C",
    name="lamp-001",
)
GW1 = "0016c001f153a14c"
GW2 = "0016c001f153a14d"


async def until(predicate: Callable[[], bool], wait_s: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (state owned by another task); fail after ``wait_s``."""
    async with asyncio.timeout(wait_s):
        while not predicate():  # noqa: ASYNC110 - no event to await on: poll
            await asyncio.sleep(0.01)


def fast_config(**overrides: Any) -> NetsimConfig:
    """ChirpStack's behaviour with its delays shrunk so a test takes milliseconds."""
    values: dict[str, Any] = {
        "dedup_window_s": 0.05,
        "dedup_ttl_s": 2.0,  # generous, so a slow machine cannot turn a late copy into an uplink
        "downlink_data_delay_s": 0.01,
        "scheduler_interval_s": 0.05,
        "class_c_lock_s": 0.05,
        "class_a_lock_s": 0.1,  # > downlink_data_delay_s: the class A response goes first
        "class_c_timeout_s": 0.3,
        "dev_status_every": 0,
        "seed": 7,
    }
    values.update(overrides)
    return NetsimConfig(**values)


@dataclass
class Harness:
    ns: NetworkServer
    events: list[tuple[str, str, Any]] = field(default_factory=list)
    taken: set[int] = field(default_factory=set)
    downlinks: dict[str, asyncio.Queue[tuple[dict[str, Any], int]]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def sink(self, event: str, dev_eui: str, message: Any) -> None:
        self.events.append((event, dev_eui, message))
        self.changed.set()

    def gateway(self, gateway_id: str, *, auto_ack: bool = True) -> None:
        queue: asyncio.Queue[tuple[dict[str, Any], int]] = asyncio.Queue()
        self.downlinks[gateway_id] = queue
        self.ns.attach_gateway(
            gateway_id, lambda txpk, token: queue.put_nowait((txpk, token)), auto_ack=auto_ack
        )

    async def event(self, kind: str, wait_s: float = 3.0) -> Any:
        """The next event of this kind not returned before (fails after ``wait_s``)."""
        async with asyncio.timeout(wait_s):
            while True:
                for index, (name, _dev, message) in enumerate(self.events):
                    if name == kind and index not in self.taken:
                        self.taken.add(index)
                        return message
                self.changed.clear()
                await self.changed.wait()

    async def settle(self) -> None:
        """Let the class A response window of the last uplink pass (ordering, not timing)."""
        await asyncio.sleep(self.ns.config.downlink_data_delay_s + 0.05)

    def kinds(self) -> list[str]:
        return [name for name, _, _ in self.events]

    async def downlink(
        self, gateway_id: str = GW1, wait_s: float = 3.0
    ) -> tuple[dict[str, Any], int]:
        return await asyncio.wait_for(self.downlinks[gateway_id].get(), wait_s)

    async def join(self, node: FakeNode, *gateways: str) -> None:
        phy = node.join_request()
        for gw in gateways or (GW1,):
            self.ns.receive_uplink(gw, air(phy))
        txpk, _ = await self.downlink((gateways or (GW1,))[0])
        node.join_accept(phy_of(txpk))


@contextlib.asynccontextmanager
async def joined_class_a(config: NetsimConfig) -> AsyncIterator[tuple[Harness, FakeNode]]:
    """An emulator with ``config`` (for a test that needs its own), one gateway (GW1) and the
    class A node joined through it."""
    ns = NetworkServer([CLASS_A], config)
    harness = Harness(ns)
    ns.add_event_sink(harness.sink)
    harness.gateway(GW1)
    async with ns:
        node = FakeNode.for_device(CLASS_A)
        await harness.join(node)
        yield harness, node


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    ns = NetworkServer([CLASS_A, CLASS_C], fast_config())
    h = Harness(ns)
    ns.add_event_sink(h.sink)
    h.gateway(GW1)
    h.gateway(GW2)
    async with ns:
        yield h
    assert ns.counters["internal_errors"] == 0, "a timer callback raised (see the log)"
