"""One street of simulated lamps under a FUOTA-capable gateway: what the campaign bench
(tools/bench/fuota_campaign.py) and the end-to-end campaign test (tests/e2e/test_fuota_campaign.py)
both run.

``citypack gateway run`` (a child process, SQLite) with ``[multicast]`` (grouped by street, DR5)
and ``[fuota]`` on, the emulator's gRPC API on a free loopback port (``MulticastGroupService``,
``DeviceService.GetKeys``), and lamps of the fleet simulator running the firmware's MAC, lamp app
and fuota agent (tools/sim/fuota.py) in time accelerated ``speed`` times, each multicast frame lost
per lamp with probability ``loss`` (tools/sim/network.py). The context yields once every lamp has
joined and the gateway has heard from it.

Two clocks, on purpose: the lamps and the emulator run on the world's accelerated clock, the
gateway on the wall clock. A lamp's DeviceTimeAns (L2 1.0.4 §5.9, from the emulator) therefore
puts it on world time, which a city never sees (ChirpStack and the FUOTA server both keep GPS
time): a lamp that asks for DeviceTime after the campaign's AppTimeAns (TS003 §4.2) answers the
class C session with a TimeToStart hours away, and the gateway's clock check syncs it again
(gateway/fuota_campaign.py ``_CLOCK_SLACK_S``). That is the "lamp ~15.5 h off" the campaign
logs show: 40 x the ~23 wall minutes since the world started.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.sim.broker import ReservedPort
from tools.sim.city import registry_entries, write_city
from tools.sim.clock import WALL_LEAD_S, ScaledClock, evening_start
from tools.sim.fleet import Fleet
from tools.sim.fuota import FuotaNodes
from tools.sim.gatewayproc import GatewayProcess
from tools.sim.world import World

__all__ = ["FuotaStreet", "fuota_street"]

CS_TOKEN = "chirpstack-fuota-street-token-0123456789"


@dataclass
class FuotaStreet:
    gateway: GatewayProcess
    fleet: Fleet
    world: World
    workdir: Path

    async def api(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.gateway.request(method, path, **kwargs)


@contextlib.asynccontextmanager
async def fuota_street(
    workdir: Path,
    *,
    mqtt_url: str,
    lamps: list[str],
    street: str,
    public_key_hex: str,
    fuota: dict[str, Any],
    loss: float,
    seed: int,
    first_m: float = 20.0,
    spacing_m: float = 15.0,
    speed: float = 40.0,
    report_interval_s: int = 900,
    boot_spread_s: float = 30.0,
    ready: Callable[[FuotaStreet, str], Awaitable[bool]] | None = None,
    ready_within_s: float = 600.0,
) -> AsyncIterator[FuotaStreet]:
    """The street, its gateway and its lamps; ``ready(street, dev_eui)`` says when a lamp is up
    (default: the gateway has its ``firmware_version``)."""
    application_id = str(uuid.uuid4())  # a shared broker: nothing of another run reaches this one
    epoch = evening_start(time.time(), before_s=WALL_LEAD_S)  # tools/sim/clock.py says why
    world = World(seed=seed, start_time=epoch, traffic_scale=0.0)
    for index, eui in enumerate(lamps):
        world.add_lamp(eui, street, first_m + spacing_m * index, name=f"lamp-f{index + 1}")
    files = write_city(world, workdir / "city")
    (workdir / "cs-token").write_text(CS_TOKEN + "\n")
    (workdir / "mc-key").write_text(uuid.uuid4().hex + "\n")
    reserved = ReservedPort()  # the gateway is told the port before the emulator binds it
    grpc_port = reserved.port
    overrides: dict[str, dict[str, Any]] = {
        "chirpstack": {
            "api": f"127.0.0.1:{grpc_port}",
            "api_token_file": str(workdir / "cs-token"),
        },
        "multicast": {
            "enabled": True,
            "key_file": str(workdir / "mc-key"),
            "group_by": "street",
            "dr": 5,
        },
        "fuota": {"enabled": True, **fuota},
    }
    gateway = GatewayProcess(
        workdir / "gw", mqtt_url=mqtt_url, application_id=application_id, overrides=overrides
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(reserved.close)
        await stack.enter_async_context(gateway)
        await gateway.register(registry_entries(world, files))
        fleet = Fleet(
            world,
            files,
            clock=ScaledClock(speed),
            epoch=epoch,
            mqtt_url=mqtt_url,
            application_id=application_id,
            report_interval_s=report_interval_s,
            boot_spread_s=boot_spread_s,
            fuota=FuotaNodes(bytes.fromhex(public_key_hex), workdir / "fs"),
            grpc=("127.0.0.1", grpc_port),
            api_token=CS_TOKEN,
            multicast_loss=loss,
        )
        async with fleet:
            rig = FuotaStreet(gateway, fleet, world, workdir)
            up = ready or _version_reported
            deadline = time.monotonic() + ready_within_s
            for eui in lamps:  # bounded: every lamp joined and reported
                while not await up(rig, eui):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"lamp {eui} did not come up in {ready_within_s:.0f} s")
                    await asyncio.sleep(0.5)
            yield rig


async def _version_reported(rig: FuotaStreet, eui: str) -> bool:
    device = await rig.api("GET", f"/api/v1/devices/{eui}")
    return bool(device.get("reported", {}).get("firmware_version"))
