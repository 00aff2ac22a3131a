"""Battery level for DevStatusAns (L2 1.0.4 §5.5): 0 = external power, 1..254 = level,
255 = the device cannot measure it.

``battery.level() -> int`` is the whole interface.
"""


class FixedBattery:
    """Host and mains-powered nodes: a constant level (default 0 = external power, lamps)."""

    def __init__(self, level=0):
        self.value = level

    def level(self):
        return self.value


class AdcBattery:
    """ESP32: a battery on an ADC pin through a divider, mapped linearly onto 1..254."""

    def __init__(self, pin, empty_mv=3300, full_mv=4200, divider=2.0):
        import machine

        self._adc = machine.ADC(machine.Pin(pin), atten=machine.ADC.ATTN_11DB)
        self._empty = empty_mv
        self._full = full_mv
        self._divider = divider

    def level(self):
        try:
            mv = self._adc.read_uv() * self._divider / 1000
        except OSError:
            return 255
        if mv <= self._empty:
            return 1
        if mv >= self._full:
            return 254
        return 1 + int(253 * (mv - self._empty) / (self._full - self._empty))
