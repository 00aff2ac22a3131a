"""A small test city: real firmware nodes, the in-process emulator, a real broker, the gateway.

Everything is the code users run: the fleet (``tools.sim.fleet``) runs the firmware's apps and
MAC on simulated radios in accelerated time, the emulator publishes ChirpStack events to the
test's private mosquitto, and the gateway is ``citypack gateway run`` as a child process. Waits
are bounded polls on observable state (``eventually``), never sleeps that assume a speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tools.sim.city import CityFiles, registry_entries, write_city
from tools.sim.clock import ScaledClock, evening_start
from tools.sim.fleet import Fleet
from tools.sim.gatewayproc import GatewayProcess
from tools.sim.world import World

T = TypeVar("T")

APPLICATION_ID = "8c1c5a3e-2f4b-4a57-9c1e-6b0d3f2a7e10"
LATE_BIN = "02c17a0b000000a4"  # installed unpowered: switched on by a test

# Night program for the test lamps: a quarter of full light after sunset, off at sunrise.
TEST_PROFILE: dict[str, Any] = {
    "config_version": 3,
    "base_level": 100,
    "boost_level": 100,
    "hold_time_s": 60,
    "steps": [
        {"anchor": "sunset", "offset_min": 0, "dim_level": 25},
        {"anchor": "sunrise", "offset_min": 0, "dim_level": 0},
    ],
}


async def eventually(
    probe: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    *,
    # generous: a class C round trip of the real firmware takes under a second alone, but the
    # whole suite on two shared cores once took the profile test past 20 s
    timeout_s: float = 60.0,
    what: str = "the condition",
) -> T:
    """Poll ``probe`` (sync or async) until it returns something truthy; fail after the bound."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        last = result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s (last: {last!r})")
        await asyncio.sleep(0.05)


@dataclass
class NetworkLog:
    """Every event the emulator emitted, as (event, devEui, protobuf message)."""

    events: list[tuple[str, str, Any]] = field(default_factory=list)

    def __call__(self, event: str, dev_eui: str, message: Any) -> None:
        self.events.append((event, dev_eui, message))

    def of(self, event: str, dev_eui: str) -> list[Any]:
        return [m for e, d, m in self.events if e == event and d == dev_eui]


@dataclass
class SimCity:
    world: World
    files: CityFiles
    fleet: Fleet
    gateway: GatewayProcess
    network: NetworkLog
    clock: ScaledClock

    async def api(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.gateway.request(method, path, **kwargs)

    async def device(self, dev_eui: str) -> dict[str, Any]:
        return dict(await self.api("GET", f"/api/v1/devices/{dev_eui}"))

    async def events(self, type_: str, dev_eui: str) -> list[dict[str, Any]]:
        body = await self.api("GET", "/api/v1/events", params={"type": type_, "dev_eui": dev_eui})
        return list(body["events"])


def build_world(epoch: float) -> World:
    """Four bins and four lamps at fixed places; no random traffic (tests send road users)."""
    world = World(seed=3, start_time=epoch, traffic_scale=0.0)
    world.add_bin("02c17a0b000000a1", "Søndergade", 120.0, name="bin-fill", fill_percent=40.0,
                  fill_rate_percent_per_h=0.0)  # fmt: skip
    world.add_bin("02c17a0b000000a2", "Vestergade", 200.0, name="bin-fire", fill_percent=20.0,
                  fill_rate_percent_per_h=0.0)  # fmt: skip
    world.add_bin("02c17a0b000000a3", "Mejlgade", 400.0, name="bin-power", fill_percent=30.0,
                  fill_rate_percent_per_h=0.0)  # fmt: skip
    world.add_bin("02c17a0b000000a4", "Nørre Allé", 300.0, name="bin-late", fill_percent=10.0,
                  fill_rate_percent_per_h=0.0)  # fmt: skip
    for index, along in enumerate((100.0, 160.0, 220.0)):
        world.add_lamp(f"02c17a0c000000b{index + 1}", "Mejlgade", along, name=f"lamp-m{index + 1}")
    world.add_lamp("02c17a0c000000c1", "Vestergade", 300.0, name="lamp-profile")
    return world


@contextlib.asynccontextmanager
async def sim_city(
    workdir: Path,
    broker_url: str,
    *,
    speed: float = 100.0,
    report_interval_s: int = 120,
    epoch: float | None = None,
) -> Any:
    """The city running: ``epoch`` is where its accelerated clock starts (shortly after the
    latest sunset, tools/sim/clock.py ``evening_start``, when None)."""
    epoch = evening_start(time.time()) if epoch is None else epoch
    clock = ScaledClock(speed)
    world = build_world(epoch)
    files = write_city(world, workdir / "city")
    network = NetworkLog()
    overrides: dict[str, dict[str, Any]] = {
        "lamps": {
            "presence_duration_s": 60,
            "presence_dim_level": 100,
            "day_start_hour_utc": 0,  # the gateway's wall clock is not the simulated evening
            "day_end_hour_utc": 0,
            "profiles": {"default": TEST_PROFILE},
        },
        "availability": {"check_interval_s": 1.0},
    }
    gateway = GatewayProcess(
        workdir, mqtt_url=broker_url, application_id=APPLICATION_ID, overrides=overrides
    )
    async with gateway:
        await gateway.register(registry_entries(world, files))
        fleet = Fleet(
            world,
            files,
            clock=clock,
            epoch=epoch,
            mqtt_url=broker_url,
            application_id=APPLICATION_ID,
            report_interval_s=report_interval_s,
            boot_spread_s=10.0,
            powered_off=frozenset({LATE_BIN}),
        )
        async with fleet:
            fleet.netsim.server.add_event_sink(network)
            yield SimCity(world, files, fleet, gateway, network, clock)
