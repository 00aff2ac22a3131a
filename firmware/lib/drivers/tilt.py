"""Tilt: an ST LIS3DH accelerometer over I2C, or a simple tilt switch on a GPIO.

LIS3DH datasheet (DocID17530 rev 2): WHO_AM_I 0x0F reads 0x33; CTRL_REG1 0x20 = 0x27 (10 Hz,
normal mode, X/Y/Z on), 0x00 = power-down; CTRL_REG4 0x23 = 0x88 (BDU, high resolution, ±2 g);
OUT_X_L 0x28..OUT_Z_H 0x2D, read as one burst with the sub-address MSB set (0xA8) for
auto-increment; high-resolution data are 12-bit left-justified, 1 mg/digit at ±2 g.
The tilt angle is the angle between measured gravity and the sensor's Z axis (upright = 0°).
"""

import math

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:

    def const(x):
        return x


from drivers import SensorError

ADDRESS = const(0x18)  # SA0 low; 0x19 with SA0 high
WHO_AM_I = const(0x0F)
WHO_AM_I_VALUE = const(0x33)
CTRL_REG1 = const(0x20)
CTRL_REG4 = const(0x23)
OUT_X_L = const(0x28)
_AUTO_INCREMENT = const(0x80)
_CTRL1_10HZ_XYZ = const(0x27)
_CTRL4_BDU_HR_2G = const(0x88)
_SETTLE_MS = const(120)  # first sample after power-up at 10 Hz ODR: 1/ODR + turn-on


def _s16(lo, hi):
    v = lo | (hi << 8)
    return v - 0x10000 if v & 0x8000 else v


def tilt_degrees(x_mg, y_mg, z_mg):
    g = math.sqrt(x_mg * x_mg + y_mg * y_mg + z_mg * z_mg)
    if g < 300:  # free fall or a dead sensor: no gravity to measure against
        return None
    c = z_mg / g
    c = 1.0 if c > 1 else -1.0 if c < -1 else c
    return math.degrees(math.acos(c))


class LIS3DH:
    def __init__(self, i2c, clock, address=ADDRESS):
        self._i2c = i2c
        self._clock = clock
        self._addr = address

    async def read_deg(self):
        i2c = self._i2c
        try:
            who = i2c.readfrom_mem(self._addr, WHO_AM_I, 1)[0]
            if who != WHO_AM_I_VALUE:
                raise SensorError("not a LIS3DH: WHO_AM_I 0x%02x" % who)
            i2c.writeto_mem(self._addr, CTRL_REG4, bytes((_CTRL4_BDU_HR_2G,)))
            i2c.writeto_mem(self._addr, CTRL_REG1, bytes((_CTRL1_10HZ_XYZ,)))
            await self._clock.sleep_ms(_SETTLE_MS)
            raw = i2c.readfrom_mem(self._addr, OUT_X_L | _AUTO_INCREMENT, 6)
            i2c.writeto_mem(self._addr, CTRL_REG1, bytes((0x00,)))  # back to power-down
        except OSError:
            return None
        x = _s16(raw[0], raw[1]) >> 4
        y = _s16(raw[2], raw[3]) >> 4
        z = _s16(raw[4], raw[5]) >> 4
        return tilt_degrees(x, y, z)


class TiltSwitch:
    """A ball or mercury switch that closes past its angle (typically ~45°): reports 90° or 0°."""

    def __init__(self, pins, number, active_high=True):
        self._pin = pins.input(number, pull_up=not active_high)
        self._active = 1 if active_high else 0

    async def read_deg(self):
        return 90.0 if self._pin.value() == self._active else 0.0
