"""The fleet simulator: the real firmware (apps + LoRaWAN MAC) of every node, in one process.

Each simulated node is the code a board runs (ARCHITECTURE.md invariant 6), imported from
``firmware/lib`` and ``firmware`` under CPython, with the host side of every HAL seam:

- ``hal.sim_radio.SimRadio`` on the in-process channel :class:`tools.sim.air.Air` (radio model,
  gateways) and from there to the emulator (:mod:`tools.sim.network`);
- ``hal.sim_pins.SimPins`` with the chip models of ``drivers.sim_devices``, whose physical inputs
  read the :class:`~tools.sim.world.World` (the distance to a bin's contents, its temperature and
  tilt, road users passing a lamp) and whose outputs write it back (a lamp's dimmer level);
- ``hal.storage.DictStore`` for NVS (kept across a power cycle) and RTC memory (lost by one);
- one shared HAL clock: :class:`tools.sim.clock.ScaledClock` when the real gateway is in the
  loop over MQTT, ``hal.clock.VirtualClock`` when nothing outside the process is (the bench).

Every node's firmware task runs in this event loop; a node that crashes is reported through
``on_node`` and counted, and the others keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tools.sim.air import Air, Uplink
from tools.sim.city import CityFiles
from tools.sim.clock import HalClock
from tools.sim.fuota import FuotaNodes, attach, run_with
from tools.sim.network import EmulatorBackhaul, UdpBackhaul, sim_datetime
from tools.sim.radio import Coverage, PathLossModel, SimGateway
from tools.sim.world import AARHUS_GATEWAYS, SimLamp, World

log = logging.getLogger("citypack.sim")

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
FIRMWARE_LIB = FIRMWARE / "lib"

# What the fleet imports from the firmware, and what each is for (for `missing()`).
_FIRMWARE_MODULES = (
    ("hal.clock", "the HAL clocks"),
    ("hal.sim_radio", "the simulated radio"),
    ("hal.sim_pins", "simulated pins, buses and power"),
    ("hal.storage", "NVS/RTC stores"),
    ("lorawan.mac", "the LoRaWAN MAC"),
    ("apps.node", "the app/MAC seam"),
    ("apps.maclink", "the link from apps to the MAC"),
    ("apps.bin_node", "the bin app"),
    ("apps.lamp_node", "the lamp app"),
    ("drivers.sim_devices", "the sensor chip models"),
)
_EMULATOR_MODULES = (("tools.netsim.runner", "the network emulator"),)

OnNode = Callable[[str, str, str], None]
_MAX_DUTY_WAIT_MS = 180_000  # an SF12 frame's 1 % off-time is about 150 s (RP002 §2)


def firmware_path() -> None:
    """Make ``firmware/lib`` and ``firmware`` importable, as the board's filesystem does."""
    for path in (str(FIRMWARE_LIB), str(FIRMWARE)):
        if path not in sys.path:
            sys.path.insert(0, path)


def missing() -> str | None:
    """Why the fleet cannot run here (the first missing module), or None when it can."""
    firmware_path()
    for module, what in (*_EMULATOR_MODULES, *_FIRMWARE_MODULES):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"{what} ({module}) is not importable yet: {exc}"
    return None


def _fw() -> SimpleNamespace:
    """The firmware modules, imported after :func:`firmware_path`."""
    firmware_path()
    names = {
        "clock": "hal.clock",
        "sim_radio": "hal.sim_radio",
        "sim_pins": "hal.sim_pins",
        "storage": "hal.storage",
        "rng": "hal.rng",
        "mac": "lorawan.mac",
        "node": "apps.node",
        "maclink": "apps.maclink",
        "bin_node": "apps.bin_node",
        "lamp_node": "apps.lamp_node",
        "sim_devices": "drivers.sim_devices",
    }
    return SimpleNamespace(**{k: importlib.import_module(v) for k, v in names.items()})


@dataclass
class SimNode:
    """One simulated node: its firmware objects and the task running its app."""

    dev_eui: str
    kind: str
    app_key: bytes
    join_eui: str
    nvs: Any
    rtc: Any = None
    radio: Any = None
    mac: Any = None
    node: Any = None
    app: Any = None
    power: Any = None
    pins: Any = None
    models: dict[str, Any] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    boots: int = 0
    crashed: str = ""
    agent: Any = None  # fuota.agent.Agent when the node takes part in FUOTA (tools.sim.fuota)


def default_coverage(seed: int = 7) -> Coverage:
    gateways = [SimGateway(gid, lat, lon, alt) for gid, lat, lon, alt in AARHUS_GATEWAYS]
    return Coverage(gateways, PathLossModel(seed=seed))


class Fleet:
    """``async with Fleet(world, files, clock=..., ...) as fleet:`` runs every node of ``world``.

    ``mqtt_url`` is the broker the emulator publishes ChirpStack's events to (None: no MQTT, as
    in the benchmark); ``udp=(host, port)`` sends GWMP to a packet-forwarder endpoint instead of
    using the in-process emulator at all.
    """

    def __init__(
        self,
        world: World,
        files: CityFiles,
        *,
        clock: HalClock,
        epoch: float,
        mqtt_url: str | None = None,
        application_id: str | None = None,
        capture: Path | None = None,
        report_interval_s: int = 300,
        on_node: OnNode | None = None,
        udp: tuple[str, int] | None = None,
        speed: float | None = None,
        coverage: Coverage | None = None,
        boot_spread_s: float = 60.0,
        netsim_options: dict[str, Any] | None = None,
        virtual: bool = False,
        powered_off: frozenset[str] = frozenset(),
        register_in_emulator: bool = True,
        fuota: FuotaNodes | None = None,
        grpc: tuple[str, int] | None = None,
        api_token: str | None = None,
        multicast_loss: float = 0.0,
    ) -> None:
        self.world = world
        self.files = files
        self.clock = clock
        self.epoch = epoch
        self.mqtt_url = mqtt_url
        self.application_id = application_id
        self.capture = capture
        self.report_interval_s = report_interval_s
        self.on_node = on_node
        self.udp = udp
        self.speed = speed if speed is not None else float(getattr(clock, "speed", 1.0))
        self.coverage = coverage or default_coverage()
        self.boot_spread_s = boot_spread_s
        self.netsim_options = netsim_options or {}
        self.virtual = virtual
        self.powered_off = powered_off  # nodes installed but not powered until power_on()
        # False: the emulator starts with no devices; they are created through its API (as
        # OS2iot creates them in ChirpStack, tools/os2iot) before they are powered on
        self.register_in_emulator = register_in_emulator
        self.fuota = fuota  # tools.sim.fuota.FuotaNodes: these nodes run the FUOTA agent
        # the emulator's gRPC API (MulticastGroupService, DeviceService) and its bearer token
        self.grpc = grpc
        self.api_token = api_token
        self.multicast_loss = multicast_loss  # each member loses a multicast frame with this
        self.air = Air(self.coverage, world.position_of, on_frame=self._on_frame)
        self.air.resolve_dev_addr = self._node_for_dev_addr
        self._by_addr: dict[str, str] = {}
        self.nodes: dict[str, SimNode] = {}
        self.netsim: Any = None
        self.backhaul: Any = None
        self.uplinks_on_air = 0
        self.crashes = 0
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._fw: SimpleNamespace | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Fleet:
        reason = missing()
        if reason is not None:
            raise RuntimeError(f"the fleet cannot run: {reason}")
        self._fw = _fw()
        sim_now = sim_datetime(self.epoch, self.clock)
        try:
            if self.udp is not None:
                self.backhaul = await self._stack.enter_async_context(
                    UdpBackhaul(self.air, self.clock, self.udp[0], self.udp[1], sim_now)
                )
            else:
                await self._start_emulator(sim_now)
            self.world.on_presence = self._presence
            for index, dev_eui in enumerate(sorted(self.world.bins) + sorted(self.world.lamps)):
                self._build(dev_eui)
                if dev_eui in self.powered_off:
                    continue
                delay_s = (index * 7919 % 1000) / 1000.0 * self.boot_spread_s
                self._start(dev_eui, delay_s)
            self._tasks.append(asyncio.create_task(self._move_world(), name="sim-world"))
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    @staticmethod
    def _silence(sim: SimNode) -> None:
        """The radio goes dead with the node: stop the MAC's class C listener (its own task).

        ``Mac.set_class("A")`` is the MAC's public way to stop it; the class flag it clears
        lives in RTC memory, which a power cut throws away anyway.
        """
        if sim.mac is not None and sim.mac.device_class == "C":
            sim.mac.set_class("A")

    async def __aexit__(self, *exc: object) -> None:
        tasks = [n.task for n in self.nodes.values() if n.task is not None] + self._tasks
        for task in tasks:
            task.cancel()
        for sim in self.nodes.values():
            self._silence(sim)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # set_class("A") cancels a class C listener without waiting for it: wait here, so no
        # listener is still pending when the loop closes (a Ctrl-C during start-up). Found by
        # the coroutine's public name, since the MAC keeps the task to itself.
        listeners = [
            t
            for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == "ClassC._loop"
        ]
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        self._tasks.clear()
        await self._stack.aclose()

    async def _start_emulator(self, sim_now: Any) -> None:
        from tools.netsim.config import wall_clock
        from tools.netsim.devices import parse_devices
        from tools.netsim.runner import Netsim
        from tools.netsim.server import NetsimConfig

        entries = [
            {
                "dev_eui": node.dev_eui,
                "join_eui": node.join_eui,
                "name": node.name,
                "class": "C" if node.kind == "lamp" else "A",
                "tags": {"kind": node.kind, "street": node.street},
            }
            for node in self.files.inventory.nodes
        ]
        keys = {eui: key.hex() for eui, key in self.files.secrets.app_keys.items()}
        devices = parse_devices(entries, secrets=keys, where="the simulated city")
        if not self.register_in_emulator:
            devices = []
        # ChirpStack's timers are real seconds; here they are simulated seconds, so they shrink
        # by the speed factor (a 200 ms de-duplication window is 200 ms of simulated time).
        scale = 0.0 if self.virtual else 1.0 / self.speed
        options: dict[str, Any] = {
            "dedup_window_s": 0.2 * scale,
            "downlink_data_delay_s": 0.1 * scale,
            # the class C scheduler walks every device each pass (ChirpStack's does a DB query):
            # on the virtual clock a pass per quarter second of wall time is plenty, since
            # enqueueing wakes it at once anyway
            "scheduler_interval_s": 0.25 if self.virtual else max(1.0 * scale, 0.005),
            "class_c_lock_s": 5.0 * scale,
            "class_a_lock_s": 5.0 * scale,
            # a floor of wall time: the emulator's timer runs on the event loop's clock, and a
            # busy host can take longer than 5 s/speed to run the lamp's answer, which would
            # turn a confirmed class C command the lamp did apply into a nack
            "class_c_timeout_s": max(5.0 * scale, 1.0),
            "now": sim_now,
            "seed": 1,
        }
        if not self.virtual:
            # the gateway (a child process on the wall clock) stamps each command's expiresAt
            # in real time: compared with the accelerated clock, a lighting-ahead override
            # (60 s, gateway/rules/lamps.py) would expire as soon as the world passed the wall
            # clock, which it does within minutes of an evening start (tools/sim/clock.py)
            options["expiry_now"] = wall_clock
        if self.application_id:
            options["application_id"] = self.application_id
        options.update(self.netsim_options)
        config = NetsimConfig(**options)
        self.netsim = await self._stack.enter_async_context(
            Netsim(
                devices,
                broker_url=self.mqtt_url,
                config=config,
                capture_path=self.capture,
                grpc=self.grpc,
                api_token=self.api_token,
            )
        )
        self.backhaul = EmulatorBackhaul(
            self.netsim.server,
            self.air,
            self.clock,
            sim_now,
            multicast_loss=self.multicast_loss,
        )

    # -- nodes ---------------------------------------------------------------------------------

    def _build(self, dev_eui: str, nvs: Any = None) -> SimNode:
        fw = self._fw
        assert fw is not None
        kind = "bin" if dev_eui in self.world.bins else "lamp"
        inventory_node = self.files.inventory.find(dev_eui)
        sim = SimNode(
            dev_eui=dev_eui,
            kind=kind,
            app_key=self.files.secrets.app_key(dev_eui),
            join_eui=inventory_node.join_eui,
            nvs=nvs if nvs is not None else fw.storage.DictStore(),
        )
        self.nodes[dev_eui] = sim
        return sim

    def _boot(self, sim: SimNode, reason: str) -> None:
        """Fresh RAM and RTC memory (a power-on) or RTC kept (``deep_sleep``/``software``)."""
        fw = self._fw
        assert fw is not None
        clock = self.clock
        if reason == "power_on" or sim.rtc is None:
            sim.rtc = fw.storage.DictStore()
        sim.radio = fw.sim_radio.SimRadio(clock, self.air, sim.dev_eui)
        seed = int(sim.dev_eui[-8:], 16) ^ (sim.boots * 0x9E3779B9)
        sim.mac = fw.mac.Mac(
            sim.radio,
            clock,
            sim.nvs,
            sim.rtc,
            region="EU868",
            dev_eui=bytes.fromhex(sim.dev_eui),
            join_eui=bytes.fromhex(sim.join_eui),
            app_key=sim.app_key,
            rng=fw.rng.Rng(seed & 0xFFFFFFFF),
        )
        # A node waits for its duty-cycle off-time (EU868 1 %) instead of dropping the report.
        link = fw.maclink.MacLink(sim.mac, clock, max_wait_ms=_MAX_DUTY_WAIT_MS)
        sim.node = fw.node.Node(link, clock, sim.kind, hardware="sim")
        sim.power = fw.sim_pins.SimPower(clock, reason=reason)
        sim.pins = fw.sim_pins.SimPins(clock)
        if sim.kind == "bin":
            sim.app = self._bin_app(sim)
        else:
            sim.app = self._lamp_app(sim)
        sim.agent = None
        if self.fuota is not None and sim.kind in self.fuota.kinds:
            sim.agent = attach(sim, clock, self.fuota, lambda: self._restart(sim.dev_eui))
        sim.boots += 1

    def _bin_app(self, sim: SimNode) -> Any:
        fw = self._fw
        assert fw is not None
        from tools.sim import boards

        world_bin = self.world.bins[sim.dev_eui]
        sensors, sim.models = boards.bin_sensors(fw, sim.pins, self.clock, world_bin, self._now)
        app_cfg = {
            "report_interval_s": self.report_interval_s,
            "container_height_cm": int(world_bin.container_height_cm),
            "sensor_offset_cm": int(world_bin.sensor_offset_cm),
            "range_sensor": "jsn-sr04t",
            "samples": 3,
            "sample_gap_ms": 50,
        }
        return fw.bin_node.BinNode(
            sim.node, self.clock, sim.power, sim.rtc, sim.nvs, sensors, app_cfg
        )

    def _lamp_app(self, sim: SimNode) -> Any:
        fw = self._fw
        assert fw is not None
        from tools.sim import boards

        lamp = self.world.lamps[sim.dev_eui]
        return boards.lamp_app(
            fw,
            sim,
            self.clock,
            lamp,
            self.world,
            report_interval_s=self.report_interval_s,
        )

    def _start(self, dev_eui: str, delay_s: float = 0.0, reason: str = "power_on") -> None:
        sim = self.nodes[dev_eui]
        self._boot(sim, reason)
        sim.task = asyncio.create_task(self._run_node(sim, delay_s), name=f"node-{dev_eui}")

    async def _run_node(self, sim: SimNode, delay_s: float) -> None:
        if delay_s > 0:
            await self.clock.sleep_ms(int(delay_s * 1000))
        self._report(sim.dev_eui, "boot", f"({sim.power.reason})")
        try:
            if sim.agent is not None:
                await run_with(sim.app.run, sim.agent)
            else:
                await sim.app.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one node's bug must not stop the city; it is reported
            self.crashes += 1
            sim.crashed = f"{type(exc).__name__}: {exc}"
            log.exception("sim: node %s crashed", sim.dev_eui)
            self._report(sim.dev_eui, "crashed", sim.crashed)

    def _restart(self, dev_eui: str) -> None:
        """A node's firmware resets itself (an applied update): a short power cycle."""
        task = asyncio.create_task(self.power_cycle(dev_eui, 1.0), name=f"restart-{dev_eui}")
        self._tasks.append(task)

    def power_on(self, dev_eui: str) -> None:
        """Switch on a node that was installed unpowered (``powered_off``)."""
        if self.nodes[dev_eui].task is not None:
            raise RuntimeError(f"node {dev_eui} is already powered")
        self._start(dev_eui, 0.0, "power_on")

    async def power_cycle(self, dev_eui: str, off_s: float = 1.0) -> None:
        """Cut the power: the app stops, RAM and RTC memory are lost, NVS stays; then boot."""
        sim = self.nodes[dev_eui]
        if sim.task is not None:
            sim.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sim.task
        self._silence(sim)
        sim.rtc = None
        self._report(dev_eui, "power cut", "")
        await self.clock.sleep_ms(int(off_s * 1000))
        self._start(dev_eui, 0.0, "power_on")

    # -- the world -----------------------------------------------------------------------------

    def _now(self) -> float:
        return self.epoch + self.clock.ticks_ms() / 1000.0

    async def _move_world(self) -> None:
        from tools.sim.boards import trim_logs

        step_ms = int(self.world.step_s * 1000)
        steps = 0
        while True:
            self.world.advance(self._now())
            steps += 1
            if steps % 600 == 0:  # the simulated buses log every byte for driver tests: bound it
                for sim in self.nodes.values():
                    if sim.pins is not None:
                        trim_logs(sim.pins)
            await self.clock.sleep_ms(step_ms)

    def _presence(self, lamp: SimLamp) -> None:
        sim = self.nodes.get(lamp.dev_eui)
        if sim is None or "presence" not in sim.models:
            return
        sim.models["presence"].add(1)

    def _node_for_dev_addr(self, dev_addr: str) -> str | None:
        """The node whose current session has this DevAddr (a cache rebuilt on a miss)."""
        node = self._by_addr.get(dev_addr)
        sim = self.nodes.get(node) if node is not None else None
        if sim is not None and sim.mac is not None and f"{sim.mac.dev_addr:08x}" == dev_addr:
            return node
        self._by_addr = {
            f"{n.mac.dev_addr:08x}": eui
            for eui, n in self.nodes.items()
            if n.mac is not None and n.mac.joined
        }
        return self._by_addr.get(dev_addr)

    def _on_frame(self, direction: str, frame: Uplink | dict[str, Any]) -> None:
        if direction == "up":
            self.uplinks_on_air += 1

    def _report(self, dev_eui: str, what: str, detail: str) -> None:
        if self.on_node is not None:
            self.on_node(dev_eui, what, detail)

    # -- figures -------------------------------------------------------------------------------

    def update_counters(self, counters: dict[str, float]) -> None:
        stats = self.coverage.stats
        counters["uplinks_on_air"] = stats.uplinks_sent
        counters["uplinks_heard"] = stats.uplinks_heard
        counters["uplinks_lost_on_air"] = stats.uplinks_lost
        counters["downlinks_delivered"] = stats.downlinks_delivered
        counters["downlinks_missed"] = stats.downlinks_missed
        counters["nodes_joined"] = sum(
            1 for n in self.nodes.values() if n.mac is not None and n.mac.joined
        )
        if self.crashes:
            counters["node_crashes"] = self.crashes
        if self.netsim is not None:  # what the network server made of the frames it heard
            network = self.netsim.server.counters
            counters["network_frames"] = network["uplinks"]
            counters["network_joins"] = network["joins"]
            counters["network_dropped"] = network["dropped"]

    def lamp_modes(self) -> dict[str, str]:
        """Each running lamp app's own ``mode`` (why it shows its level): ``schedule`` (its
        profile), ``presence_boost`` (its own presence sensor), ``override`` (a
        ``lamp_override`` from the gateway: a neighbour saw someone coming) or ``off``."""
        return {
            dev_eui: str(sim.app.mode)
            for dev_eui, sim in self.nodes.items()
            if sim.kind == "lamp" and sim.app is not None and hasattr(sim.app, "mode")
        }
