"""Battery voltage on an ADC pin behind a resistor divider, and a charge estimate.

The pack is 2 × AA lithium (Li-FeS2, Energizer L91 datasheet): about 1.7-1.8 V per cell fresh
under light load, a long flat plateau near 1.5 V, then a fast fall below 1.2 V. The percent
table below follows that discharge curve for two cells in series (approximate, for reporting).
"""

_CURVE = ((2400, 0), (2700, 5), (2900, 20), (3000, 50), (3200, 85), (3400, 100))


def percent_from_mv(mv):
    if mv <= _CURVE[0][0]:
        return 0
    for i in range(1, len(_CURVE)):
        v1, p1 = _CURVE[i]
        if mv <= v1:
            v0, p0 = _CURVE[i - 1]
            return int(p0 + (p1 - p0) * (mv - v0) / (v1 - v0) + 0.5)
    return 100


class BatteryADC:
    def __init__(self, pins, number, divider_ratio=2.0):
        self._adc = pins.adc(number)
        self._ratio = divider_ratio

    def read_mv(self):
        return int(self._adc.read_uv() * self._ratio / 1000)

    def percent(self):
        return percent_from_mv(self.read_mv())
