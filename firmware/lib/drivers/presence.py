"""Presence input: a PIR or a microwave radar module with a digital output on a GPIO.

Each rising edge is one detection (TALQ PresenceSensorFunction / TrafficCounterFunction
``roadUserNumber``). The pin IRQ only counts and sets a flag (``hal.pins.EdgeCounter``); the app
wakes on the flag and reads the count here.
"""


class PresenceSensor:
    def __init__(self, pins, number):
        self._counter = pins.counter(number)
        self.flag = self._counter.flag
        self._seen = self._counter.count()

    def take(self):
        """Detections since the last call."""
        now = self._counter.count()
        n = now - self._seen
        self._seen = now
        return n
