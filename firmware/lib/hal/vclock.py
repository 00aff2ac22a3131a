"""Virtual time for host tests and the fleet simulator (the interface of :mod:`hal.clock`).

Time only moves when every task is blocked on the clock; then it jumps to the earliest sleeper,
so a join with its 5 s JOIN_ACCEPT_DELAY1 takes milliseconds. Works under MicroPython's and
CPython's asyncio: it uses only ``asyncio.Event``, ``sleep(0)`` and tasks. Run the program
with :meth:`VirtualClock.run` (or ``await clock.serve(coro)`` inside a running loop).

Contract: tasks wait only on this clock (``sleep_ms``/``sleep_until``/alarms) or on short
chains of ready tasks; real I/O in the sim radios is synchronous, so virtual time never runs
ahead of it. A task left waiting forever with no sleeper due raises RuntimeError (deadlock).
"""

import asyncio

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


_IDLE_ROUNDS = const(4)  # loop passes with nothing woken before virtual time may jump
_DEADLOCK_ROUNDS = const(20000)  # passes with no sleeper at all: every task waits forever


class _VirtualAlarm:
    def __init__(self, clock):
        self._clock = clock
        self._ev = asyncio.Event()
        self._gen = 0  # which wait() a heap entry belongs to
        self._fired = False
        self._waiting = False

    def fire(self):
        """Wake the waiter now (e.g. a frame arrived); a no-op when nobody waits."""
        if self._waiting and not self._ev.is_set():
            self._fired = True
            self._clock._woken += 1
            self._ev.set()

    def _timeout(self, gen):
        if self._waiting and gen == self._gen and not self._ev.is_set():
            self._fired = False
            self._clock._woken += 1
            self._ev.set()

    async def wait(self, timeout_ms=None):
        clock = self._clock
        self._gen += 1
        self._fired = False
        self._waiting = True
        if timeout_ms is not None:
            clock._push(clock._now + (timeout_ms if timeout_ms > 0 else 0), self, self._gen)
        try:
            await self._ev.wait()
        finally:
            self._waiting = False
            if self._ev.is_set():
                clock._woken -= 1
                self._ev.clear()
            if timeout_ms is not None and self._fired:
                clock._forget(self, self._gen)  # woken early: its deadline entry is stale
        return self._fired


class VirtualClock:
    """Virtual milliseconds; run the whole program with :meth:`run` (see the module docstring)."""

    def __init__(self, start_ms=0):
        self._now = start_ms
        self._heap = []  # sorted list of (deadline, seq, alarm, gen)
        self._seq = 0
        self._woken = 0  # alarms fired whose waiter has not resumed yet

    def ticks_ms(self):
        return self._now

    def ticks_add(self, t, delta):
        return t + delta

    def ticks_diff(self, a, b):
        return a - b

    def alarm(self):
        return _VirtualAlarm(self)

    async def sleep_ms(self, ms):
        await _VirtualAlarm(self).wait(ms if ms > 0 else 0)

    async def sleep_until(self, t):
        await self.sleep_ms(t - self._now)

    def _push(self, deadline, alarm, gen):
        self._seq += 1
        entry = (deadline, self._seq, alarm, gen)
        heap = self._heap
        # insertion keeps the list sorted; the earliest deadline is heap[0]
        lo = 0
        hi = len(heap)
        while lo < hi:
            mid = (lo + hi) >> 1
            if heap[mid][0] <= deadline:
                lo = mid + 1
            else:
                hi = mid
        heap.insert(lo, entry)

    def _forget(self, alarm, gen):
        # a long wait cut short (a class C receive until a multicast session's end) would
        # otherwise leave its entry here until the deadline: thousands of them in a campaign.
        # Searched from the far end, where long deadlines sit.
        heap = self._heap
        for i in range(len(heap) - 1, -1, -1):
            e = heap[i]
            if e[2] is alarm and e[3] == gen:
                heap.pop(i)
                return

    def _advance(self):
        heap = self._heap
        while heap:
            deadline, _, alarm, gen = heap.pop(0)
            if alarm._waiting and alarm._gen == gen and not alarm._ev.is_set():
                if deadline > self._now:
                    self._now = deadline
                alarm._timeout(gen)
                return True
        return False

    async def _drive(self):
        idle = 0
        empty = 0
        while True:
            await asyncio.sleep(0)
            if self._woken:
                idle = 0
                continue
            idle += 1
            if idle < _IDLE_ROUNDS:
                continue
            if self._advance():
                idle = 0
                empty = 0
            else:
                empty += 1
                if empty > _DEADLOCK_ROUNDS:
                    raise RuntimeError("virtual clock: every task waits and no sleeper is due")

    async def _main(self, coro):
        driver = asyncio.create_task(self._drive())
        try:
            return await coro
        finally:
            driver.cancel()

    def run(self, coro):
        """Run ``coro`` to completion in virtual time; returns its result."""
        if hasattr(asyncio, "wait_for_ms"):  # MicroPython: drop tasks left by an earlier run
            asyncio.new_event_loop()
        return asyncio.run(self._main(coro))

    async def serve(self, coro):
        """Like :meth:`run` for callers already inside an event loop (the fleet simulator)."""
        return await self._main(coro)
