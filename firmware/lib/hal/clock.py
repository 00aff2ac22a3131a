"""The HAL clock: every wait in the MAC and the apps goes through one of these.

Interface (both clocks)::

    clock.ticks_ms() -> int                 # now, in ms
    clock.ticks_add(t, delta_ms) -> int
    clock.ticks_diff(a, b) -> int           # a - b, wrap-safe
    clock.rtc_ms() -> int                   # a clock that runs on through deep sleep (not wrapping)
    await clock.sleep_ms(ms)
    await clock.sleep_until(t)              # t from ticks_ms()/ticks_add()
    alarm = clock.alarm()                   # a wake-up another task can fire early
    fired = await alarm.wait(timeout_ms)    # True when fire()d, False on timeout (None = forever)
    alarm.fire()

:class:`RealClock` is ``time.ticks_ms`` and ``asyncio.sleep_ms`` on the board (CPython falls back
to ``time.monotonic``). `hal.vclock.VirtualClock` is for host tests and the fleet simulator: time
only moves when every task is blocked on the clock; then it jumps to the earliest sleeper, so a
join with its 5 s JOIN_ACCEPT_DELAY1 takes milliseconds. It works under MicroPython's asyncio
and CPython's asyncio alike because it uses only ``asyncio.Event``, ``sleep(0)`` and tasks.

The contract that makes virtual time safe: tasks that drive the MAC wait only on the clock
(``sleep_ms``/``sleep_until``/alarms) or on short chains of ready tasks; real I/O in the sim
radios is synchronous (a blocking UDP exchange), so virtual time never runs ahead of it.
"""

import asyncio
import time

_ticks_ms = getattr(time, "ticks_ms", None)
_sleep_ms = getattr(asyncio, "sleep_ms", None)


class _RealAlarm:
    def __init__(self):
        self._ev = asyncio.Event()

    def fire(self):
        self._ev.set()

    async def wait(self, timeout_ms=None):
        try:
            if timeout_ms is None:
                await self._ev.wait()
            elif hasattr(asyncio, "wait_for_ms"):
                await asyncio.wait_for_ms(self._ev.wait(), timeout_ms)  # type: ignore[attr-defined]
            else:
                await asyncio.wait_for(self._ev.wait(), timeout_ms / 1000)
            fired = True
        except asyncio.TimeoutError:
            fired = False
        self._ev.clear()
        return fired


class RealClock:
    """Wall-clock time: ``time.ticks_ms`` on MicroPython (wraps, so use ticks_add/diff)."""

    def ticks_ms(self):
        if _ticks_ms is not None:
            return _ticks_ms()
        return int(getattr(time, "monotonic")() * 1000)  # CPython (not in MicroPython's time)

    def ticks_add(self, t, delta):
        if _ticks_ms is not None:
            return time.ticks_add(t, delta)  # type: ignore[attr-defined]
        return t + delta

    def ticks_diff(self, a, b):
        if _ticks_ms is not None:
            return time.ticks_diff(a, b)  # type: ignore[attr-defined]
        return a - b

    def rtc_ms(self):
        """The real-time clock in ms: on the ESP32 it runs on through deep sleep (ticks_ms starts
        again at every wake) and restarts on power-up (MicroPython ESP32 docs, machine.RTC)."""
        ns = getattr(time, "time_ns", None)
        if ns is not None:
            return ns() // 1000000
        return int(time.time() * 1000)

    async def sleep_ms(self, ms):
        if ms <= 0:
            await asyncio.sleep(0)
        elif _sleep_ms is not None:
            await _sleep_ms(ms)  # MicroPython: integer ms, no float on the heap
        else:
            await asyncio.sleep(ms / 1000)

    async def sleep_until(self, t):
        await self.sleep_ms(self.ticks_diff(t, self.ticks_ms()))

    def alarm(self):
        return _RealAlarm()


def __getattr__(name):
    # VirtualClock lives in hal.vclock (boards never load it); still reachable from here for
    # host code written against hal.clock (PEP 562 on CPython, module __getattr__ on MicroPython)
    if name == "VirtualClock":
        from hal.vclock import VirtualClock

        return VirtualClock
    raise AttributeError(name)
