"""Active power and energy from a pulse-output metering IC (BL0937 / HLW8012).

BL0937 and HLW8012 datasheets: the CF pin outputs pulses at a frequency proportional to active
power, so P = f_CF × k and every CF pulse is k/3600 Wh. ``w_per_hz`` (k) depends on the shunt and
the voltage divider and is calibrated per board against a known load; the default 0.136 W/Hz is
the common 1 mΩ shunt / 1.88 MΩ divider layout (Tasmota's BL0937 reference calibration).
"""

from drivers import ticks_diff


class EnergyMeter:
    def __init__(self, pins, cf_pin, clock, w_per_hz=0.136, energy_wh=0.0):
        self._counter = pins.counter(cf_pin)
        self._clock = clock
        self.w_per_hz = w_per_hz
        self._base_wh = float(energy_wh)  # energy restored from NVS at boot
        self._base_count = self._counter.count()
        self._last_count = self._base_count
        self._last_ms = clock.ticks_ms()
        self.power_w = 0.0

    def sample(self):
        """Average active power since the previous sample (W); call at a steady cadence."""
        now = self._clock.ticks_ms()
        count = self._counter.count()
        dt = ticks_diff(self._clock, now, self._last_ms)
        if dt > 0:
            self.power_w = (count - self._last_count) * 1000.0 / dt * self.w_per_hz
        self._last_count, self._last_ms = count, now
        return self.power_w

    def rebase(self, energy_wh):
        """Continue counting from ``energy_wh`` (the total restored from NVS)."""
        self._base_wh = float(energy_wh)
        self._base_count = self._counter.count()

    def energy_wh(self):
        return self._base_wh + (self._counter.count() - self._base_count) * self.w_per_hz / 3600
