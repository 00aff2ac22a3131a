"""The street-lamp node: mains powered, class C, always listening.

Control after TALQ's model (TALQ 2.7.1 data model): a ``ControlProgram`` of up to four steps
anchored on sunset, sunrise or local clock time (``AstroClockTimeControl`` / ``FixedTimeControl``),
computed on the node from its latitude/longitude and the date (``drivers.sun``, NOAA) once the time
is known; ``DynamicControl``: presence raises the level to ``boost_level`` and ``hold_time_s``
after the last detection brings it back; ``OverrideCommand``: a level for ``duration_s`` that
returns to the program when it expires. ``base_level`` is the level before the first step —
``defaultLightState``: used when there is no step, or no time yet after a power cut.

The control loop never waits on the network: the profile keeps running when the network is
down. Reports (``lamp_status``, ``lamp_counters``, ``lamp_presence``, ``command_result``) queue
in an outbox that a separate network task drains; presence reports are rate-limited so the
EU868 duty cycle holds. Failures after TALQ ``LampMonitorFunction`` / uCIFI 3416 from the energy
meter: lamp failure (on, no power), dimming failure (power does not follow the level), relay
failure and day burner (power drawn while the profile says off), supply loss (mains sense pin).
"""

import citypack_payloads as cp
from apps.node import Reboot, Settings, setting
from drivers import sun, ticks_diff

CONFIG_DEFAULTS = {
    # catalogue defaults (invariant 1); the profile's fields are required on the air, so their
    # values before the first lamp_profile are the app's own safe choice
    "config_version": cp.default("lamp_status", "config_version"),
    "report_interval_s": cp.default("device_config", "report_interval_s"),
    "base_level": 100,  # no time, no steps: full light is the safe default
    "boost_level": 100,
    "hold_time_s": 60,
    "steps": [
        {"anchor": "sunset", "offset_min": 0, "dim_level": 100},
        {"anchor": "sunrise", "offset_min": 0, "dim_level": 0},
    ],
}

COUNTER_DEFAULTS = {"energy_wh": 0.0, "on_s": 0, "switch_ons": 0}

_LAMP_COMMANDS = (
    "lamp_override",
    "lamp_profile",
    "device_config",
    "time_sync",
    "reboot",
    "status_request",
)
_FAILURES = ("lamp_failure", "dimming_failure", "relay_failure", "supply_loss", "day_burner")
_DAY_S = 86400


def profile_level(steps, unix_now, lat, lon, base_offset_min=60, dst="eu", cache=None):
    """(level, unix time of the next step) of a step profile at ``unix_now``.

    Each step is resolved on the local dates before, of and after today; the level is that of
    the latest resolved step at or before now (so a night's steps wrap across midnight and the
    evening's steps come back every day). Steps on an astronomical anchor are skipped on dates
    without that event (polar day or night). ``(None, None)`` when there is no usable step.
    """
    offset_s = sun.utc_offset_min(unix_now, base_offset_min, dst) * 60
    today = (unix_now + offset_s) // _DAY_S
    best_t = None
    best_level = None
    next_t = None
    for day in (today - 1, today, today + 1):
        sr_ss = cache.get(day) if cache is not None else None
        if sr_ss is None:
            sr_ss = sun.sunrise_sunset_utc(day, lat, lon)
            if cache is not None:
                if len(cache) > 4:
                    cache.clear()
                cache[day] = sr_ss
        day_offset_s = sun.utc_offset_min(day * _DAY_S + 43200, base_offset_min, dst) * 60
        for step in steps:
            anchor = step["anchor"]
            if anchor == "clock":
                base = day * _DAY_S - day_offset_s
            else:
                minute = sr_ss[0] if anchor == "sunrise" else sr_ss[1]
                if minute is None:
                    continue
                base = day * _DAY_S + int(minute * 60)
            t = base + step["offset_min"] * 60
            if t <= unix_now:
                if best_t is None or t >= best_t:
                    best_t, best_level = t, step["dim_level"]
            elif next_t is None or t < next_t:
                next_t = t
    return best_level, next_t


class LampNode:
    def __init__(self, node, clock, power, nvs, hw, app_cfg=None, latitude=55.68, longitude=12.57):
        self.node = node
        self.clock = clock
        self.power = power
        self.nvs = nvs
        self.dimmer = hw["dimmer"]
        self.meter = hw.get("meter")
        self.presence = hw.get("presence")
        self.supply = hw.get("supply")  # input pin, 1 = mains present
        self.lat = latitude
        self.lon = longitude
        a = app_cfg or {}
        self.rated_w = setting(a, "rated_power_w", 60)
        self.utc_offset = setting(a, "utc_offset_min", 60)
        self.dst = setting(a, "dst", "eu")
        self.counters_interval_s = setting(a, "counters_interval_s", 86400)
        self.presence_report_min_s = setting(a, "presence_report_min_s", 120)
        self.meter_interval_s = setting(a, "meter_interval_s", 60)
        self.settle_s = setting(a, "settle_s", 10)
        self.step_fade_ms = setting(a, "step_fade_ms", 2000)
        self.boost_fade_ms = setting(a, "boost_fade_ms", 500)
        self.return_fade_ms = setting(a, "return_fade_ms", 3000)
        defaults = dict(CONFIG_DEFAULTS)
        defaults["report_interval_s"] = setting(
            a, "report_interval_s", CONFIG_DEFAULTS["report_interval_s"]
        )
        self._cfg_defaults = defaults
        self.time_base = None  # (unix seconds, ticks_ms) after a time sync
        self.outbox = []
        self._status = {}  # the lamp_status fields, refilled in place for every report
        self.uplinks_dropped = 0
        self._sun_cache = {}
        self._reset_runtime()

    def _reset_runtime(self):
        # MicroPython keeps an instance's attributes in one table, reallocated larger when it is
        # full (37, 47, 59 slots): the app has 46, so it never needs the 59-slot table (472 B in
        # one piece on an ESP32, 944 B on the 64-bit unix port) nor leaves the 47-slot one behind
        self.cfg = Settings(self.nvs, "lamp_cfg", self._cfg_defaults)
        self.counters = Settings(self.nvs, "lamp_ctr", COUNTER_DEFAULTS)
        if self.meter is not None:
            self.meter.rebase(self.counters["energy_wh"])
        self._switch_base = self.counters["switch_ons"] - self.dimmer.switch_ons
        self.override = None  # (level, until ticks or None, fade ms)
        self.boost_until = None
        self.mode = "off"
        self.failures = {}
        for name in _FAILURES:
            self.failures[name] = False
        self._suspect = {}
        self.road_users = 0  # since the last lamp_status
        self.presence_users = 0  # since the last lamp_presence
        self.presence_pending = False
        self.last_presence_ms = None
        self.next_meter_ms = None
        self._on_ms = 0
        self._last_tick = self.clock.ticks_ms()
        self._last_save = self._last_tick
        self.net_wake = self.clock.alarm()
        self.stop = self.clock.alarm()
        self.reboot_after_send = False
        self.status_due = None  # a lamp_status to send now: None, or whether confirmed

    # -- time -----------------------------------------------------------------------------------
    def set_time(self, unix_s):
        self.time_base = (int(unix_s), self.clock.ticks_ms())

    def unix_now(self):
        if self.time_base is None:
            return None
        unix0, t0 = self.time_base
        return unix0 + ticks_diff(self.clock, self.clock.ticks_ms(), t0) // 1000

    def _later(self, ms):
        f = getattr(self.clock, "ticks_add", None)
        now = self.clock.ticks_ms()
        return f(now, ms) if f is not None else now + ms

    def _since(self, t):
        return ticks_diff(self.clock, self.clock.ticks_ms(), t)

    # -- the decision ---------------------------------------------------------------------------
    def scheduled(self):
        """(level the profile asks for now, ms until that may change or None)."""
        now = self.unix_now()
        steps = self.cfg["steps"]
        if now is None or not steps:
            return self.cfg["base_level"], None
        level, next_t = profile_level(
            steps, now, self.lat, self.lon, self.utc_offset, self.dst, self._sun_cache
        )
        if level is None:
            return self.cfg["base_level"], None
        return level, None if next_t is None else (next_t - now) * 1000

    def target(self):
        """(level, mode, ms until something changes by itself or None)."""
        waits = []
        if self.override is not None:
            level, until, _fade = self.override
            if until is None:
                return level, "override", None
            left = -self._since(until)
            if left > 0:
                return level, "override", left
            self.override = None
        sched, wait = self.scheduled()
        if wait is not None:
            waits.append(wait)
        level, mode = sched, "schedule" if sched > 0 else "off"
        if self.boost_until is not None:
            left = -self._since(self.boost_until)
            if left > 0 and sched > 0:
                waits.append(left)
                if self.cfg["boost_level"] > sched:
                    level, mode = self.cfg["boost_level"], "presence_boost"
            elif left <= 0:
                self.boost_until = None
        return level, mode, min(waits) if waits else None

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self):
        import asyncio

        reason = self.power.reset_reason()
        while True:
            self._reset_runtime()
            tasks = [
                asyncio.create_task(self._control()),
                asyncio.create_task(self._network(reason)),
            ]
            if self.presence is not None:
                tasks.append(asyncio.create_task(self._presence_bridge()))
            try:
                await self.stop.wait(None)
            finally:  # also when the app itself is cancelled (the simulator cuts its power)
                for t in tasks:
                    t.cancel()
            self._save_counters()
            try:
                self.power.reset()
            except Reboot:
                reason = "software"

    async def _presence_bridge(self):
        while True:
            await self.presence.flag.wait()  # set by the pin IRQ
            self.node.wake.fire()

    async def _control(self):
        while True:
            self._account()  # the time since the last pass, at the output that held during it
            self._handle_commands()
            self._take_presence()
            level, mode, wait_ms = self.target()
            if level != self.dimmer.level:
                fade = self._fade_for(level, mode)
                await self.dimmer.fade_to(level, fade)
                self.next_meter_ms = self._later(self.settle_s * 1000)
                if self.meter is not None:
                    self.meter.sample()  # start a fresh window after the change
                continue  # re-decide: commands or presence may have come during the fade
            self.mode = mode
            self._maybe_presence_report()
            if self.meter is not None and (
                self.next_meter_ms is None or self._since(self.next_meter_ms) >= 0
            ):
                self._check_failures()
                self.next_meter_ms = self._later(self.meter_interval_s * 1000)
            waits = [] if wait_ms is None else [wait_ms]
            if self.next_meter_ms is not None:
                waits.append(-self._since(self.next_meter_ms))
            if self.presence_pending and self.last_presence_ms is not None:
                waits.append(self.presence_report_min_s * 1000 - self._since(self.last_presence_ms))
            waits.append(3_600_000)
            timeout = min(waits)
            await self.node.wake.wait(timeout if timeout > 0 else 0)

    def _fade_for(self, level, mode):
        o = self.override
        if mode == "override" and o is not None:  # "override" comes only with one (target)
            return o[2]
        if mode == "presence_boost":
            return self.boost_fade_ms
        if self.mode == "presence_boost":
            return self.return_fade_ms
        return self.step_fade_ms

    def _account(self):
        now = self.clock.ticks_ms()
        dt = ticks_diff(self.clock, now, self._last_tick)
        self._last_tick = now
        if self.dimmer.relay_on:
            self._on_ms += dt
            whole = self._on_ms // 1000
            self.counters["on_s"] += whole
            self._on_ms -= whole * 1000
        if ticks_diff(self.clock, now, self._last_save) >= 3_600_000:  # NVS wear: hourly
            self._save_counters()

    def _save_counters(self):
        if self.meter is not None:
            self.counters["energy_wh"] = self.meter.energy_wh()
        self.counters["switch_ons"] = self._switch_base + self.dimmer.switch_ons
        self.counters.save()
        self._last_save = self.clock.ticks_ms()

    def _take_presence(self):
        if self.presence is None:
            return
        n = self.presence.take()
        if n <= 0:
            return
        self.road_users += n
        self.presence_users += n
        self.boost_until = self._later(self.cfg["hold_time_s"] * 1000)
        self.presence_pending = True

    def _maybe_presence_report(self):
        if not self.presence_pending:
            return
        if self.last_presence_ms is not None and (
            self._since(self.last_presence_ms) < self.presence_report_min_s * 1000
        ):
            return  # duty cycle: the users are counted and go out with the next report
        self.presence_pending = False
        self.last_presence_ms = self.clock.ticks_ms()
        self._queue(
            "lamp_presence",
            {
                "road_users": cp.clamp("lamp_presence", "road_users", self.presence_users),
                "dim_level": self.dimmer.level,
            },
        )
        self.presence_users = 0

    def _check_failures(self):
        """One meter sample against what the lamp should draw. A failure is raised when two
        samples in a row show it (a window that straddles a change must not raise one), and
        cleared by one good sample; supply loss is latched until a lamp_status carried it."""
        power = self.meter.sample()
        min_w = max(2.0, 0.05 * self.rated_w)
        seen = {}
        supply_ok = self.supply is None or self.supply.value() == 1
        if not supply_ok:
            if not self.failures["supply_loss"]:
                self.failures["supply_loss"] = True
                self._queue_on_new(("supply_loss",))
            return
        d = self.dimmer
        if d.relay_on and d.level > 0:
            seen["lamp_failure"] = power < min_w
            expected = self.rated_w * d.level / 100
            seen["dimming_failure"] = not seen["lamp_failure"] and (
                abs(power - expected) > 0.3 * self.rated_w
            )
            seen["relay_failure"] = False
            seen["day_burner"] = False
        else:
            burning = power >= min_w
            profile_off = self.override is None and self.scheduled()[0] == 0
            seen["relay_failure"] = burning
            seen["day_burner"] = burning and profile_off
            seen["lamp_failure"] = False
            seen["dimming_failure"] = False
        raised = []
        for name in seen:
            if seen[name]:
                if self._suspect.get(name) and not self.failures[name]:
                    self.failures[name] = True
                    raised.append(name)
                self._suspect[name] = True
            else:
                self._suspect[name] = False
                self.failures[name] = False
        self._queue_on_new(raised)

    def _queue_on_new(self, raised):
        if raised:
            self._queue_status(confirmed=True)  # a new failure goes out at once, confirmed

    # -- commands -------------------------------------------------------------------------------
    def _handle_commands(self):
        for _ in range(8):
            cmd = self.node.next_command()
            if cmd is None:
                return
            name, fields = cmd
            outcome = self.apply(name, fields)
            self._queue(
                "command_result",
                {
                    "command_id": fields.get("command_id", 0),
                    "outcome": outcome,
                    "config_version": self.cfg["config_version"],
                },
            )
            if name == "status_request":
                self._queue_status()
            elif name == "reboot":
                self.reboot_after_send = True

    def apply(self, name, fields):
        if name not in _LAMP_COMMANDS:
            return "unsupported"
        cfg = self.cfg
        if name == "lamp_override":
            if fields.get("resume_schedule"):
                self.override = None
                return "applied"
            duration = fields.get("duration_s", 0)
            until = self._later(duration * 1000) if duration else None
            self.override = (fields["dim_level"], until, fields.get("fade_s", 0) * 1000)
        elif name == "lamp_profile":
            steps = []
            for s in fields.get("steps", []):
                steps.append(
                    {
                        "anchor": s["anchor"],
                        "offset_min": s["offset_min"],
                        "dim_level": s["dim_level"],
                    }
                )
            cfg["steps"] = steps
            for key in ("config_version", "base_level", "boost_level", "hold_time_s"):
                cfg[key] = fields[key]
            cfg.save()
        elif name == "device_config":
            cfg["config_version"] = fields["config_version"]
            cfg["report_interval_s"] = fields["report_interval_s"]
            cfg.save()
        elif name == "time_sync":
            self.set_time(fields["unix_time"])
        return "applied"

    # -- reports --------------------------------------------------------------------------------
    def _queue(self, name, fields, confirmed=False):
        if len(self.outbox) >= 16:  # bounded: the oldest report is the least useful
            self.outbox.pop(0)
            self.uplinks_dropped += 1
        self.outbox.append((name, fields, confirmed))
        self.net_wake.fire()

    def _queue_status(self, confirmed=False):
        self.status_due = confirmed or bool(self.status_due)
        self.net_wake.fire()

    def status_fields(self):
        """The lamp_status fields, in one dict refilled in place (no garbage per report)."""
        f = self.failures
        fields = self._status
        fields["dim_level"] = self.dimmer.level
        fields["active_power_w"] = 0
        fields["mode"] = self.mode
        fields["road_users"] = cp.clamp("lamp_status", "road_users", self.road_users)
        fields["config_version"] = self.cfg["config_version"]
        if self.meter is not None:
            power = int(self.meter.power_w + 0.5)
            fields["active_power_w"] = cp.clamp("lamp_status", "active_power_w", power)
        for name in _FAILURES:
            fields[name] = f[name]
        return fields

    def counters_fields(self):
        self._save_counters()
        c = self.counters
        return {
            "active_energy_wh": int(c["energy_wh"]),
            "operating_hours": c["on_s"] // 3600,
            "switch_on_count": c["switch_ons"],
        }

    async def _network(self, reason):
        node = self.node
        # class C before the join: the MAC keeps the class through the join or ABP activation
        # and listens as soon as the session exists, as before; its class C code and state are
        # loaded now, while the heap is young, not after the join has fragmented it (under
        # `bench firmware_apps` the lazy import after the join failed for want of 944 contiguous
        # bytes with 28 KB free, and the network task died with it)
        set_class = getattr(node.link, "set_class", None)
        if set_class is not None:
            set_class("C")
        backoff_s = 60
        while not await node.join():
            await self.clock.sleep_ms(backoff_s * 1000)  # no network: the profile runs on
            backoff_s = min(backoff_s * 2, 3600)
        await node.device_info(reason, self.cfg["config_version"])
        if self.time_base is None:
            t = await node.device_time()
            if t:
                self.set_time(t)
                self.node.wake.fire()
        next_status = self.clock.ticks_ms()
        next_counters = self._later(self.counters_interval_s * 1000)
        while True:
            while self.outbox:
                name, fields, confirmed = self.outbox.pop(0)
                if not await node.uplink(name, fields, confirmed):
                    self.uplinks_dropped += 1
            if self.reboot_after_send:
                self.stop.fire()
                return
            if self.status_due is not None or self._since(next_status) >= 0:
                confirmed = bool(self.status_due)
                self.status_due = None
                fields = self.status_fields()
                self.road_users = 0
                if self.supply is None or self.supply.value() == 1:
                    self.failures["supply_loss"] = False  # reported (or about to be): unlatch
                await node.uplink("lamp_status", fields, confirmed)
                if self.time_base is None:  # DeviceTimeAns may have come with that uplink
                    t = await node.device_time()
                    if t:
                        self.set_time(t)
                        self.node.wake.fire()
                next_status = self._later(self.cfg["report_interval_s"] * 1000)
                continue
            if self._since(next_counters) >= 0:
                await node.uplink("lamp_counters", self.counters_fields())
                next_counters = self._later(self.counters_interval_s * 1000)
                continue
            wait = min(-self._since(next_status), -self._since(next_counters))
            await self.net_wake.wait(wait if wait > 0 else 0)


def build_hardware(pins, board, app_cfg, clock):
    """The lamp's drivers from the board's ``PINS`` and ``config.json["app"]``
    (``dimming`` ``0-10V`` | ``1-10V``, ``dimmer_invert``, ``meter_w_per_hz``, ``presence``
    ``pir`` | ``radar`` | ``none``, ``supply_sense`` true/false)."""
    from drivers.dimmer import Dimmer
    from drivers.energy_meter import EnergyMeter
    from drivers.presence import PresenceSensor

    p = board.PINS
    a = app_cfg or {}
    hw = {
        "dimmer": Dimmer(
            pins,
            p["dim_pwm"],
            p["relay"],
            clock,
            setting(a, "dimming", "0-10V"),
            setting(a, "dimmer_invert", False),
        ),
        "meter": EnergyMeter(pins, p["meter_cf"], clock, setting(a, "meter_w_per_hz", 0.136)),
    }
    if setting(a, "presence", "pir") != "none":
        hw["presence"] = PresenceSensor(pins, p["presence"])
    if setting(a, "supply_sense", False):
        hw["supply"] = pins.input(p["supply_sense"])
    return hw
