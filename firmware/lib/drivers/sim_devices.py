"""Chip models for the host: they answer on the simulated buses of ``hal.sim_pins`` the way the
datasheets cited in each driver say the chips do, and a simulated world sets their physical
inputs (distance, temperature, attitude, lamp power).

Each model has ``script``: a list of readings consumed first (outliers, dropouts: ``None``) before
it falls back to its steady value, so tests can feed a noisy sensor reading by reading.
"""

import math
import struct

from drivers.ds18b20 import crc8
from drivers.ultrasonic import a02_checksum


class _Scripted:
    def __init__(self, value):
        self.value = value
        self.script = []

    def next_value(self):
        if self.script:
            return self.script.pop(0)
        return self.value


class JSNModel(_Scripted):
    """JSN-SR04T: on each trigger pulse, loads the next echo width (µs) for ``pulse_in``."""

    def __init__(self, sim_pins, trig, echo, distance_mm=1000):
        super().__init__(distance_mm)
        self._sim = sim_pins
        self._echo = echo
        sim_pins.pin(trig).on_write = self._on_trig

    def _on_trig(self, level):
        if level:
            mm = self.next_value()
            self._sim.echo_us[self._echo] = None if mm is None else int(mm * 2000 / 343)


class A02Model(_Scripted):
    """A02YYUW: each time the UART runs dry, a fresh 4-byte frame arrives."""

    def __init__(self, uart, distance_mm=1000):
        super().__init__(distance_mm)
        uart.model = self
        self.corrupt = False  # next frame with a bad checksum

    def refill(self):
        mm = self.next_value()
        if mm is None:
            return b""
        hi, lo = (mm >> 8) & 0xFF, mm & 0xFF
        total = a02_checksum(hi, lo)
        if self.corrupt:
            self.corrupt = False
            total ^= 0x5A
        return bytes((0xFF, hi, lo, total))


class VL53L1XModel(_Scripted):
    """VL53L1X register file (16-bit addresses): model id, boot, data ready, range, status."""

    def __init__(self, distance_mm=1000):
        super().__init__(distance_mm)
        self.regs = {0x010F: 0xEA, 0x0110: 0xCC, 0x00E5: 0x01, 0x0030: 0x01, 0x0031: 0x00}
        self.ranging = False

    def read(self, reg, n):
        return bytes(self.regs.get(reg + i, 0) for i in range(n))

    def write(self, reg, data):
        for i, b in enumerate(data):
            self.regs[reg + i] = b
        if reg == 0x0087:
            self.ranging = data[0] == 0x40
            if self.ranging:
                self._measure()
        elif reg == 0x0086 and data[0] & 0x01:
            self.regs[0x0031] = 0x00  # interrupt cleared: no data ready

    def _measure(self):
        mm = self.next_value()
        if mm is None:
            self.regs[0x0089] = 0x04  # raw status 4: signal fail in the ULD table
            mm = 0
        else:
            self.regs[0x0089] = 0x09  # range valid
        self.regs[0x0096] = (mm >> 8) & 0xFF
        self.regs[0x0097] = mm & 0xFF
        self.regs[0x0031] = 0x01  # data ready, active-high polarity


class DS18B20Model(_Scripted):
    """DS18B20 one-wire state machine: SKIP ROM, CONVERT T, READ SCRATCHPAD with CRC."""

    def __init__(self, temperature_c=20.0):
        super().__init__(temperature_c)
        self._state = "idle"
        self._out = []
        self._latched = 85.0  # power-on value of the temperature register (datasheet)
        self.corrupt_next = False

    def reset(self):
        self._state = "rom"
        self._out = []
        return True

    def write_byte(self, b):
        if self._state == "rom":
            self._state = "function" if b == 0xCC else "idle"
        elif self._state == "function":
            if b == 0x44:
                t = self.next_value()
                self._latched = None if t is None else t
                self._state = "idle"
            elif b == 0xBE:
                self._out = list(self._scratchpad())
                self._state = "reading"

    def _scratchpad(self):
        t = self._latched
        if t is None:
            return b"\xff" * 9  # absent conversion: the bus floats high, CRC fails
        raw = round(t * 16) & 0xFFFF
        pad = bytearray(struct.pack("<HBBBBBB", raw, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10))
        crc = crc8(pad)
        if self.corrupt_next:
            self.corrupt_next = False
            crc ^= 0x01
        return bytes(pad) + bytes((crc,))

    def read_byte(self):
        return self._out.pop(0) if self._out else 0xFF


class LIS3DHModel(_Scripted):
    """LIS3DH register file: WHO_AM_I, CTRL regs, and gravity at ``value`` degrees of tilt."""

    def __init__(self, tilt_deg=0.0):
        super().__init__(tilt_deg)
        self.regs = {0x0F: 0x33, 0x20: 0x07, 0x23: 0x00}

    def read(self, reg, n):
        auto = reg & 0x80
        reg &= 0x7F
        if reg == 0x28 and n == 6 and auto:
            if not self.regs[0x20] & 0xF0:
                return bytes(6)  # power-down: output registers hold nothing useful
            tilt = math.radians(self.next_value())
            mg = (int(1000 * math.sin(tilt)), 0, int(1000 * math.cos(tilt)))
            # high-resolution: 12-bit value left-justified in 16 bits (1 mg/digit at ±2 g)
            return struct.pack("<hhh", *(v << 4 for v in mg))
        return bytes(self.regs.get(reg + (i if auto else 0), 0) for i in range(n))

    def write(self, reg, data):
        self.regs[reg & 0x7F] = data[0]


class LampLoadModel:
    """A lamp driver on mains behind the relay, seen by the BL0937 CF output.

    Power follows the PWM control voltage linearly up to ``rated_w`` while the relay is closed.
    Faults: ``broken`` (no power drawn), ``relay_stuck`` (always powered), ``dimming_stuck``
    (full power whatever the control voltage). ``supply`` False is a mains outage.
    """

    def __init__(self, sim_pins, pwm_pin, relay_pin, cf_pin, w_per_hz, rated_w=60.0, invert=False):
        self._pwm = sim_pins.pwm(pwm_pin, 1000)
        self._relay = sim_pins.pin(relay_pin)
        self._counter = sim_pins.counter(cf_pin)
        self._w_per_hz = w_per_hz
        self._invert = invert
        self.rated_w = rated_w
        self.broken = False
        self.relay_stuck = False
        self.dimming_stuck = False
        self.supply = True
        self._pwm.on_duty = lambda _d: self.update()
        self._relay.on_write = lambda _v: self.update()

    def power_w(self):
        if not self.supply or self.broken:
            return 0.0
        if not (self._relay.value() or self.relay_stuck):
            return 0.0
        duty = self._pwm.duty
        if self._invert:
            duty = 65535 - duty
        level = 1.0 if self.dimming_stuck else duty / 65535
        # a driver below 1 V of control (or with none) sits at its minimum, about 10 %
        return self.rated_w * (level if level > 0.1 else 0.1)

    def update(self):
        self._counter.set_frequency(self.power_w() / self._w_per_hz)
