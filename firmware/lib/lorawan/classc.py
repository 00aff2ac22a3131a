"""Class C for the MAC: continuous receive on the RX2 channel between uplinks (L2 1.0.4 §6).

Loaded by :class:`lorawan.mac.Mac` the first time a node uses class C (mains-powered lamps);
battery nodes never carry it. The MAC stops the listening task before every uplink and starts it
again after the RX windows, so the radio is never shared. Application data that comes down is
handed to ``mac.on_downlink(fport, payload)`` or kept (bounded, oldest dropped) for
``await mac.receive()``. A confirmed class C downlink is acknowledged on the next uplink.
While a multicast group's class C session runs (lorawan.multicast, TS004 §4.4) the listener uses
that session's frequency and data rate, and wakes at each session's start and end.
"""

import asyncio

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


_QUEUE = const(8)  # class C downlinks kept for receive()


class ClassC:
    def __init__(self, mac):
        self.mac = mac
        self.task = None
        self.queue = []
        self.alarm = mac.clock.alarm()

    def start(self):
        mac = self.mac
        if self.task is None and mac.joined and not mac._busy:
            self.task = asyncio.create_task(self._loop())

    def stop(self):
        task = self.task
        self.task = None
        if task is not None:
            task.cancel()
        return task

    async def halt(self):
        task = self.stop()
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _loop(self):
        mac = self.mac
        try:
            while True:
                s = mac.state
                freq, dr, timeout = s.rx2_freq, s.rx2_dr, None
                now = mac.clock.ticks_ms()
                if mac.multicast is not None:  # a group's class C session (TS004 §4.4)
                    freq, dr, timeout = mac.multicast.window(now, freq, dr)
                sf, bw = mac.region.DR_TABLE[dr]
                rx = await mac.radio.receive(freq, sf, bw, now, timeout)
                if rx is not None:
                    d = mac._accept_downlink(rx, False)
                    if d is not None:
                        mac.status.class_c_downlinks += 1
                        self._deliver(d)
        except asyncio.CancelledError:
            pass

    def _deliver(self, d):
        if d.fport <= 0:
            return
        cb = self.mac.on_downlink
        if cb is not None:
            try:
                cb(d.fport, d.payload)
            except Exception:  # an app bug must not stop the MAC
                pass
            return
        if len(self.queue) >= _QUEUE:
            self.queue.pop(0)
        self.queue.append((d.fport, d.payload))
        self.alarm.fire()

    async def receive(self, timeout_ms):
        if not self.queue:
            await self.alarm.wait(timeout_ms)
        if self.queue:
            return self.queue.pop(0)
        return None
