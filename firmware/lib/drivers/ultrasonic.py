"""Ultrasonic range sensors: JSN-SR04T (trigger/echo) and DFRobot A02YYUW (UART frames).

JSN-SR04T datasheet (v3.0): a >= 10 µs high pulse on TRIG starts a burst; ECHO stays high for the
round trip; distance = echo time × 340 m/s / 2 (≈ µs / 58 for cm); range 25-450 cm; at least
50 ms between measurements.

A02YYUW (DFRobot SEN0311 wiki): 9600 8N1, every 100 ms a 4-byte frame
``0xFF, Data_H, Data_L, SUM`` with ``SUM = (0xFF + Data_H + Data_L) & 0xFF``; distance in mm is
``Data_H * 256 + Data_L``; range 30-4500 mm.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:

    def const(x):
        return x


_TRIG_US = const(20)  # >= 10 µs per datasheet; 20 µs for margin on v3 boards
_ECHO_TIMEOUT_US = const(30_000)  # 5 m round trip ≈ 29 ms
_JSN_MIN_MM = const(250)
_JSN_MAX_MM = const(4500)
_A02_HEADER = const(0xFF)
_A02_MIN_MM = const(30)
_A02_MAX_MM = const(4500)
_A02_PERIOD_MS = const(100)


class JSNSR04T:
    def __init__(self, pins, trig, echo, clock):
        self._pins = pins
        self._trig = pins.output(trig, 0)
        self._echo = pins.input(echo)
        self._clock = clock

    async def read_mm(self):
        self._pins.trigger(self._trig, _TRIG_US)
        width = self._pins.pulse_in(self._echo, 1, _ECHO_TIMEOUT_US)
        await self._clock.sleep_ms(60)  # datasheet: >= 50 ms between measurement cycles
        if width < 0:
            return None
        mm = width * 343 // 2000  # µs × 0.343 mm/µs / 2 (there and back)
        if mm < _JSN_MIN_MM or mm > _JSN_MAX_MM:
            return None
        return mm


def a02_checksum(high, low):
    return (_A02_HEADER + high + low) & 0xFF


def parse_a02(data):
    """The last valid distance (mm) in a byte stream of A02YYUW frames, or ``None``."""
    best = None
    i = 0
    n = len(data)
    while i + 4 <= n:
        if data[i] != _A02_HEADER:
            i += 1
            continue
        high, low, total = data[i + 1], data[i + 2], data[i + 3]
        if a02_checksum(high, low) != total:
            i += 1  # resynchronise on the next header byte
            continue
        mm = (high << 8) | low
        best = mm if _A02_MIN_MM <= mm <= _A02_MAX_MM else None
        i += 4
    return best


class A02YYUW:
    def __init__(self, pins, tx, rx, clock):
        self._uart = pins.uart(tx, rx, 9600)
        self._clock = clock

    async def read_mm(self):
        self._uart.read()  # drop stale frames
        await self._clock.sleep_ms(_A02_PERIOD_MS + 20)
        data = self._uart.read(16)
        if not data:
            return None
        return parse_a02(data)
