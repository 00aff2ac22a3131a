"""How fast the fleet simulator runs a city: uplinks per second of wall time.

Goal (issue 6, "Numbers"): a 10,000-node city reporting once per 15 minutes of simulated time runs
at least 10 times faster than real time. Such a city sends 10,000 / 900 s = 11.1 uplinks per
simulated second, so 10× real time needs 111 uplinks per second of wall time through the whole
node-to-network path: the real firmware (bin app, generated codec, LoRaWAN MAC with AES/CMAC),
the simulated radio and path-loss model, and the emulator (join server, de-duplication, MIC and
FCnt checks, ADR, the class A downlink path, and every event rendered as ChirpStack JSON as the
MQTT integration would publish it; the broker itself is left out).

Method: two bounded fleets (``_SMALL`` and ``_NODES`` bins) run on ``hal.clock.VirtualClock``,
which jumps to the next sleeper whenever every task waits, so the wall time measured is all CPU.
The 10,000-node figure is **extrapolated**, not measured: the cost per uplink is fitted as a power
of the fleet size from the two runs (``cost ∝ nodes^α``, α clamped at 0 so noise never makes the
extrapolation optimistic) and carried to 10,000 nodes. Each size runs twice, interleaved, and
the faster run counts (the machine is shared; the slower run measured the neighbours). The
baseline, measured in the same run, is the MAC alone building and securing the same number of
frames (``Mac.send`` with a radio that returns at once), so ``path_cost_vs_mac`` says how many
MAC-only uplinks one full-path uplink costs.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.bench.report import Figure

BENCH = "sim_speed"
_SMALL = 100
_NODES = 400
_SIM_SECONDS = 2 * 3600  # two hours: the joins, then about eight reports per node
_REPORT_INTERVAL_S = 900
_CITY_NODES = 10_000


class _JsonSink:
    """Renders every emulator event as ChirpStack JSON (the MQTT integration's CPU work)."""

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0

    def __call__(self, event: str, dev_eui: str, message: Any) -> None:
        from tools.netsim.events import encode_event

        self.bytes += len(encode_event(message, "json"))
        self.events += 1


async def _fleet_run(nodes: int, sim_seconds: int) -> dict[str, float]:
    from tools.sim.city import write_city
    from tools.sim.fleet import Fleet, _fw
    from tools.sim.world import World

    fw = _fw()
    clock = fw.clock.VirtualClock()
    epoch = 1_764_000_000.0
    world = World.aarhus(bins=nodes, lamps=0, seed=5, start_time=epoch, step_s=60.0)
    sink = _JsonSink()
    with tempfile.TemporaryDirectory(prefix="citypack-bench-sim-") as tmp:
        files = write_city(world, Path(tmp))

        async def body() -> dict[str, float]:
            fleet = Fleet(
                world,
                files,
                clock=clock,
                epoch=epoch,
                report_interval_s=_REPORT_INTERVAL_S,
                boot_spread_s=600.0,
                virtual=True,
            )
            async with fleet:
                fleet.netsim.server.add_event_sink(sink)
                started = time.perf_counter()
                await clock.sleep_ms(sim_seconds * 1000)
                wall = time.perf_counter() - started
                counters = fleet.netsim.server.counters
                joined = sum(1 for n in fleet.nodes.values() if n.mac.joined)
                return {
                    "wall_s": wall,
                    "uplinks": float(counters["uplinks"]),
                    "joins": float(counters["joins"]),
                    "joined": float(joined),
                    "radio_uplinks": float(fleet.coverage.stats.uplinks_sent),
                    "events": float(sink.events),
                    "crashes": float(fleet.crashes),
                }

        result: dict[str, float] = await clock.serve(body())
        return result


async def _mac_only(frames: int) -> float:
    """Seconds for one MAC to send ``frames`` unconfirmed uplinks with an instant radio."""
    from tools.sim.fleet import _fw

    fw = _fw()
    clock = fw.clock.VirtualClock()

    class InstantRadio:
        def configure(self) -> None:
            pass

        def sleep(self) -> None:
            pass

        async def transmit(self, *args: Any) -> int:
            return int(clock.ticks_ms())

        async def receive(self, *args: Any) -> None:
            return None

    async def body() -> float:
        store_nvs, store_rtc = fw.storage.DictStore(), fw.storage.DictStore()
        mac = fw.mac.Mac(InstantRadio(), clock, store_nvs, store_rtc, region="EU868")
        mac.activate_abp(0x260B1234, bytes(range(16)), bytes(range(16, 32)))
        payload = bytes(12)
        started = time.perf_counter()
        for _ in range(frames):
            await mac.send(2, payload, False)
            await clock.sleep_ms(200_000)  # past every duty-cycle off-time
        return time.perf_counter() - started

    result: float = await clock.serve(body())
    return result


def _checked(nodes: int) -> dict[str, float]:
    fleet = asyncio.run(_fleet_run(nodes, _SIM_SECONDS))
    if fleet["crashes"]:
        raise RuntimeError(f"{fleet['crashes']:g} simulated nodes crashed during the bench")
    if fleet["joined"] < nodes:
        raise RuntimeError(f"only {fleet['joined']:g} of {nodes} nodes joined")
    return fleet


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    return max(runs, key=lambda r: r["uplinks"] / r["wall_s"])


def run() -> list[Figure]:
    smalls: list[dict[str, float]] = []
    larges: list[dict[str, float]] = []
    for _ in range(2):
        smalls.append(_checked(_SMALL))
        larges.append(_checked(_NODES))
    small, fleet = _best(smalls), _best(larges)
    small_rate = small["uplinks"] / small["wall_s"]
    rate = fleet["uplinks"] / fleet["wall_s"]  # every frame processed, join-requests included
    alpha = max(0.0, math.log(small_rate / rate) / math.log(_NODES / _SMALL))
    city_rate_wall = rate * (_NODES / _CITY_NODES) ** alpha
    frames = int(max(100, min(fleet["uplinks"], 2000)))
    mac_s = asyncio.run(_mac_only(frames))
    mac_rate = frames / mac_s
    city_rate = _CITY_NODES / _REPORT_INTERVAL_S  # uplinks per simulated second
    note = f"{_NODES} bins, {_SIM_SECONDS / 3600:g} h simulated on the virtual clock, best of 2"
    return [
        Figure(BENCH, "uplinks_per_wall_second", round(rate, 1), "uplinks/s", note=note),
        Figure(
            BENCH,
            "cost_growth_exponent",
            round(alpha, 2),
            "alpha",
            note=(
                f"cost per uplink ~ nodes^alpha from {_SMALL} vs {_NODES} nodes "
                f"({small_rate:.0f} vs {rate:.0f} uplinks/s); 0 = flat"
            ),
        ),
        Figure(
            BENCH,
            "city_10k_speed_vs_real_time",
            round(city_rate_wall / city_rate, 2),
            "x real time",
            goal=10.0,
            better=">=",
            note="10,000 nodes at 1 uplink / 15 min, EXTRAPOLATED with the fitted alpha",
        ),
        Figure(
            BENCH,
            "nodes_at_real_time",
            round(rate * _REPORT_INTERVAL_S),
            "nodes",
            note="fleet size this machine runs at 1x real time, 1 uplink / 15 min (alpha 0)",
        ),
        Figure(
            BENCH,
            "path_cost_vs_mac",
            round(mac_rate / rate, 1),
            "x",
            note=f"full path per uplink vs the MAC alone ({mac_rate:.0f} frames/s, same run)",
        ),
        Figure(
            BENCH,
            "events_per_uplink",
            round(fleet["events"] / max(fleet["uplinks"], 1), 2),
            "events",
            note="ChirpStack JSON events rendered per processed uplink",
        ),
    ]


if __name__ == "__main__":  # pragma: no cover - manual run
    from tools.bench.report import table

    print(table(run()))
