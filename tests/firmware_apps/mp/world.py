"""Test worlds for the apps: a fake network (the app-side link contract of ``apps.node``), the
sim HAL (virtual clock, sim pins and chip models, dict stores) and builders for a bin and a lamp.

Runs under the MicroPython unix port and CPython alike; scenarios print one JSON line.
"""

import citypack_payloads as cp
from drivers import sim_devices as sd
from hal.sim_pins import SimPins, SimPower
from hal.storage import DictStore
from hal.vclock import VirtualClock

CLOCK = None  # the scenario runner's clock; builders use it
LOG_LEVELS = True  # the bench turns the per-step level log off (it would grow for a week)


def _clock():
    return CLOCK if CLOCK is not None else VirtualClock()


class FakeLink:
    """A network in a test: records every uplink, delivers queued downlinks (class A: in the
    receive window after the next uplink; class C: at once), can be switched off."""

    def __init__(self, clock, up=True):
        self.clock = clock
        self.up = up
        self.uplinks = []  # [t_ms, fport, hex, confirmed]
        self.pending = []
        self.receiver = None
        self.device_class = "A"
        self.joins = 0
        self.unix0 = None  # unix time at ticks 0, for DeviceTimeReq
        self.tx_ms = 0

    async def join(self):
        self.joins += 1
        await self.clock.sleep_ms(6000)  # join request + JOIN_ACCEPT_DELAY1/2
        return self.up

    async def send(self, fport, data, confirmed):
        await self.clock.sleep_ms(2000)  # RECEIVE_DELAY1 + RX2 (L2 1.0.4 §3.3)
        if not self.up:
            return False, []
        self.uplinks.append([self.clock.ticks_ms(), fport, bytes(data).hex(), confirmed])
        out, self.pending = self.pending, []
        return True, out

    def set_receiver(self, callback):
        self.receiver = callback

    def set_class(self, device_class):
        self.device_class = device_class

    async def device_time(self):
        if not self.up or self.unix0 is None:
            return None
        return self.unix0 + self.clock.ticks_ms() // 1000

    def downlink(self, name, fields):
        data = cp.encode(name, fields)
        if self.device_class == "C" and self.receiver is not None and self.up:
            self.receiver(cp.FPORT[name], data)
        else:
            self.pending.append((cp.FPORT[name], data))

    def raw_downlink(self, fport, data):
        """Bytes as they came off the air, valid or not."""
        if self.device_class == "C" and self.receiver is not None and self.up:
            self.receiver(fport, data)
        else:
            self.pending.append((fport, data))

    def decoded(self):
        out = []
        for t, fport, hexdata, confirmed in self.uplinks:
            name, fields = cp.decode(fport, bytes.fromhex(hexdata))
            out.append(
                {
                    "t": t,
                    "name": name,
                    "fields": fields,
                    "confirmed": confirmed,
                    "fport": fport,
                    "hex": hexdata,
                }
            )
        return out


class Board:
    """A pin map like firmware/boards/*.py for the sim."""

    HARDWARE = "sim/sx1262"
    PINS = {
        "i2c_scl": 42,
        "i2c_sda": 41,
        "onewire": 4,
        "us_trig": 5,
        "us_echo": 6,
        "uart_tx": 5,
        "uart_rx": 6,
        "tilt_switch": 7,
        "battery_adc": 1,
        "battery_divider": 2.0,
        "dim_pwm": 2,
        "relay": 3,
        "presence": 5,
        "meter_cf": 6,
        "supply_sense": 7,
    }


def make_bin(app=None, range_sensor="jsn-sr04t", up=True, link=None):
    from main import build_app  # firmware/main.py: the same wiring as on a board

    clock = _clock()
    pins = SimPins(clock)
    p = Board.PINS
    app = dict(app or {})
    app["range_sensor"] = range_sensor
    app.setdefault("sensor_offset_cm", 30)  # below the JSN-SR04T's 25 cm blind zone
    w = {"clock": clock, "pins": pins}
    if range_sensor == "jsn-sr04t":
        w["range"] = sd.JSNModel(pins, p["us_trig"], p["us_echo"], 1000)
    elif range_sensor == "a02yyuw":
        w["range"] = sd.A02Model(pins.uart_bus, 1000)
    else:
        w["range"] = pins.i2c_bus.attach(0x29, sd.VL53L1XModel(1000))
    w["temp"] = sd.DS18B20Model(15.0)
    pins.onewire(p["onewire"]).model = w["temp"]
    w["tilt"] = pins.i2c_bus.attach(0x18, sd.LIS3DHModel(0.0))
    pins.adc(p["battery_adc"]).microvolts = 1_550_000  # 3.1 V pack behind a 1:2 divider
    link = FakeLink(clock, up) if link is None else link(clock)
    power = SimPower(clock)
    rtc, nvs = DictStore(), DictStore()
    app_node = build_app("bin", app, Board, link, clock, pins, power, rtc, nvs)
    w.update(link=link, node=app_node.node, power=power, rtc=rtc, nvs=nvs, app=app_node)
    return w


def set_fill(w, percent, height_cm=100, offset_cm=30):
    """Put the bin's contents at ``percent`` for the range model."""
    w["range"].value = int((offset_cm + height_cm * (100 - percent) / 100) * 10)


def make_lamp(app=None, up=True, rated_w=60.0, unix0=None, link=None):
    from main import build_app

    clock = _clock()
    pins = SimPins(clock)
    p = Board.PINS
    app = dict(app or {})
    app.setdefault("supply_sense", True)
    w_per_hz = app.get("meter_w_per_hz", 0.136)
    load = sd.LampLoadModel(pins, p["dim_pwm"], p["relay"], p["meter_cf"], w_per_hz, rated_w)
    pins.pin(p["supply_sense"]).drive(1)
    if link is None:
        link = FakeLink(clock, up)
        link.unix0 = unix0
    else:
        link = link(clock)
    power = SimPower(clock)
    nvs = DictStore()
    lamp = build_app("lamp", app, Board, link, clock, pins, power, None, nvs, 55.6761, 12.5683)
    node = lamp.node
    hw = {"dimmer": lamp.dimmer, "meter": lamp.meter, "presence": lamp.presence}
    levels = []
    dimmer = lamp.dimmer
    orig = dimmer._apply

    def logged(level):
        if LOG_LEVELS and (not levels or levels[-1][1] != level):
            levels.append([clock.ticks_ms(), level])
        orig(level)

    dimmer._apply = logged
    return {
        "clock": clock,
        "pins": pins,
        "load": load,
        "hw": hw,
        "link": link,
        "node": node,
        "power": power,
        "nvs": nvs,
        "app": lamp,
        "levels": levels,
    }


APP_KEY = bytes(range(16, 32))


def mac_link(net, dev_eui=b"\x00\x00\x00\x00\x00\x00\x00\x07"):
    """A factory of MacLinks: the real MAC on a sim radio attached to ``net`` (a TestNet)."""
    from apps.maclink import MacLink
    from hal.sim_radio import SimRadio
    from lorawan.mac import Mac

    def make(clock):
        radio = SimRadio(clock, net, "n1")
        mac = Mac(
            radio,
            clock,
            DictStore(),
            DictStore(),
            region="EU868",
            dev_eui=dev_eui,
            join_eui=bytes(8),
            app_key=APP_KEY,
        )
        link = MacLink(mac, clock, max_wait_ms=3_600_000)
        link.radio_ms = 0  # time spent inside send(): TX, receive windows, duty-cycle waits
        send = link.send

        async def timed_send(fport, data, confirmed):
            t0 = clock.ticks_ms()
            try:
                return await send(fport, data, confirmed)
            finally:
                link.radio_ms += clock.ticks_ms() - t0

        link.send = timed_send
        return link

    return make
