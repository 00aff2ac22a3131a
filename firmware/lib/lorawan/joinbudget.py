"""The Join-Request back-off budget: aggregated airtime per window (LoRaWAN L2 1.0.4 §7).

The windows count from T0, the first Join-Request of a join episode (the episode ends when a
join succeeds): [T0, T0 + 1 h) under 36 s, [T0 + 1 h, T0 + 11 h) under 36 s, then each
[T0 + 11 h + N × 24 h, T0 + 35 h + N × 24 h) under 8.7 s. A Join-Request goes only when the window
it starts in holds all of its time on air, before the window ends: no window is exceeded, not
even by one frame. The region's sub-band duty cycle applies on top (``lorawan.mac``).

The budget is written before every Join-Request, like the DevNonce (L2 1.0.4 §6.2.5), to RTC
memory (kept through deep sleep) and NVS (kept through power loss), so a node that reboots or
wakes from deep sleep goes on with the budget it had instead of a fresh 1 % hour. Time comes
from ``clock.rtc_ms()``, which runs through deep sleep on the ESP32 (hal.clock). After a power
cut the time that passed is unknown and counts as none: the episode resumes where it stood.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


import binascii
import struct

_HOUR_MS = const(3600000)
_DAY_MS = const(86400000)
_FIRST_MS = const(36000)  # 36 s in the first hour (L2 1.0.4 §7)
_NEXT_MS = const(36000)  # 36 s in the next 10 hours
_DAILY_MS = const(8700)  # 8.7 s per 24 h after the first 11 hours
_MAGIC = const(0xB7)
_FMT = "<BBqIIq"  # magic, active, elapsed ms at save, window, airtime used in it, rtc ms at save
_SIZE = struct.calcsize(_FMT)
KEY = "joinbudget"  # RTC and NVS key (NVS keys are at most 15 characters)


def window(elapsed_ms):
    """(index, end ms, budget ms) of the §7 window holding ``elapsed_ms`` since T0."""
    if elapsed_ms < _HOUR_MS:
        return 0, _HOUR_MS, _FIRST_MS
    if elapsed_ms < 11 * _HOUR_MS:
        return 1, 11 * _HOUR_MS, _NEXT_MS
    n = (elapsed_ms - 11 * _HOUR_MS) // _DAY_MS
    return 2 + n, 11 * _HOUR_MS + (n + 1) * _DAY_MS, _DAILY_MS


def _rtc_ms(clock):
    f = getattr(clock, "rtc_ms", None)
    return f() if f is not None else clock.ticks_ms()


class JoinBudget:
    """The §7 budget of one node, restored from its stores (see the module docstring)."""

    def __init__(self, clock, nvs, rtc):
        self._clock = clock
        self._nvs = nvs
        self._rtc = rtc
        self.active = False  # an episode runs: T0 is set
        self.window = 0
        self.used_ms = 0  # airtime charged to ``window``
        self._base_ms = 0  # elapsed since T0 at ``_ref`` (rtc ms)
        self._ref = _rtc_ms(clock)
        warm = True
        v = _unpack(rtc.load(KEY))
        if v is None:
            warm = False
            v = _unpack(nvs.load(KEY))
        if v is None or not v[1]:
            return
        _, _, elapsed, self.window, self.used_ms, saved = v
        gap = self._ref - saved
        # deep sleep: the RTC clock ran on; after a power cut (or a clock that went back)
        # the time that passed is unknown and counts as none
        self._base_ms = elapsed + (gap if warm and gap > 0 else 0)
        self.active = True

    def elapsed_ms(self):
        if not self.active:
            return 0
        return self._base_ms + (_rtc_ms(self._clock) - self._ref)

    def wait_ms(self, toa_ms):
        """0 when a Join-Request of ``toa_ms`` on air may go now, else ms to wait first."""
        e = self.elapsed_ms()
        index, end, budget = window(e)
        used = self.used_ms if self.active and index == self.window else 0
        if used + toa_ms < budget and e + toa_ms <= end:
            return 0
        return end - e  # the next window starts with its own budget

    def charge(self, toa_ms):
        """Count a Join-Request about to go; persisted before it is sent."""
        if not self.active:
            self.active = True
            self._base_ms = 0
            self._ref = _rtc_ms(self._clock)
            self.window = 0
            self.used_ms = 0
        index, _, _ = window(self.elapsed_ms())
        if index != self.window:
            self.window = index
            self.used_ms = 0
        self.used_ms += toa_ms
        self._save()

    def reset(self):
        """A join succeeded: the episode is over; the next one starts with a new T0."""
        self.active = False
        self.window = 0
        self.used_ms = 0
        self._save()

    def _save(self):
        now = _rtc_ms(self._clock)
        blob = bytearray(_SIZE + 4)
        struct.pack_into(_FMT, blob, 0, _MAGIC, 1 if self.active else 0, self.elapsed_ms(),
                         self.window, self.used_ms, now)  # fmt: skip
        struct.pack_into("<I", blob, _SIZE, binascii.crc32(memoryview(blob)[:_SIZE]) & 0xFFFFFFFF)
        self._rtc.save(KEY, blob)
        self._nvs.save(KEY, blob)


def _unpack(blob):
    """The stored fields, or None for a missing, torn or foreign blob (never raises)."""
    if blob is None or len(blob) != _SIZE + 4 or blob[0] != _MAGIC:
        return None
    crc = struct.unpack_from("<I", blob, _SIZE)[0]
    if binascii.crc32(memoryview(blob)[:_SIZE]) & 0xFFFFFFFF != crc:
        return None
    return struct.unpack_from(_FMT, blob, 0)
