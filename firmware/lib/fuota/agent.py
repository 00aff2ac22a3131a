"""The FUOTA agent: the node's end of a campaign, between the app seam and the MAC.

Wiring (firmware/main.py does this when config.json has ``fuota_public_key``)::

    agent = Agent(mac, clock, nvs, app_key, public_key, root="/", running_version="0.1.0")
    node.port_handler = agent.handle        # apps.node: fPorts 200-202 go here first
    asyncio.create_task(agent.run())        # sends answers, clock sync requests, applies updates

``handle(fport, payload)`` takes every downlink (class A from the uplinks' RX windows, class C and
multicast through ``mac.on_downlink``), returns False for ports that are not ours, and never
raises. Answers queue in a bounded outbox that :meth:`run` sends through the MAC's public
``send()``, waiting when the MAC is busy with the app's own uplink. A complete file is applied in
the run loop (fuota.update); then ``reboot()`` restarts the node into the new set (machine.reset
on a board) and the boot counter in fwslot takes over. :meth:`confirm_when` marks a new set good
once the app says it came up.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


import fwslot
from lorawan import status as st
from lorawan.multicast import Groups

from fuota import clocksync, fragsession, mcsetup, update

_OUTBOX = const(8)  # answers waiting (oldest dropped beyond)
_BUSY_RETRY_MS = const(2000)
_IDLE_MS = const(10000)  # the loop's longest sleep
_MAX_FILE = const(65536)  # largest file a session may announce (NbFrag x FragSize)
_MAX_MISSING = const(300)  # rows lost before coding starts: an L x L bit matrix (~11 KB at 300)


class Agent:
    def __init__(
        self, mac, clock, nvs, gen_app_key, public_key, root="/", running_version="0",
        max_file=_MAX_FILE, max_missing=_MAX_MISSING, max_wait_ms=0, reboot=None, rng=None,
    ):  # fmt: skip
        self.mac = mac
        self.clock = clock
        self.root = root
        self.public_key = bytes(public_key)
        self.running_version = running_version
        self.max_wait_ms = max_wait_ms
        self.reboot = reboot
        rng = rng if rng is not None else getattr(mac, "_rng", None)
        if mac.multicast is None:
            mac.multicast = Groups(clock, nvs)
        self.groups = mac.multicast
        self.time = clocksync.ClockSync(clock, rng)
        self.mc = mcsetup.McSetup(self.groups, self.time, mac.region, gen_app_key)
        self.frag = fragsession.Fragmentation(
            root + "fuota.bin", max_file, max_missing, self._complete, rng
        )
        self.outbox = []  # [not_before_ticks or None, fport, bytes]
        self.wake = clock.alarm()
        self.errors = 0  # commands whose handling raised (should stay 0; counted, not raised)
        self.dropped_answers = 0
        self.update_result = None  # (ok, reason, version) of the last apply
        self._pending = None  # (path, size) of a complete file to apply
        self._came_up = None
        self._class_switched = False
        self.frag.resume()  # a session a power cut interrupted: its rows are on flash

    # ---------------------------------------------------------------- downlinks

    def handle(self, fport, payload):
        """Take a downlink; True when it was for FUOTA (ports 200-202). Never raises."""
        if fport != clocksync.PORT and fport != mcsetup.PORT and fport != fragsession.PORT:
            return False
        try:
            group = None
            last = self.groups.last
            if last is not None and last[1] is payload:
                group = last[0]  # it came on this multicast group (lorawan.multicast)
            out = bytearray()
            delay = 0
            if fport == fragsession.PORT:
                self.frag.handle(payload, out, group)
                delay = self.frag.answer_delay_ms
            elif group is not None:
                return True  # setup and clock sync are unicast only (TS003 §3, TS004 §3)
            elif fport == mcsetup.PORT:
                self.mc.handle(payload, out)
            else:
                self.time.handle(payload, out)
            if out:
                self._queue(fport, bytes(out), delay)
        except Exception:  # hostile input must not stop the app or the MAC
            self.errors += 1
        return True

    def _queue(self, fport, data, delay_ms=0):
        if len(self.outbox) >= _OUTBOX:
            self.outbox.pop(0)
            self.dropped_answers += 1
        t = self.clock.ticks_add(self.clock.ticks_ms(), delay_ms) if delay_ms > 0 else None
        self.outbox.append([t, fport, data])
        self.wake.fire()

    def _complete(self, path, size):
        self._pending = (path, size)
        self.wake.fire()

    def confirm_when(self, came_up):
        """``came_up()`` -> bool, polled by :meth:`run`; when True the running set is kept."""
        self._came_up = came_up

    # ---------------------------------------------------------------- the loop

    async def run(self):
        while True:
            try:
                await self.step()
            except Exception:
                self.errors += 1
            await self.wake.wait(self._sleep_ms())

    def _sleep_ms(self):
        c = self.clock
        now = c.ticks_ms()
        wait = _IDLE_MS
        # wake for the next session start or end (a class A node switches to class C for it)
        _f, _d, edge = self.groups.window(now, 0, 0)
        if edge is not None and edge < wait:
            wait = edge if edge > 0 else 0
        for item in self.outbox:
            if item[0] is None:
                return 0
            d = c.ticks_diff(item[0], now)
            if d < wait:
                wait = d if d > 0 else 0
        return wait

    async def step(self):
        """One pass: confirm, apply, class C for sessions, clock sync, send what is due."""
        if self._came_up is not None and self._came_up():
            fwslot.confirm(self.root)
            self._came_up = None
        if self._pending is not None:
            path, size = self._pending
            self._pending = None
            self.update_result = update.apply(
                self.root, path, size, self.public_key, self.running_version
            )
            self.frag.mark_applied()  # a reboot keeps answering status, never re-applies
            if self.update_result[0] and self.reboot is not None:
                self.reboot()
        self._class_for_sessions()
        dt = self.mac.device_time  # DeviceTimeAns (L2 1.0.4 §5.9): GPS s at its uplink's TX end
        if dt is not None and not self.time.synced:
            secs, _frac, tx_done = dt
            self.time.set_gps(secs + self.clock.ticks_diff(self.clock.ticks_ms(), tx_done) // 1000)
        if self.time.due():
            out = bytearray()
            self.time.request(out)
            self._queue(clocksync.PORT, bytes(out))
        c = self.clock
        now = c.ticks_ms()
        for item in self.outbox:
            if item[0] is None or c.ticks_diff(now, item[0]) >= 0:
                if await self._send(item[1], item[2]):
                    self.outbox.remove(item)
                return  # one uplink per pass; the loop comes back at once while more wait

    def _class_for_sessions(self):
        """A class A node listens in class C for the span of a multicast session (TS004 §4.4)."""
        mac = self.mac
        now = self.clock.ticks_ms()
        active = False
        for g in self.groups.groups:
            if g is not None and self.groups.active(g, now):
                active = True
        if active and mac.device_class == "A":
            mac.set_class("C")
            self._class_switched = True
        elif not active and self._class_switched:
            mac.set_class("A")
            self._class_switched = False

    async def _send(self, fport, data):
        r = await self.mac.send(fport, data, False, self.max_wait_ms)
        if r.status == st.BUSY or r.status == st.DUTY_CYCLE:
            wait = r.retry_after_ms if r.retry_after_ms > 0 else _BUSY_RETRY_MS
            await self.clock.sleep_ms(wait)
            return False
        if r.fport is not None and r.payload is not None:
            # whatever came down in its RX windows (L2 §3.3): the app's receiver routes ports
            # 200-202 back here (apps.node.port_handler); without one, FUOTA ports only
            cb = self.mac.on_downlink
            if cb is not None:
                cb(r.fport, r.payload)
            else:
                self.handle(r.fport, r.payload)
        return True  # sent, or refused for good (too long, not joined): not retried

    def close(self):
        """Release the fragment file (a host running many nodes; a board just loses power)."""
        s = self.frag.session
        if s is not None:
            s.decoder.close()

    def report(self):
        """What a status page or a test wants to know, as plain values."""
        s = self.frag.session
        dec = s.decoder if s is not None else None
        return {
            "synced": self.time.synced,
            "gps": self.time.gps(),
            "groups": [g.gid for g in self.groups.groups if g is not None],
            "mc_frames": self.groups.frames,
            "mc_drops": dict(self.groups.drops),
            "fragments": dec.received if dec is not None else 0,
            "missing": dec.missing() if dec is not None else 0,
            "done": dec.done if dec is not None else False,
            "refused": self.frag.refused,
            "update": None if self.update_result is None else list(self.update_result),
            "version": fwslot.version(self.root, self.running_version),
            "errors": self.errors,
        }
