"""Scenarios for the bin and lamp apps in virtual time; ``scenarios.py NAME`` prints one JSON
line: what the fake network received (decoded by the generated codec) plus scenario facts.
Assertions live in tests/firmware_apps/test_*.py, which also run this under CPython."""

import asyncio
import json
import sys

from world import make_bin, make_lamp, set_fill

HOUR = 3_600_000
MIN = 60_000


async def _start(w):
    w["task"] = asyncio.create_task(w["app"].run())


def _bin_result(w, **extra):
    out = {
        "uplinks": w["link"].decoded(),
        "joins": w["link"].joins,
        "sleeps": w["power"].sleeps,
        "slept_ms": w["power"].slept_ms,
        "now": w["clock"].ticks_ms(),
    }
    out.update(extra)
    return out


# -- bin ----------------------------------------------------------------------------------------
async def bin_fill():
    """Fills 3 %/h for 3 days (emptied once), reports at 6 h and on every 10 % step."""
    w = make_bin({"report_interval_s": 6 * 3600, "measure_interval_s": 3600})
    set_fill(w, 0)
    await _start(w)
    fill = 0
    for hour in range(72):
        await w["clock"].sleep_ms(HOUR)
        fill = fill + 3 if fill < 90 else 5  # emptied when it gets near full
        set_fill(w, fill)
    return _bin_result(w)


async def bin_fire_threshold():
    w = make_bin()
    set_fill(w, 40)
    await _start(w)
    await w["clock"].sleep_ms(3 * HOUR)
    w["temp"].value = 75.0
    await w["clock"].sleep_ms(3 * HOUR)
    w["temp"].value = 20.0
    await w["clock"].sleep_ms(3 * HOUR)
    return _bin_result(w)


async def bin_fire_rise():
    """Below the threshold but climbing 6 °C/min: the rate of rise raises the fire alarm."""
    w = make_bin({"fire_threshold_c": 90})
    set_fill(w, 40)
    await _start(w)
    await w["clock"].sleep_ms(2 * HOUR)
    t0 = w["clock"].ticks_ms()
    w["temp"].value = 25.0  # +10 since the last reading: the node starts watching

    async def heat():
        while True:
            await w["clock"].sleep_ms(10_000)
            minutes = (w["clock"].ticks_ms() - t0) / MIN
            w["temp"].value = min(85.0, 25.0 + 6.0 * minutes)

    h = asyncio.create_task(heat())
    await w["clock"].sleep_ms(2 * HOUR)
    h.cancel()
    return _bin_result(w, heat_start=t0)


async def bin_tilt():
    w = make_bin()
    set_fill(w, 30)
    await _start(w)
    await w["clock"].sleep_ms(2 * HOUR)
    w["tilt"].value = 90.0
    await w["clock"].sleep_ms(4 * HOUR)
    w["tilt"].value = 0.0
    await w["clock"].sleep_ms(2 * HOUR)
    w["tilt"].value = 80.0
    await w["clock"].sleep_ms(2 * HOUR)
    return _bin_result(w)


async def bin_pickup():
    w = make_bin()
    set_fill(w, 85)
    await _start(w)
    await w["clock"].sleep_ms(2 * HOUR)
    set_fill(w, 4)
    await w["clock"].sleep_ms(3 * HOUR)
    return _bin_result(w)


async def bin_noisy():
    """Every measurement has an outlier, a dropout and jitter; the fill must not move."""
    w = make_bin({"report_interval_s": 3600, "fill_step_percent": 5})
    set_fill(w, 50)
    await _start(w)
    await w["clock"].sleep_ms(1000)
    base = w["range"].value
    noise = [0, 12, 1900, -9, None, 30, -28]  # mm: one wild echo, one lost echo

    async def noisy():
        k = 0
        while True:
            if not w["range"].script:
                k += 1
                w["range"].script = [
                    None if n is None else base + n + (k % 3) * 4 - 4 for n in noise
                ]
            await w["clock"].sleep_ms(60_000)

    t = asyncio.create_task(noisy())
    await w["clock"].sleep_ms(24 * HOUR)
    t.cancel()
    return _bin_result(w)


async def bin_sensor_fault():
    w = make_bin()
    set_fill(w, 30)
    await _start(w)
    await w["clock"].sleep_ms(2 * HOUR)
    w["range"].value = None  # no echo any more
    await w["clock"].sleep_ms(5 * HOUR)
    return _bin_result(w)


async def bin_config():
    """A bin_config downlink changes height and fire threshold; it is acknowledged with the
    new config_version and the next reports use the new values."""
    w = make_bin()
    set_fill(w, 50)  # 500 mm from the sensor in a 100 cm bin
    await _start(w)
    await w["clock"].sleep_ms(2 * HOUR)
    w["link"].downlink(
        "bin_config",
        {
            "command_id": 42,
            "config_version": 7,
            "container_height_cm": 200,
            "sensor_offset_cm": 0,
            "full_threshold_percent": 80,
            "fire_threshold_c": 50,
            "report_interval_s": 1800,
            "fill_step_percent": 10,
        },
    )
    await w["clock"].sleep_ms(2 * HOUR)
    w["temp"].value = 55.0
    await w["clock"].sleep_ms(HOUR)
    w["link"].downlink("lamp_override", {"command_id": 43, "dim_level": 10})
    w["link"].downlink("status_request", {"command_id": 44})
    await w["clock"].sleep_ms(HOUR)
    return _bin_result(w, nvs_writes=w["nvs"].writes)


async def bin_reboot():
    """A reboot command: result first, then the node restarts, rejoins and says why."""
    w = make_bin()
    set_fill(w, 20)
    await _start(w)
    await w["clock"].sleep_ms(2 * HOUR)
    w["link"].downlink("reboot", {"command_id": 9})
    await w["clock"].sleep_ms(3 * HOUR)
    return _bin_result(w, resets=w["power"].resets)


async def bin_range_sensors():
    """The same bin app on each range sensor: JSN-SR04T, A02YYUW (UART), VL53L1X (I2C)."""
    out = {}
    worlds = {}
    for kind in ("jsn-sr04t", "a02yyuw", "vl53l1x"):
        w = make_bin(range_sensor=kind)
        set_fill(w, 40)
        await _start(w)
        worlds[kind] = w
    await w["clock"].sleep_ms(3 * HOUR)
    for kind, w in worlds.items():
        out[kind] = [
            u["fields"]["fill_percent"] for u in w["link"].decoded() if u["name"] == "bin_status"
        ]
    return out


async def bin_power_loss():
    """Power is cut after a bin_config: RTC state is gone, the NVS config survives."""
    import world

    w = make_bin()
    set_fill(w, 50)
    await _start(w)
    await w["clock"].sleep_ms(2 * HOUR)
    w["link"].downlink(
        "bin_config",
        {
            "command_id": 5,
            "config_version": 9,
            "container_height_cm": 200,
            "sensor_offset_cm": 30,
            "full_threshold_percent": 80,
            "fire_threshold_c": 70,
            "report_interval_s": 3600,
            "fill_step_percent": 10,
        },
    )
    await w["clock"].sleep_ms(2 * HOUR)
    w["task"].cancel()
    cut = w["clock"].ticks_ms()
    w["rtc"].data.clear()  # RTC memory does not survive a power cut; NVS does
    w["power"].reason = "power_on"
    from main import build_app

    app = build_app(
        "bin",
        {"sensor_offset_cm": 30},
        world.Board,
        w["link"],
        w["clock"],
        w["pins"],
        w["power"],
        w["rtc"],
        w["nvs"],
    )
    w["app"] = app
    await _start(w)
    await w["clock"].sleep_ms(2 * HOUR)
    return _bin_result(w, cut=cut)


_HOSTILE = [
    (110, b""),
    (110, b"\xff"),
    (110, b"\xa1\x00\x18\x2a"),  # bin_config without its required config_version
    (121, b"\xa3\x00\x01\x01\x05\x05\x9f"),  # a profile cut short
    (120, bytes(range(60))),
    (7, b"\x01\x02"),  # an fPort nobody uses
    (103, b"\xa1\x00\x19\x01\x00"),  # command_id 256: out of range
    (2, b"\xa1\x00\x01"),  # an uplink message sent down
]


async def bin_hostile():
    """Garbage downlinks: dropped and counted, the node keeps reporting."""
    w = make_bin()
    set_fill(w, 30)
    await _start(w)
    for fport, data in _HOSTILE:
        await w["clock"].sleep_ms(HOUR)
        w["link"].raw_downlink(fport, data)
    await w["clock"].sleep_ms(2 * HOUR)
    return _bin_result(w, bad=w["node"].bad_downlinks)


async def lamp_hostile():
    w = make_lamp(unix0=NOV28_NOON)
    await _start(w)
    await w["clock"].sleep_ms(MIN)
    for fport, data in _HOSTILE:
        w["link"].raw_downlink(fport, data)
        await w["clock"].sleep_ms(MIN)
    _profile(w, 8, 2, 35, 100, 60, [])
    await w["clock"].sleep_ms(5 * MIN)
    return _lamp_result(w, bad=w["node"].bad_downlinks)


# -- lamp ---------------------------------------------------------------------------------------
NOV28_NOON = 1795867200  # 2026-11-28T12:00:00Z


def _lamp_result(w, **extra):
    out = {
        "uplinks": w["link"].decoded(),
        "levels": w["levels"],
        "now": w["clock"].ticks_ms(),
        "unix0": w["link"].unix0,
        "joins": w["link"].joins,
    }
    out.update(extra)
    return out


def _profile(w, cid, version, base, boost, hold, steps):
    w["link"].downlink(
        "lamp_profile",
        {
            "command_id": cid,
            "config_version": version,
            "base_level": base,
            "boost_level": boost,
            "hold_time_s": hold,
            "steps": steps,
        },
    )


async def lamp_presence():
    """No steps: an empty road sits at base_level; presence boosts, the hold brings it back;
    a burst of road users is one report now and the rest after the rate limit."""
    w = make_lamp(unix0=NOV28_NOON)
    await _start(w)
    await w["clock"].sleep_ms(MIN)
    _profile(w, 1, 3, 30, 100, 60, [])
    await w["clock"].sleep_ms(10 * MIN)
    pir = w["pins"].pin(5)
    marks = {"first": w["clock"].ticks_ms()}
    pir.pulse()
    await w["clock"].sleep_ms(20_000)
    for _ in range(4):
        pir.pulse()
        await w["clock"].sleep_ms(5_000)
    marks["last"] = w["clock"].ticks_ms() - 5_000
    await w["clock"].sleep_ms(10 * MIN)
    return _lamp_result(w, marks=marks)


async def lamp_profile():
    """Steps around a computed sunset and sunrise, and a local-clock step, over two days."""
    w = make_lamp(unix0=NOV28_NOON)
    await _start(w)
    await w["clock"].sleep_ms(MIN)
    steps = [
        {"anchor": "sunset", "offset_min": -10, "dim_level": 100},
        {"anchor": "clock", "offset_min": 1380, "dim_level": 50},
        {"anchor": "clock", "offset_min": 300, "dim_level": 70},
        {"anchor": "sunrise", "offset_min": 15, "dim_level": 0},
    ]
    _profile(w, 2, 4, 100, 100, 60, steps)
    await w["clock"].sleep_ms(48 * HOUR)
    return _lamp_result(w)


async def lamp_override():
    w = make_lamp(unix0=NOV28_NOON)
    await _start(w)
    await w["clock"].sleep_ms(MIN)
    _profile(w, 1, 3, 40, 100, 60, [])
    await w["clock"].sleep_ms(5 * MIN)
    marks = {"override": w["clock"].ticks_ms()}
    w["link"].downlink(
        "lamp_override", {"command_id": 5, "dim_level": 90, "duration_s": 600, "fade_s": 4}
    )
    await w["clock"].sleep_ms(20 * MIN)
    marks["forever"] = w["clock"].ticks_ms()
    w["link"].downlink("lamp_override", {"command_id": 6, "dim_level": 0})
    await w["clock"].sleep_ms(30 * MIN)
    marks["resume"] = w["clock"].ticks_ms()
    w["link"].downlink("lamp_override", {"command_id": 7, "dim_level": 0, "resume_schedule": True})
    await w["clock"].sleep_ms(5 * MIN)
    return _lamp_result(w, marks=marks)


async def lamp_failures():
    """Lamp failure (on, no power) at night; day burner (relay stuck) by day; supply loss."""
    w = make_lamp(unix0=NOV28_NOON)  # 12:00 UTC: the default profile is off until sunset
    await _start(w)
    await w["clock"].sleep_ms(30 * MIN)
    marks = {"stuck": w["clock"].ticks_ms()}
    w["load"].relay_stuck = True
    w["load"].update()
    await w["clock"].sleep_ms(30 * MIN)
    w["load"].relay_stuck = False
    w["load"].update()
    await w["clock"].sleep_ms(4 * HOUR)  # past sunset: on at 100 %
    marks["broken"] = w["clock"].ticks_ms()
    w["load"].broken = True
    w["load"].update()
    await w["clock"].sleep_ms(30 * MIN)
    w["load"].broken = False
    w["load"].dimming_stuck = True
    _profile(w, 3, 5, 40, 40, 60, [])
    await w["clock"].sleep_ms(30 * MIN)
    marks["supply"] = w["clock"].ticks_ms()
    w["load"].supply = False
    w["load"].update()
    w["pins"].pin(7).drive(0)
    await w["clock"].sleep_ms(10 * MIN)
    return _lamp_result(w, marks=marks, dropped=w["app"].uplinks_dropped)


async def lamp_no_network():
    """The network goes away after the time sync: the profile, presence and failures go on."""
    w = make_lamp(unix0=NOV28_NOON)
    await _start(w)
    await w["clock"].sleep_ms(MIN)
    _profile(
        w,
        2,
        4,
        30,
        100,
        60,
        [
            {"anchor": "sunset", "offset_min": 0, "dim_level": 60},
            {"anchor": "sunrise", "offset_min": 0, "dim_level": 0},
        ],
    )
    await w["clock"].sleep_ms(MIN)
    w["link"].up = False
    sent_before = len(w["link"].uplinks)
    await w["clock"].sleep_ms(6 * HOUR)  # through sunset
    marks = {"presence": w["clock"].ticks_ms()}
    w["pins"].pin(5).pulse()
    await w["clock"].sleep_ms(5 * MIN)
    marks["back"] = w["clock"].ticks_ms()
    w["link"].up = True
    await w["clock"].sleep_ms(2 * HOUR)
    return _lamp_result(w, marks=marks, sent_before=sent_before, failed=w["node"].uplinks_failed)


async def lamp_cold_no_network():
    """Power comes back with no network at all: no time, so base_level (defaultLightState)."""
    w = make_lamp(up=False)
    await _start(w)
    await w["clock"].sleep_ms(3 * HOUR)
    return _lamp_result(w)


# -- with the real MAC ---------------------------------------------------------------------------
def _testnet():
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path.append(here + "/../../firmware/mpy")
    from testnet import TestNet

    return TestNet(None, world_mod().APP_KEY)


def world_mod():
    import world

    return world


class _Drain:
    """Moves what the test network heard into compact counters every few minutes, so a week of
    frames does not sit in the heap that is being measured."""

    def __init__(self, net):
        self.net = net
        self.frames = []
        self.counts = {}
        self.phy = {}  # "length/SF" -> frames
        self.n = 0

    def drain(self):
        import citypack_payloads as cp

        net = self.net
        for _node, phy, _freq, datr, _t in net.uplinks:
            key = "%d/%s" % (len(phy), datr[2 : datr.index("B")])
            self.phy[key] = self.phy.get(key, 0) + 1
        for _addr, fcnt, fport, payload in net.frames:
            name, fields = cp.decode(fport, bytes(payload))
            self.counts[name] = self.counts.get(name, 0) + 1
            if self.n < 12:
                self.frames.append({"fcnt": fcnt, "name": name, "fields": fields})
            self.n += 1
        net.uplinks.clear()
        net.frames.clear()

    def task(self, clock):
        async def run():
            while True:
                await clock.sleep_ms(10 * MIN)
                self.drain()

        return asyncio.create_task(run())

    def result(self):
        self.drain()
        return {"frames": self.frames, "counts": self.counts, "phy": self.phy}


def _heap_sampler(clock, stats):
    import gc

    async def sample():
        if not hasattr(gc, "mem_alloc"):  # CPython: no MicroPython heap to measure
            return
        while True:
            await clock.sleep_ms(60_000)
            used = gc.mem_alloc()
            if used > stats["peak_alloc"]:
                stats["peak_alloc"] = used
            gc.collect()  # what is live, not what the collector has not reclaimed yet
            live = gc.mem_alloc()
            if live > stats["peak_live"]:
                stats["peak_live"] = live

    return asyncio.create_task(sample())


async def mac_bin(days=1):
    """The bin node on the real MAC, sim radio and an in-process network for ``days``."""
    net = _testnet()
    w = make_bin(link=world_mod().mac_link(net))
    set_fill(w, 20)
    stats = {"peak_alloc": 0, "peak_live": 0}
    sampler = _heap_sampler(w["clock"], stats)
    drain = _Drain(net)
    drainer = drain.task(w["clock"])
    await _start(w)
    await w["clock"].sleep_ms(3 * HOUR)
    net.queue.append((110, _bin_config_bytes(), False, b""))
    for hour in range(days * 24 - 3):
        await w["clock"].sleep_ms(HOUR)
        if hour % 4 == 3:
            set_fill(w, 20 + (hour % 40))
    sampler.cancel()
    drainer.cancel()
    out = drain.result()
    out.update(
        {
            "sleeps": w["power"].sleeps,
            "slept_ms": w["power"].slept_ms,
            "awake_ms": w["power"].awake_ms,
            "radio_ms": w["link"].radio_ms,
            "now": w["clock"].ticks_ms(),
            "heap": stats,
            "days": days,
            "uplinks_failed": w["node"].uplinks_failed,
        }
    )
    return out


def _bin_config_bytes():
    import citypack_payloads as cp

    return cp.encode(
        "bin_config",
        {
            "command_id": 77,
            "config_version": 3,
            "container_height_cm": 120,
            "sensor_offset_cm": 30,
            "full_threshold_percent": 80,
            "fire_threshold_c": 70,
            "report_interval_s": 3600,
            "fill_step_percent": 10,
        },
    )


async def mac_lamp(days=1):
    """The lamp node on the real MAC for ``days``: profile, presence every few minutes."""
    net = _testnet()
    w = make_lamp(link=world_mod().mac_link(net))
    stats = {"peak_alloc": 0, "peak_live": 0}
    sampler = _heap_sampler(w["clock"], stats)
    drain = _Drain(net)
    drainer = drain.task(w["clock"])
    await _start(w)
    await w["clock"].sleep_ms(2 * MIN)
    import citypack_payloads as cp

    net.queue.append(
        (101, cp.encode("time_sync", {"command_id": 1, "unix_time": NOV28_NOON}), False, b"")
    )
    pir = w["pins"].pin(5)
    for k in range(days * 24 * 6):
        await w["clock"].sleep_ms(10 * MIN)
        if k % 3 == 0:
            pir.pulse()
    sampler.cancel()
    drainer.cancel()
    out = drain.result()
    out.update(
        {
            "now": w["clock"].ticks_ms(),
            "heap": stats,
            "days": days,
            "unix_now": w["app"].unix_now(),
            "uplinks_failed": w["node"].uplinks_failed,
        }
    )
    return out


async def report_alloc(n=200):
    """Bytes left on the heap per full app report: the app's fields, the CBOR payload (the
    node's encode) and the LoRaWAN frame (the MAC's build), GC disabled, over ``n`` reports;
    the same with a fresh fields dict and ``cp.encode`` (bytes per report) for comparison."""
    import gc

    import citypack_payloads as cp

    if not hasattr(gc, "mem_alloc"):
        return {"skipped": "no MicroPython heap"}
    net = _testnet()
    out = {}
    for kind, make in (("bin", make_bin), ("lamp", make_lamp)):
        w = make(link=world_mod().mac_link(net))
        mac = w["link"].mac
        mac.activate_abp(0x26010001, bytes(range(16)), bytes(range(16, 32)))
        app = w["app"]
        node = w["node"]
        if kind == "bin":
            name = "bin_status"
            st = app.state
            st["fill"] = 42
            st["temp"] = 18.4
            st["pickups"] = 1

            def fields():
                return app.status_fields(85)
        else:
            name = "lamp_status"
            app.road_users = 37

            def fields():
                return app.status_fields()

        port = cp.FPORT[name]

        def report():
            data = node.encode(name, fields())
            mac.build_uplink(node.fport, data, len(data), False, 0)
            mac.state.fcnt_up += 1

        def fresh():
            data = cp.encode(name, dict(fields()))
            mac.build_uplink(port, data, len(data), False, 0)
            mac.state.fcnt_up += 1

        for each, count in ((report, n), (fresh, n // 4)):  # fresh garbage fills the heap
            for _ in range(5):  # warm-up: first-use allocations are not per report
                each()
            gc.collect()
            gc.disable()
            before = gc.mem_alloc()
            for _ in range(count):
                each()
            after = gc.mem_alloc()
            gc.enable()
            out[kind + ("_report" if each is report else "_fresh")] = (after - before) / count
        out[kind + "_bytes"] = len(node.encode(name, fields()))
    return out


SCENARIOS = {
    "mac_bin": mac_bin,
    "mac_lamp": mac_lamp,
    "report_alloc": report_alloc,
    "bin_fill": bin_fill,
    "bin_fire_threshold": bin_fire_threshold,
    "bin_fire_rise": bin_fire_rise,
    "bin_tilt": bin_tilt,
    "bin_pickup": bin_pickup,
    "bin_noisy": bin_noisy,
    "bin_sensor_fault": bin_sensor_fault,
    "bin_config": bin_config,
    "bin_reboot": bin_reboot,
    "bin_range_sensors": bin_range_sensors,
    "bin_power_loss": bin_power_loss,
    "bin_hostile": bin_hostile,
    "lamp_hostile": lamp_hostile,
    "lamp_presence": lamp_presence,
    "lamp_profile": lamp_profile,
    "lamp_override": lamp_override,
    "lamp_failures": lamp_failures,
    "lamp_no_network": lamp_no_network,
    "lamp_cold_no_network": lamp_cold_no_network,
}


def code_bytes():
    """Heap taken by the loaded modules (bytecode and constants) before anything runs: on a
    board they are frozen into flash by firmware/manifest.py and take no heap at all."""
    import gc

    import apps.bin_node
    import apps.lamp_node
    import apps.maclink  # noqa: F401
    import lorawan.mac  # noqa: F401

    for name in (
        "ultrasonic",
        "vl53l1x",
        "ds18b20",
        "tilt",
        "battery",
        "ranging",
        "dimmer",
        "energy_meter",
        "presence",
        "sun",
        "sim_devices",
    ):
        __import__("drivers." + name)
    import hal.sim_radio  # noqa: F401
    import main  # noqa: F401  (firmware/main.py: build_app)

    _testnet()
    gc.collect()
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0


def main(name, args):
    import world

    if name == "all":  # every scenario but the week-long MAC ones, one process, one JSON
        out = {}
        for each in SCENARIOS:
            if not each.startswith("mac_") and each != "report_alloc":
                world.CLOCK = world.VirtualClock()
                out[each] = world.CLOCK.run(SCENARIOS[each]())
        json.dump(out, sys.stdout)
        print()
        return

    mem = "--mem" in args
    args = [int(a) for a in args if a != "--mem"]
    base = 0
    if name.startswith("mac_"):
        import hal.sim_pins

        hal.sim_pins.LOG_KEEP = 8  # a week of bus logs is test tooling, not the node's heap
        world.LOG_LEVELS = False
        base = code_bytes()
    world.CLOCK = world.VirtualClock()
    result = world.CLOCK.run(SCENARIOS[name](*args))
    if name.startswith("mac_"):
        result["code_bytes"] = base
    import gc

    world.CLOCK = None
    gc.collect()
    if mem:
        import micropython

        micropython.mem_info()
    json.dump(result, sys.stdout)  # streamed: no second copy of the result in the heap
    print()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
