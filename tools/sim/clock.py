"""Simulated time for the fleet: the HAL clock interface at a fixed speed over real time.

``firmware/lib/hal/clock.py`` defines the clock every wait of the MAC and the apps goes through
(``ticks_ms``, ``ticks_add``, ``ticks_diff``, ``sleep_ms``, ``sleep_until``, ``alarm()``) and
offers two: ``RealClock`` (the board) and ``VirtualClock`` (jumps to the next sleeper as soon as
every task is blocked on it). The virtual clock is right for a fleet that talks only to the
in-process emulator (the benchmark), but the demo and the end-to-end tests also run the real
gateway, whose answers travel over MQTT: under ``VirtualClock`` simulated hours would pass while
one MQTT message is in flight. :class:`ScaledClock` is the thin adapter for that case: simulated
time is real time multiplied by ``speed``, so the gateway's answer arrives ``1/speed`` as late in
simulated time as it does in real time, and a 15-minute report interval at ``speed=60`` takes
15 s of wall time.

Both clocks count milliseconds from 0 at start; :class:`SimTime` maps those ticks to a simulated
Unix time for the world (sun, traffic, timestamps).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class HalClock(Protocol):
    """The subset of the HAL clock interface the simulator itself uses."""

    def ticks_ms(self) -> int: ...

    async def sleep_ms(self, ms: int) -> None: ...


class _ScaledAlarm:
    def __init__(self, clock: ScaledClock) -> None:
        self._clock = clock
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()

    async def wait(self, timeout_ms: int | None = None) -> bool:
        try:
            if timeout_ms is None:
                await self._event.wait()
            else:
                async with asyncio.timeout(self._clock.real_s(timeout_ms)):  # gh-86296
                    await self._event.wait()
            fired = True
        except TimeoutError:
            fired = False
        self._event.clear()
        return fired


class ScaledClock:
    """Simulated milliseconds = real milliseconds × ``speed`` since the clock was made."""

    def __init__(self, speed: float = 1.0, start_ms: int = 0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start_ms = start_ms
        self._t0 = time.monotonic()

    def real_s(self, sim_ms: float) -> float:
        """How long ``sim_ms`` simulated milliseconds take in real seconds."""
        return max(0.0, sim_ms) / 1000.0 / self.speed

    def ticks_ms(self) -> int:
        return self._start_ms + int((time.monotonic() - self._t0) * 1000.0 * self.speed)

    def ticks_add(self, t: int, delta: int) -> int:
        return t + delta

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    async def sleep_ms(self, ms: int) -> None:
        await asyncio.sleep(self.real_s(ms))

    async def sleep_until(self, t: int) -> None:
        await self.sleep_ms(t - self.ticks_ms())

    def alarm(self) -> _ScaledAlarm:
        return _ScaledAlarm(self)


class SimTime:
    """Simulated Unix time: ``epoch`` when the clock read 0, plus the clock's ticks."""

    def __init__(self, clock: HalClock, epoch: float) -> None:
        self.clock = clock
        self.epoch = epoch

    def now(self) -> float:
        return self.epoch + self.clock.ticks_ms() / 1000.0


WALL_LEAD_S = 86400.0  # how far an accelerated world starts behind the wall clock (FUOTA)


def evening_start(now: float, *, after_sunset_s: float = 20 * 60, before_s: float = 0.0) -> float:
    """The simulated start time: shortly after the most recent Aarhus sunset, never after
    ``now - before_s``.

    Lamps are lit and the evening traffic is out, so a new user sees lamps follow road users
    within seconds whatever the hour they start the demo.

    ``before_s`` (:data:`WALL_LEAD_S`) is for worlds whose lamps talk FUOTA to a gateway on the
    wall clock (tools/sim/fuota_street.py, tools/demo.py ``--fuota``). Started at the latest
    sunset, a world running 40 times faster meets the wall clock during a campaign for about
    an hour after each sunset (and runs ahead of it in the first 20 minutes). The FUOTA
    end-to-end tests failed in that window (14:49-15:12 UTC on 6 December, also on the commit
    that had landed, lamps not answering the setup) and passed before and after it. A day
    behind, such a world stays behind the wall clock for at least 36 minutes of wall time at
    40 times, longer than any test's bound.

    The cause, found on 7 December: the emulator compared each queue item's ``expiresAt``
    (stamped by the gateway on the wall clock: 600 s for a FUOTA setup request) with the
    world's clock, so once the world was that far ahead it dropped every setup request as
    EXPIRED. It compares with the wall clock now (tools/netsim/config.py ``expiry_now``,
    tools/sim/fleet.py); the fragment-loss campaign of tests/e2e/test_fuota_campaign.py then
    reached applied with its world started over four hours ahead of the wall clock (and
    failed so without the change). The lead is kept as it was: that one campaign is all that
    was run with the world ahead, not every FUOTA path with the clocks crossing mid-campaign.
    """
    from tools.sim.world import AARHUS_LATITUDE, AARHUS_LONGITUDE, sun_times

    latest = now - before_s
    _, sunset = sun_times(latest, AARHUS_LATITUDE, AARHUS_LONGITUDE)
    if sunset + after_sunset_s > latest:  # not yet evening there: the day before's
        _, sunset = sun_times(latest - 86400.0, AARHUS_LATITUDE, AARHUS_LONGITUDE)
    return float(int(sunset + after_sunset_s))
