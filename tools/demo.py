"""`citypack demo`: the whole city on one laptop.

What runs, and where (one asyncio event loop in this process, plus the gateway as a child):

- an MQTT broker: amqtt embedded in this loop on a free loopback port, or ``--broker URL``;
- the ChirpStack-compatible emulator (``tools.netsim``) in this loop, fed by the simulated
  gateways through the in-process path and publishing ChirpStack's MQTT events to the broker;
- the fleet (``tools.sim.fleet``): the real firmware apps and MAC on simulated radios, sensors
  and clocks, in this loop, in time accelerated by ``--speed``
  (:class:`tools.sim.clock.ScaledClock`);
- the gateway as ``citypack gateway run --config FILE``, a child process on SQLite in the work
  directory: it sees only MQTT and HTTP, exactly as in production, and gets its own core.

The in-process parts share one loop because the emulator must answer a node inside its receive
window (1 s of simulated time, 1/speed of it in real time) without a network hop; the gateway is
a separate process because that is how it is deployed, and because it keeps the demo an honest
end-to-end test of the public interfaces (MQTT topics, HTTP API, metrics).

Before every part exists, the demo runs what it can (the broker and the simulated world) and
says plainly which part is missing; it never shows a number no component produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from tools.errors import CliError
from tools.sim.broker import EmbeddedBroker
from tools.sim.city import registry_entries, write_city
from tools.sim.clock import WALL_LEAD_S, ScaledClock, SimTime, evening_start
from tools.sim.gatewayproc import GatewayProcess, GatewayProcessError
from tools.sim.outcomes import WorldAccounting
from tools.sim.view import CityState, NodeRow, View, reconciliation
from tools.sim.watch import MqttWatcher
from tools.sim.world import AARHUS_LATITUDE, AARHUS_LONGITUDE, World, WorldEvent, is_dark

APPLICATION_ID = "8c1c5a3e-2f4b-4a57-9c1e-6b0d3f2a7e10"  # netsim's default application UUID

# The lamps' night program (TALQ ControlProgram): half light after sunset, a quarter from 23:00
# local, off at sunrise; road users raise a lamp to full for two minutes (DynamicControl).
DEMO_PROFILE: dict[str, Any] = {
    "config_version": 1,
    "base_level": 100,
    "boost_level": 100,
    "hold_time_s": 120,
    "steps": [
        {"anchor": "sunset", "offset_min": 0, "dim_level": 50},
        {"anchor": "clock", "offset_min": 23 * 60, "dim_level": 25},
        {"anchor": "sunrise", "offset_min": 0, "dim_level": 0},
    ],
}


@dataclass
class DemoOptions:
    bins: int = 40
    lamps: int = 30
    speed: float = 60.0
    duration_s: float | None = None
    broker_url: str | None = None
    capture: Path | None = None
    workdir: Path | None = None
    seed: int = 1
    report_interval_s: int = 300
    summary_every_s: float = 5.0
    truck_every_s: float = 3600.0  # simulated: how often the truck asks for the collection list
    # a fraction of a city-centre evening's road users: enough to see lamps follow them,
    # few enough that one laptop carries the presence reports and overrides at ×60
    traffic_scale: float = 0.15
    # incidents per simulated hour across the city: a bin fire (out again after half an hour)
    # or a bin knocked over (stood up by the next truck round), so alarms show up too
    incidents_per_h: float = 0.5
    gateway: dict[str, dict[str, Any]] = field(default_factory=dict)  # config overrides
    os2iot: bool = False  # the city as an OS2iot city runs it (tools/os2iot/demo.py)
    fuota: bool = False  # a FUOTA campaign to one street's lamps (tools/fuota_demo.py)


@dataclass
class DemoResult:
    workdir: Path
    components: dict[str, str]
    counters: dict[str, float]
    uplinks_processed: float | None
    api_url: str = ""
    token_file: str = ""
    gateway_stats: dict[str, Any] | None = None  # GET /api/v1/stats just before stopping
    failure: str = ""  # a part that stopped on its own during the run
    reconciliation: dict[str, Any] = field(default_factory=dict)  # view.reconciliation()
    commands_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    outcomes: dict[str, Any] = field(default_factory=dict)  # tools/sim/outcomes.py
    interrupted: bool = False  # Ctrl-C / SIGTERM before the end
    # more sections of demo-summary.json, by name (other modules add theirs here)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        doc = {
            "workdir": str(self.workdir),
            "components": self.components,
            "counters": self.counters,
            "uplinks_processed": self.uplinks_processed,
            "reconciliation": self.reconciliation,
            "commands_by_kind": self.commands_by_kind,
            "api_url": self.api_url,
            "token_file": self.token_file,
            "gateway_stats": self.gateway_stats,
            "failure": self.failure,
            "outcomes": self.outcomes,
            "interrupted": self.interrupted,
        }
        for name, value in self.extra.items():
            doc.setdefault(name, value)  # the fields above keep their meaning
        return doc


def _broker_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise CliError(f"--broker must look like mqtt://HOST:PORT, got {url!r}")
    return parts.hostname, parts.port or 1883


def _fleet_module() -> tuple[Any | None, str | None]:
    """The fleet simulator, or why it cannot run yet (a missing firmware or emulator part)."""
    try:
        from tools.sim import fleet
    except ImportError as exc:
        return None, f"cannot import the fleet simulator: {exc}"
    reason = fleet.missing()
    return (None, reason) if reason else (fleet, None)


class Demo:
    def __init__(self, options: DemoOptions, stream: IO[str] | None = None) -> None:
        self.options = options
        self.stream = stream or sys.stdout
        self.stop = asyncio.Event()
        self._starting = True  # a Ctrl-C now cancels the start-up instead of waiting for it
        self._main: asyncio.Task[Any] | None = None
        self._story = logging.getLogger("citypack.demo")
        self._sim_origin = (0.0, 0.0)  # (simulated time, wall time) when the sim clock started

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
        self._story.info(text)

    async def run(self) -> DemoResult:
        opts = self.options
        started = time.monotonic()
        self._main = asyncio.current_task()
        self._install_signals()  # first: a Ctrl-C at any moment stops every part cleanly
        with contextlib.ExitStack() as cleanup:
            if opts.workdir is None:
                tmp = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="citypack-demo-"))
                workdir = Path(tmp)
            else:
                workdir = opts.workdir.resolve()
                workdir.mkdir(parents=True, exist_ok=True)
            result = await self._run(workdir, started)
            if opts.workdir is None:
                self.say(
                    f"the temporary work directory {workdir} (summary, logs, database) is "
                    "removed now; --workdir DIR keeps them"
                )
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, workdir: Path, started: float) -> DemoResult:
        # demo.log: the story as printed (every line the demo says, the city's events, the
        # summaries) and the warnings of the in-process parts (amqtt, emulator, fleet), which
        # would otherwise scribble over the live screen.
        handler = logging.FileHandler(workdir / "demo.log", encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        self._story.setLevel(logging.INFO)
        try:
            return await self._run_logged(workdir, started)
        finally:
            root.removeHandler(handler)
            handler.close()

    async def _run_logged(self, workdir: Path, started: float) -> DemoResult:
        opts = self.options
        # a FUOTA campaign's lamps keep behind the gateway's clock (tools/sim/clock.py)
        epoch = evening_start(time.time(), before_s=WALL_LEAD_S if opts.fuota else 0.0)
        clock = ScaledClock(opts.speed)
        self._sim_origin = (epoch, time.time())  # the dashboard shows this simulated clock too
        sim = SimTime(clock, epoch)
        state = CityState(speed=opts.speed, sim_time=epoch)
        state.sinks.append(self._story.info)  # the story goes to demo.log in every mode
        # Demo pace: bins fill in hours rather than days, so the truck has work within minutes.
        world = World.aarhus(
            bins=opts.bins,
            lamps=opts.lamps,
            seed=opts.seed,
            start_time=epoch,
            fill_rate_range=(4.0, 25.0),
            traffic_scale=opts.traffic_scale,
        )
        accounting = WorldAccounting(world, profile=DEMO_PROFILE)  # issue 21: outcomes
        world_events: list[WorldEvent] = []
        world.on_event = world_events.append
        files = write_city(world, workdir / "city")
        for b in world.bins.values():
            state.nodes[b.dev_eui] = NodeRow(b.dev_eui, "bin", b.name, b.street, b.fill_percent)
        for lamp in world.lamps.values():
            state.nodes[lamp.dev_eui] = NodeRow(lamp.dev_eui, "lamp", lamp.name, lamp.street, 0.0)

        fleet_mod, fleet_reason = _fleet_module()
        components = state.components
        self.say(
            f"citypack demo: {opts.bins} bins and {opts.lamps} lamps along "
            f"{len(world.streets)} streets of Aarhus, simulated time ×{opts.speed:g} from "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(epoch))}; work directory {workdir}"
        )
        self.say(f"inventory {files.inventory_path} (keys in {files.secrets_path}, mode 0600)")
        result = DemoResult(workdir, components, counters={}, uplinks_processed=None)
        try:
            async with contextlib.AsyncExitStack() as stack:
                await self._city(
                    stack,
                    workdir,
                    started,
                    state,
                    world,
                    world_events,
                    files,
                    sim,
                    clock,
                    epoch,
                    fleet_mod,
                    fleet_reason,
                    result,
                    accounting,
                )
        except asyncio.CancelledError:
            main = self._main
            if not self.stop.is_set() or main is None or main is not asyncio.current_task():
                raise
            main.uncancel()  # our own Ctrl-C during start-up: every part is stopped now
            result.interrupted = True
            self.say("stopped during start-up (Ctrl-C)")
        result.components = dict(components)
        result.counters = dict(state.counters)
        result.reconciliation = reconciliation(state.counters)
        result.commands_by_kind = {k: dict(v) for k, v in state.command_counts.items()}
        result.api_url, result.token_file = state.api_url, state.token_file
        result.outcomes = accounting.finish().as_json()  # issue 21
        view = View(state, stream=self.stream)
        for line in view.summary_lines():
            self.say(line)
        self.say(accounting.outcomes.text())
        summary = workdir / "demo-summary.json"
        summary.write_text(json.dumps(result.as_json(), indent=2) + "\n")
        if opts.workdir is not None:
            self.say(f"summary {summary}; the story in {workdir / 'demo.log'}")
        return result

    async def _city(
        self,
        stack: contextlib.AsyncExitStack,
        workdir: Path,
        started: float,
        state: CityState,
        world: World,
        world_events: list[WorldEvent],
        files: Any,
        sim: SimTime,
        clock: ScaledClock,
        epoch: float,
        fleet_mod: Any,
        fleet_reason: str | None,
        result: DemoResult,
        accounting: WorldAccounting,
    ) -> None:
        opts = self.options
        components = state.components
        if opts.broker_url:
            host, port = _broker_address(opts.broker_url)
            broker_url = opts.broker_url
            components["broker"] = f"external {broker_url}"
        else:
            broker = await stack.enter_async_context(EmbeddedBroker())
            host, port, broker_url = broker.host, broker.port, broker.url
            components["broker"] = f"amqtt {broker_url}"
        state.broker_url = broker_url
        # watch from the start, so the first joins and commands are counted too
        watcher = MqttWatcher(
            state,
            host=host,
            port=port,
            on_gateway_event=lambda kind, eui: accounting.gateway_event(kind, eui, sim.now()),
        )
        watch_task = asyncio.create_task(self._watch(watcher), name="demo-watch")

        async def stop_watching() -> None:
            watch_task.cancel()
            await asyncio.gather(watch_task, return_exceptions=True)

        stack.push_async_callback(stop_watching)

        overrides = self._gateway_overrides()
        os2iot = None
        if opts.os2iot:  # OS2iot first: its address goes into the gateway's [os2iot] section
            from tools.os2iot.demo import Os2iotDemo

            os2iot = await stack.enter_async_context(Os2iotDemo(workdir, broker_url))
            overrides.update(os2iot.gateway_overrides())
            components["os2iot"] = f"emulator {os2iot.emulator.url} (ChirpStack emulator behind it)"
        fuota = None
        if opts.fuota:  # the emulator's gRPC address goes into [chirpstack] and [multicast]
            from tools.fuota_demo import FuotaDemo

            fuota = FuotaDemo(workdir, world, opts.speed)
            stack.callback(fuota.close)
            overrides.update(fuota.gateway_overrides())
            components["fuota"] = f"{len(fuota.lamps)} lamps of {fuota.street}"
        process = GatewayProcess(
            workdir,
            mqtt_url=broker_url,
            application_id=APPLICATION_ID,
            overrides=overrides,
        )
        await process.start()
        stack.push_async_exit(process)
        components["gateway"] = f"starting (pid {process.pid})"
        self.say(f"  gateway: starting (pid {process.pid}, log {process.log_file})")
        # registered before the first node joins: no uplink reaches an unknown device, so the
        # gateway never has to 'discover' one of the city's own nodes
        try:
            await self._gateway_up(process, world, files, state)
        except GatewayProcessError as exc:
            result.failure = f"the gateway did not start: {exc}"
            components["gateway"] = "failed"
            self.say(f"citypack demo: {result.failure}")
            return

        fleet = None
        fleet_stack = await stack.enter_async_context(contextlib.AsyncExitStack())
        if fleet_mod is not None:
            fleet = await fleet_stack.enter_async_context(
                fleet_mod.Fleet(
                    world,
                    files,
                    clock=clock,
                    epoch=epoch,
                    mqtt_url=broker_url,
                    application_id=APPLICATION_ID,
                    capture=opts.capture,
                    report_interval_s=opts.report_interval_s,
                    on_node=self._node_callback(state),
                    **(os2iot.fleet_options(sorted(state.nodes)) if os2iot else {}),
                    **(fuota.fleet_options() if fuota else {}),
                )
            )
            if os2iot is not None:  # created through OS2iot, then pushed to the gateway
                registered = await os2iot.register(fleet, files)
                await os2iot.connect(process.api_url, fleet)
                self.say(
                    f"  os2iot: {registered} devices created through OS2iot's API; uplinks "
                    "reach the gateway by its HTTP-push data target, commands go out through it"
                )
                stack.callback(lambda: result.extra.update(os2iot=os2iot.summary()))
            components["emulator"] = "running (in-process)"
            components["fleet"] = f"running ({len(world.bins) + len(world.lamps)} nodes)"
        else:
            components["emulator+fleet"] = f"not running: {fleet_reason}"
            if opts.capture is not None:
                components["capture"] = f"not written: {fleet_reason}"
        for name, status in components.items():
            self.say(f"  {name}: {status}")
        self.say(f"ready in {time.monotonic() - started:.1f} s; Ctrl-C stops")
        self._starting = False

        fuota_task: asyncio.Task[None] | None = None
        if fuota is not None and fleet is not None:
            campaign = fuota

            async def update_street() -> None:
                try:
                    await campaign.run(process, state.event)
                except GatewayProcessError as exc:
                    campaign.summary["state"] = f"stopped: {exc}"
                if opts.duration_s is None:  # the demo's story ends with the street updated
                    self.stop.set()

            fuota_task = asyncio.create_task(update_street(), name="demo-fuota")

            async def stop_fuota() -> None:
                if fuota_task is not None:
                    fuota_task.cancel()
                    await asyncio.gather(fuota_task, return_exceptions=True)

            stack.push_async_callback(stop_fuota)
            stack.callback(lambda: result.extra.update(fuota=campaign.summary))
        view = View(state, stream=self.stream)
        gateway: GatewayProcess | None = process  # None once it stopped on its own
        fires: dict[str, float] = {}  # bin on fire -> simulated time it goes out
        deadline = None if opts.duration_s is None else time.monotonic() + opts.duration_s
        next_summary = time.monotonic() + opts.summary_every_s
        next_poll = time.monotonic()
        next_truck = sim.now() + opts.truck_every_s / 4
        with view:
            while not self.stop.is_set():
                now_sim = sim.now()
                if fleet is None:
                    world.advance(now_sim)  # with a fleet, the fleet moves the world
                self._incidents(world, now_sim - state.sim_time, fires)
                state.sim_time = now_sim
                state.dark = is_dark(now_sim)
                self._sync_world(state, world, world_events, fleet)
                if gateway is not None and gateway.returncode is not None:
                    result.failure = (
                        f"the gateway exited with {gateway.returncode} during the demo; "
                        f"see {gateway.log_file}"
                    )
                    components["gateway"] = f"exited ({gateway.returncode})"
                    state.event(result.failure)
                    gateway = None
                if gateway is not None and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + 1.0
                    await self._poll_gateway(gateway, state)
                if gateway is not None and now_sim >= next_truck and not world.truck.active:
                    next_truck = now_sim + opts.truck_every_s
                    await self._truck_round(gateway, world, state)
                view.refresh()
                if time.monotonic() >= next_summary:
                    next_summary += opts.summary_every_s
                    for line in view.summary_lines():
                        (view.line if not view.live_mode else self._story.info)(line)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):  # not wait_for: CPython gh-86296
                        await self.stop.wait()
        self.say("stopping: the fleet first, then the gateway gets what is in flight ...")
        await fleet_stack.aclose()  # no uplink is sent after this
        if fleet is not None:
            fleet.update_counters(state.counters)
        if gateway is not None:
            await self._drain(gateway, state)
            with contextlib.suppress(GatewayProcessError):
                result.gateway_stats = await gateway.request("GET", "/api/v1/stats")
            result.uplinks_processed = state.counters.get("gateway_uplinks_processed")

    @staticmethod
    async def _poll_gateway(gateway: GatewayProcess, state: CityState) -> None:
        """The gateway's own uplink counters (``citypack_uplinks_total{outcome}``)."""
        with contextlib.suppress(GatewayProcessError):
            metrics = await gateway.metrics()
            for outcome in ("processed", "duplicate", "undecodable", "invalid_event"):
                value = metrics.get(f'citypack_uplinks_total{{outcome="{outcome}"}}')
                if value is not None:
                    state.counters[f"gateway_uplinks_{outcome}"] = value

    async def _drain(
        self, gateway: GatewayProcess, state: CityState, limit_s: float = 10.0
    ) -> None:
        """Wait (bounded) until the gateway has accounted for every uplink published, so the
        counters at the end add up with nothing in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while True:
            await self._poll_gateway(gateway, state)
            in_flight = reconciliation(state.counters).get("gateway", {}).get("in_flight", 0)
            if in_flight <= 0 or loop.time() > deadline:
                return
            await asyncio.sleep(0.2)

    def _incidents(self, world: World, dt: float, fires: dict[str, float]) -> None:
        """Now and then a bin catches fire or is knocked over (``incidents_per_h``)."""
        for dev_eui, out_at in list(fires.items()):
            if world.time >= out_at:
                world.extinguish(dev_eui)
                del fires[dev_eui]
        if not world.bins or dt <= 0:
            return
        if world.rng.random() >= self.options.incidents_per_h * dt / 3600.0:
            return
        dev_eui = world.rng.choice(sorted(world.bins))
        if world.rng.random() < 0.5:
            world.set_fire(dev_eui, temperature_c=world.rng.uniform(75.0, 110.0))
            fires[dev_eui] = world.time + 1800.0
        else:
            world.tip_over(dev_eui)

    async def _gateway_up(
        self, gateway: GatewayProcess, world: World, files: Any, state: CityState
    ) -> None:
        """Wait for ``/readyz``, register the city's devices, then say where the API is."""
        await gateway.wait_ready()
        await gateway.register(registry_entries(world, files))
        state.components["gateway"] = f"running (pid {gateway.pid}, SQLite {gateway.database})"
        state.api_url = gateway.api_url + "/api/v1"
        state.token_file = str(gateway.token_file)
        self.say(f"gateway: running; API {state.api_url} (token in {state.token_file})")
        self.say(f"dashboard: {gateway.api_url}/ (log in with the token in {state.token_file})")

    @staticmethod
    async def _truck_round(gateway: GatewayProcess, world: World, state: CityState) -> None:
        """Send the truck to the bins the gateway lists as full (GET /api/v1/collection) in the
        order of its planned round (GET /api/v1/collection/route), then to those it knows are
        knocked over (GET /api/v1/devices?kind=bin, ``derived.tilt``). Only the full ones: the
        route's forecast compares with the gateway's wall clock, while the demo's bins report in
        simulated time. Without a route (the planner refused), nearest first: the list keeps
        working without one."""
        try:
            listing = await gateway.request("GET", "/api/v1/collection")
            bins = await gateway.request("GET", "/api/v1/devices", params={"kind": "bin"})
        except (GatewayProcessError, ValueError) as exc:
            state.event(f"truck: no collection list ({exc})")
            return
        full = [row["dev_eui"] for row in listing.get("bins", []) if row.get("reason") == "full"]
        tipped = [
            d["dev_eui"]
            for d in bins.get("devices", [])
            if isinstance(d.get("derived"), dict) and d["derived"].get("tilt")
        ]
        planned: list[str] = []
        if full:
            try:
                plan = await gateway.request("GET", "/api/v1/collection/route")
                planned = [s["dev_eui"] for r in plan.get("routes", []) for s in r["stops"]]
            except (GatewayProcessError, ValueError, KeyError, TypeError) as exc:
                state.event(f"truck: no planned route ({exc}); nearest bin first")
        wanted = set(full)
        order = [eui for eui in planned if eui in wanted]
        on_route = set(order)
        order += [eui for eui in full if eui not in on_route]
        route = world.dispatch_truck([*order, *tipped], in_order=bool(planned))
        if route:
            state.event(
                f"truck: round to {len(full)} full and {len(tipped)} knocked-over bins "
                "from the gateway's lists" + (", in its planned order" if planned else "")
            )

    def _gateway_overrides(self) -> dict[str, dict[str, Any]]:
        opts = self.options
        # Simulated minutes pass in real seconds: the gateway's timers are in real time, so the
        # intervals it expects from nodes shrink by the speed factor. Its rules (fill rate,
        # forecast, day burner) read the events' time, which netsim stamps with the simulated
        # clock (tools/sim/fleet.py); the day-burner window stays off so a short demo run shows
        # only the faults the world injects.
        overrides: dict[str, dict[str, Any]] = {
            "lamps": {
                "day_start_hour_utc": 0,
                "day_end_hour_utc": 0,
                "presence_duration_s": 120,
                "profiles": {"default": DEMO_PROFILE},
            },
            # the truck's round (GET /api/v1/collection/route), also on the dashboard: one truck
            # from the centre, where the simulated truck starts; it goes out every simulated hour
            "routes": {
                "depot_latitude": AARHUS_LATITUDE,
                "depot_longitude": AARHUS_LONGITUDE,
                "next_round_h": 1.0,
            },
            # two report intervals of slack: a node may wait out its duty cycle before reporting
            "availability": {
                "bin_interval_s": max(1.0, 2 * opts.report_interval_s / opts.speed),
                "lamp_interval_s": max(1.0, 2 * opts.report_interval_s / opts.speed),
                "default_interval_s": max(1.0, 2 * opts.report_interval_s / opts.speed),
                "check_interval_s": 1.0,
            },
        }
        # the dashboard: Aarhus time, and the simulated clock the terminal shows
        epoch, wall_start = self._sim_origin
        overrides["web"] = {
            "timezone": "Europe/Copenhagen",
            "sim_epoch": epoch,
            "sim_wall_start": wall_start,
            "sim_speed": opts.speed,
        }
        for section, values in opts.gateway.items():
            overrides.setdefault(section, {}).update(values)
        return overrides

    @staticmethod
    def _node_callback(state: CityState) -> Any:
        def on_node(dev_eui: str, what: str, detail: str) -> None:
            if what == "boot" and detail == "(power_on)":
                return  # every node boots once at the start: not news
            state.event(f"{what} {state.name_of(dev_eui)} {detail}".rstrip())

        return on_node

    @staticmethod
    def _sync_world(
        state: CityState, world: World, events: list[WorldEvent], fleet: Any | None
    ) -> None:
        for dev_eui, sim_bin in world.bins.items():
            state.nodes[dev_eui].world_value = sim_bin.fill_percent
        for dev_eui, lamp in world.lamps.items():
            state.nodes[dev_eui].world_value = float(lamp.dim_level)
        if fleet is not None:
            for dev_eui, mode in fleet.lamp_modes().items():
                state.nodes[dev_eui].mode = mode
            fleet.update_counters(state.counters)
        state.counters["road_users_on_streets"] = len(world.road_users)
        state.counters["truck_bins_emptied"] = world.truck.emptied
        for event in events:
            if event.kind != "road_user":
                state.event(f"world: {event.detail}")
        events.clear()

    async def _watch(self, watcher: MqttWatcher) -> None:
        while True:  # the broker may restart under an external --broker; keep watching
            try:
                await watcher.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                watcher.state.event(f"view: MQTT connection lost ({type(exc).__name__})")
                await asyncio.sleep(1.0)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        """Ctrl-C / SIGTERM: stop at the next check; during start-up (waiting for the gateway,
        starting the fleet) cancel it, and every part started so far is stopped on the way out."""
        first = not self.stop.is_set()
        self.stop.set()
        if first and self._starting and self._main is not None:
            self._main.cancel()


def run_demo(options: DemoOptions, stream: IO[str] | None = None) -> DemoResult:
    """Run the demo to its end (``--duration``) or until Ctrl-C / SIGTERM."""
    return asyncio.run(Demo(options, stream).run())
