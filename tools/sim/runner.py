"""`citypack sim`: run a fleet against the in-process emulator or any GWMP endpoint.

With ``--udp HOST:PORT`` the simulated gateways are packet forwarders (GWMP v2) talking to that
endpoint: the emulator's (``citypack netsim --udp``) or a real ChirpStack Gateway Bridge, which
makes the simulator a load generator for a city's own network server. The devices must then be
known to that server with the same keys: the inventory and secrets files are written to
``--workdir`` (and reused from it on the next run), ready for ``citypack provision register``.
Without ``--udp`` the fleet uses the in-process emulator, which publishes to ``--broker`` if
given.

Simulated time runs ``--speed`` times faster than real time. Against a real network server keep
``--speed 1``: it answers in real time, and its RX windows are real seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tools.sim.city import write_city
from tools.sim.clock import ScaledClock, evening_start
from tools.sim.outcomes import WorldAccounting
from tools.sim.world import World


@dataclass
class SimOptions:
    bins: int = 40
    lamps: int = 30
    speed: float = 60.0
    duration_s: float | None = None
    udp: tuple[str, int] | None = None
    broker_url: str | None = None
    workdir: Path | None = None
    capture: Path | None = None
    report_interval_s: int = 900
    seed: int = 1
    summary_every_s: float = 5.0


async def run_sim(options: SimOptions, out: IO[str]) -> dict[str, Any]:
    from tools.sim.fleet import Fleet

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.ExitStack() as cleanup:
        if options.workdir is None:
            workdir = Path(
                cleanup.enter_context(tempfile.TemporaryDirectory(prefix="citypack-sim-"))
            )
        else:
            workdir = options.workdir
        epoch = evening_start(time.time())
        clock = ScaledClock(options.speed)
        world = World.aarhus(
            bins=options.bins, lamps=options.lamps, seed=options.seed, start_time=epoch
        )
        files = write_city(world, workdir)
        # no gateway here: the lamps run the firmware's default program (full from sunset)
        accounting = WorldAccounting(world, profile=None)
        say(
            f"citypack sim: {options.bins} bins, {options.lamps} lamps, ×{options.speed:g}; "
            f"inventory {files.inventory_path}"
        )

        def on_node(dev_eui: str, what: str, detail: str) -> None:
            if what not in ("boot",):
                say(f"  {dev_eui} {what} {detail}".rstrip())

        fleet = Fleet(
            world,
            files,
            clock=clock,
            epoch=epoch,
            mqtt_url=options.broker_url,
            capture=options.capture,
            report_interval_s=options.report_interval_s,
            on_node=on_node,
            udp=options.udp,
        )
        target = (
            f"GWMP to {options.udp[0]}:{options.udp[1]}"
            if options.udp
            else "the in-process emulator"
            + (f" publishing to {options.broker_url}" if options.broker_url else "")
        )
        started = time.monotonic()
        counters: dict[str, float] = {}
        async with fleet:
            say(f"running against {target}; Ctrl-C stops")
            deadline = None if options.duration_s is None else started + options.duration_s
            while not stop.is_set():
                wait = options.summary_every_s
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # not wait_for: CPython gh-86296
                        await stop.wait()
                fleet.update_counters(counters)
                sim_clock = time.strftime(
                    "%H:%M:%S", time.gmtime(epoch + clock.ticks_ms() / 1000.0)
                )
                say(f"[sim {sim_clock}] " + " ".join(f"{k}={v:g}" for k, v in counters.items()))
                if deadline is not None and time.monotonic() >= deadline:
                    break
        wall = time.monotonic() - started
        summary = {
            "wall_s": round(wall, 3),
            "simulated_s": round(clock.ticks_ms() / 1000.0, 3),
            "counters": counters,
            "uplinks_per_wall_s": round(counters.get("uplinks_on_air", 0) / wall, 2),
            "outcomes": accounting.finish().as_json(),
        }
        say(accounting.outcomes.text())
        say(json.dumps(summary))
        if options.workdir is not None:
            (workdir / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary
