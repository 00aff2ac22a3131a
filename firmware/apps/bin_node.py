"""The waste-bin node: battery powered, class A, asleep between measurements.

Functions after TALQ 2.7.1 ``FillingLevelSensorFunction`` / ``WasteContainerFunction`` and uCIFI
3435 (OMA LwM2M registry): fill percent from container height and sensor offset, fire
(temperature threshold or rate of rise), out of position (tilt), pickups (a sharp fill drop), and
sensor faults. Alarms go out at once as confirmed ``bin_alarm``; ``bin_status`` goes out every
``report_interval_s``, and early when the fill moved by ``fill_step_percent`` or more, crossed
``full_threshold_percent``, or a flag changed.

One wake-up = ``cycle()``: measure, decide, send, apply commands that came back in the receive
windows, save state, deep sleep. Nothing is kept in RAM across the sleep: per-cycle state lives
in the HAL's RTC store (lost on power loss, which only costs a fresh baseline) and the
configuration set by downlink lives in NVS. On the host ``power.deep_sleep`` waits on the HAL
clock and the loop re-reads the RTC store, so tests exercise exactly what survives.
"""

import citypack_payloads as cp
from apps.node import Reboot, Settings, setting
from drivers.ranging import fill_percent, robust_distance, sample

# the bin_config downlink's fields at their catalogue defaults, and the config version a node
# reports before any config came (bin_status.config_version's default): invariant 1
CONFIG_DEFAULTS = cp.defaults("bin_config")
CONFIG_DEFAULTS["config_version"] = cp.default("bin_status", "config_version")

STATE_DEFAULTS = {
    "joined": False,
    "slept_s": 0,  # length of the sleep that just ended
    "since_status_s": 0,
    "distance_mm": None,
    "fill": None,
    "temp": None,
    "tilt": False,
    "fire": False,
    "fault": False,
    "bad_cycles": 0,
    "watch": False,  # temperature jumped: measure again soon to see the rate of rise
    "pickups": 0,  # since the last bin_status (catalogue: bin_status.pickup_count)
    "last_fill": None,  # fill in the last bin_status
    "last_flags": 0,  # tilt | fire << 1 | fault << 2 in the last bin_status
}

_BIN_COMMANDS = ("bin_config", "device_config", "time_sync", "reboot", "status_request")


class BinNode:
    def __init__(self, node, clock, power, rtc, nvs, sensors, app_cfg=None):
        self.node = node
        self.clock = clock
        self.power = power
        self.rtc = rtc
        self.nvs = nvs
        self.sensors = sensors
        a = app_cfg or {}
        self.samples = setting(a, "samples", 7)
        self.sample_gap_ms = setting(a, "sample_gap_ms", 0)  # drivers wait their own cycle
        self.measure_interval_s = setting(a, "measure_interval_s", None)  # None: = report interval
        self.fast_interval_s = setting(a, "fast_interval_s", 60)
        self.tilt_threshold_deg = setting(a, "tilt_threshold_deg", 45)
        self.pickup_drop_percent = setting(a, "pickup_drop_percent", 30)
        self.fire_rise_c_per_min = setting(a, "fire_rise_c_per_min", 5)
        self.fire_watch_c = setting(a, "fire_watch_c", 45)
        self.fault_cycles = setting(a, "fault_cycles", 2)
        defaults = dict(CONFIG_DEFAULTS)
        for key in CONFIG_DEFAULTS:
            if key != "config_version":
                defaults[key] = setting(a, key, CONFIG_DEFAULTS[key])
        self._cfg_defaults = defaults
        self.cfg = Settings(nvs, "bin_cfg", defaults)
        self.state = Settings(rtc, "bin_state", STATE_DEFAULTS)
        self._status = {}  # the bin_status fields, refilled in place for every report
        self.cycles = 0
        self.alarms_sent = 0
        self.statuses_sent = 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self):
        """Boot, then measure/sleep for ever; a reboot command starts over from the stores."""
        while True:
            try:
                await self._run()
            except Reboot:
                continue

    async def _run(self):
        reason = self.power.reset_reason()
        self.cfg = Settings(self.nvs, "bin_cfg", self._cfg_defaults)
        self.state = Settings(self.rtc, "bin_state", STATE_DEFAULTS)
        if reason != "deep_sleep":
            self.state["joined"] = False
        await self._ensure_joined(reason)
        while True:
            await self.cycle()
            sleep_s = self.next_sleep_s()
            self.state["slept_s"] = sleep_s
            self.state.save()
            await self.power.deep_sleep(sleep_s * 1000)
            # RAM does not survive deep sleep: everything comes back from the RTC store
            self.state = Settings(self.rtc, "bin_state", STATE_DEFAULTS)
            self.cfg = Settings(self.nvs, "bin_cfg", self._cfg_defaults)

    async def _ensure_joined(self, reason):
        if self.state["joined"]:
            return
        if await self.node.join():
            self.state["joined"] = True
            await self.node.device_info(reason, self.cfg["config_version"])
            await self.handle_commands()
        self.state.save()

    def next_sleep_s(self):
        st = self.state
        interval = self.measure_interval_s or self.cfg["report_interval_s"]
        if interval > self.cfg["report_interval_s"]:
            interval = self.cfg["report_interval_s"]
        t = st["temp"]
        if st["fire"] or (t is not None and t >= self.fire_watch_c) or st.get("watch"):
            return self.fast_interval_s  # temperature climbing: look again soon (rate of rise)
        return interval

    # -- one wake-up ----------------------------------------------------------------------------
    async def cycle(self):
        self.cycles += 1
        st = self.state
        cfg = self.cfg
        if not st["joined"]:
            await self._ensure_joined("deep_sleep")
        elapsed_s = st["slept_s"]
        st["since_status_s"] += elapsed_s
        s = self.sensors
        temp_sensor = s.get("temperature")
        if temp_sensor is not None and hasattr(temp_sensor, "start"):
            temp_sensor.start()  # DS18B20 converts (750 ms) while the range sensor works
        readings = await sample(s["range"], self.samples, self.clock, self.sample_gap_ms)
        distance = robust_distance(readings, min_valid=(self.samples + 1) // 2)
        temp = await s["temperature"].read_c() if s.get("temperature") else None
        tilt = await s["tilt"].read_deg() if s.get("tilt") else None
        battery = s["battery"].percent() if s.get("battery") else None
        alarms = []

        # out of position: once when it tips over, re-armed when it stands up again
        if tilt is not None:
            if not st["tilt"] and tilt >= self.tilt_threshold_deg:
                st["tilt"] = True
                alarms.append(("tilt", int(tilt + 0.5)))
            elif st["tilt"] and tilt < self.tilt_threshold_deg - 10:
                st["tilt"] = False

        # level: a tipped bin's range reading says nothing about its contents
        if not st["tilt"]:
            if distance is None:
                st["bad_cycles"] += 1
                if st["bad_cycles"] >= self.fault_cycles and not st["fault"]:
                    st["fault"] = True
                    alarms.append(("sensor_fault", 0))
            else:
                st["bad_cycles"] = 0
                st["fault"] = False
                st["distance_mm"] = distance
                fill = fill_percent(distance, cfg["container_height_cm"], cfg["sensor_offset_cm"])
                prev = st["fill"]
                if prev is not None and prev - fill >= self.pickup_drop_percent:
                    alarms.append(("pickup", prev - fill))
                    st["pickups"] = st["pickups"] + 1
                st["fill"] = fill

        # fire: threshold, or rate of rise between two measurements
        st["watch"] = False
        if temp is not None:
            prev_t = st["temp"]
            rate = None
            if prev_t is not None and elapsed_s > 0:
                rate = (temp - prev_t) * 60 / elapsed_s
            rising = rate is not None and rate >= self.fire_rise_c_per_min
            if not st["fire"] and (temp >= cfg["fire_threshold_c"] or rising):
                st["fire"] = True
                alarms.append(("fire", int(temp + 0.5)))
            elif st["fire"] and temp < cfg["fire_threshold_c"] - 10 and (rate is None or rate <= 0):
                st["fire"] = False
            if prev_t is not None and temp - prev_t >= self.fire_rise_c_per_min:
                st["watch"] = True  # a jump since last time: sample fast to measure the rate
            st["temp"] = temp

        fill_now = st["fill"] if st["fill"] is not None else 0
        for alarm, value in alarms:
            self.alarms_sent += 1
            await self.node.uplink(
                "bin_alarm",
                {
                    "alarm": alarm,
                    "value": cp.clamp("bin_alarm", "value", value),
                    "fill_percent": fill_now,
                },
                confirmed=True,
            )
        if self.status_due():
            await self.send_status(battery)
        await self.handle_commands(battery)
        st.save()

    def _flags(self):
        st = self.state
        return (1 if st["tilt"] else 0) | (2 if st["fire"] else 0) | (4 if st["fault"] else 0)

    def status_due(self):
        st = self.state
        cfg = self.cfg
        if st["since_status_s"] >= cfg["report_interval_s"] or st["last_fill"] is None:
            return True
        if self._flags() != st["last_flags"]:
            return True
        fill = st["fill"]
        if fill is None:
            return False
        last = st["last_fill"]
        if abs(fill - last) >= cfg["fill_step_percent"]:
            return True
        full = cfg["full_threshold_percent"]
        return (last < full) != (fill < full)  # crossed the "full" line either way

    def status_fields(self, battery):
        """The bin_status fields, in one dict refilled in place (no garbage per report)."""
        st = self.state
        temp = st["temp"]
        fields = self._status
        fields["fill_percent"] = st["fill"] if st["fill"] is not None else 0
        fields["temperature_c"] = cp.clamp(
            "bin_status", "temperature_c", int(temp + 0.5) if temp is not None else 0
        )
        fields["battery_percent"] = cp.clamp("bin_status", "battery_percent", battery)
        fields["tilt"] = st["tilt"]
        fields["fire"] = st["fire"]
        fields["sensor_fault"] = st["fault"] or st["fill"] is None
        # the compact form's limit (23 per report): each pickup also went as a bin_alarm
        fields["pickup_count"] = cp.clamp("bin_status", "pickup_count", st["pickups"], True)
        fields["config_version"] = self.cfg["config_version"]
        return fields

    async def send_status(self, battery=None):
        st = self.state
        if battery is None:
            b = self.sensors.get("battery")
            battery = b.percent() if b else 0
        fields = self.status_fields(battery)
        await self.node.uplink("bin_status", fields)
        self.statuses_sent += 1
        st["since_status_s"] = 0
        st["last_fill"] = fields["fill_percent"]
        st["last_flags"] = self._flags()
        st["pickups"] = 0

    # -- commands -------------------------------------------------------------------------------
    async def handle_commands(self, battery=None):
        for _ in range(8):  # bounded: each result uplink may bring another command
            cmd = self.node.next_command()
            if cmd is None:
                return
            name, fields = cmd
            outcome = self.apply(name, fields)
            await self.node.result(fields.get("command_id", 0), outcome, self.cfg["config_version"])
            if name == "status_request":
                await self.send_status(battery)
            elif name == "reboot":
                self.state.save()
                self.power.reset()

    def apply(self, name, fields):
        if name not in _BIN_COMMANDS:
            return "unsupported"
        cfg = self.cfg
        if name == "bin_config":
            if fields["sensor_offset_cm"] >= fields["container_height_cm"] + 100:
                return "rejected"
            for key in CONFIG_DEFAULTS:
                if key in fields:
                    cfg[key] = fields[key]
            cfg.save()
            st = self.state
            if st["distance_mm"] is not None:  # the same distance means a new fill now
                st["fill"] = fill_percent(
                    st["distance_mm"], cfg["container_height_cm"], cfg["sensor_offset_cm"]
                )
        elif name == "device_config":
            cfg["config_version"] = fields["config_version"]
            cfg["report_interval_s"] = fields["report_interval_s"]
            cfg.save()
        return "applied"


def build_sensors(pins, board, app_cfg, clock):
    """The bin's drivers from ``config.json["app"]``: ``range_sensor`` (``jsn-sr04t`` |
    ``a02yyuw`` | ``vl53l1x``), ``temperature_sensor`` (``ds18b20`` | ``none``),
    ``tilt_sensor`` (``lis3dh`` | ``switch`` | ``none``), pins from the board's ``PINS``."""
    from drivers.battery import BatteryADC

    p = board.PINS
    a = app_cfg or {}
    kind = setting(a, "range_sensor", "jsn-sr04t")
    i2c = None
    sensors = {}
    if kind == "a02yyuw":
        from drivers.ultrasonic import A02YYUW

        sensors["range"] = A02YYUW(pins, p["uart_tx"], p["uart_rx"], clock)
    elif kind == "vl53l1x":
        from drivers.vl53l1x import VL53L1X

        i2c = pins.i2c(p["i2c_scl"], p["i2c_sda"])
        sensors["range"] = VL53L1X(i2c, clock)
    else:
        from drivers.ultrasonic import JSNSR04T

        sensors["range"] = JSNSR04T(pins, p["us_trig"], p["us_echo"], clock)
    if setting(a, "temperature_sensor", "ds18b20") == "ds18b20":
        from drivers.ds18b20 import DS18B20

        sensors["temperature"] = DS18B20(pins.onewire(p["onewire"]), clock)
    tilt = setting(a, "tilt_sensor", "lis3dh")
    if tilt == "lis3dh":
        from drivers.tilt import LIS3DH

        sensors["tilt"] = LIS3DH(i2c or pins.i2c(p["i2c_scl"], p["i2c_sda"]), clock)
    elif tilt == "switch":
        from drivers.tilt import TiltSwitch

        sensors["tilt"] = TiltSwitch(pins, p["tilt_switch"])
    sensors["battery"] = BatteryADC(pins, p["battery_adc"], p.get("battery_divider", 2.0))
    return sensors
