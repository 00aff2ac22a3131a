"""Multicast groups for the MAC: class C downlinks addressed to a group's McAddr.

Sources: LoRaWAN TS004-1.0.0 (remote multicast setup) §3 (a group: McAddr, McKey, the McFCount
window minMcFCount..maxMcFCount), §3.1.2 (McAppSKey, McNwkSKey), §4.4 (class C session:
frequency, data rate, start time, timeout); L2 1.0.4 §4.3 (the frame format is the unicast one,
with McAddr in DevAddr and the group's keys for the MIC and the payload).

The MAC owns at most one :class:`Groups` (``mac.multicast``, None until a node uses multicast;
the MAC works without this module). Its two seams with the MAC are small on purpose:

- ``accept(rx)``: a class C frame whose DevAddr is not the node's goes here; it is checked like a
  unicast one (MIC, FCnt, decryption with the group's keys) and also refused when it is confirmed,
  carries MAC commands, or arrives outside the group's class C session. Returns the decoded
  :class:`lorawan.frame.Data` or None (a drop counted in ``drops``). Never raises.
- ``window(now, freq, dr)``: the frequency, data rate and time-out the class C loop listens with:
  a running session's own, otherwise the unicast RX2 up to the next session's start.

Who is in which group, and with which keys, is the TS004 package's business (fuota.mcsetup):
it calls :meth:`Groups.setup`, :meth:`Groups.session`, :meth:`Groups.delete`.

Persistence: groups and their last McFCount go to the node's NVS store on setup/delete and
every ``_SAVE_EVERY`` frames; a cold boot resumes ``_SAVE_EVERY`` ahead, so a frame heard before
a power cut is never accepted twice (the MAC's own FCnt rule, lorawan.mac).
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


import struct

from lorawan import frame
from lorawan.session import Keys

MAX_GROUPS = const(4)  # McGroupID is 2 bits (TS004 §4.2)
_SAVE_EVERY = const(16)
_KEY = "mcgroups"
_REC = "<BI16s16sIIq"  # id, McAddr, McNwkSKey, McAppSKey, min, max, last (-1: none)
_REC_SIZE = const(53)


class Group:
    """One multicast group and its class C session (times in clock ticks)."""

    def __init__(self, gid, addr, nwk_s_key, app_s_key, fcnt_min, fcnt_max, last=-1):
        self.gid = gid
        self.addr = addr
        self.nwk_s_key = bytes(nwk_s_key)
        self.app_s_key = bytes(app_s_key)
        self.fcnt_min = fcnt_min
        self.fcnt_max = fcnt_max
        # last accepted McFCount; a fresh group accepts minMcFCount first (TS004 §4.2)
        self.last = last if last >= 0 else fcnt_min - 1
        self.keys = Keys(nwk_s_key, app_s_key)
        self.freq = 0  # class C session (TS004 §4.4); 0: none
        self.dr = 0
        self.start = 0  # ticks
        self.end = 0  # ticks
        self.frames = 0


class Groups:
    def __init__(self, clock, store=None):
        self.clock = clock
        self._store = store
        self.groups = [None] * MAX_GROUPS  # type: list[Group | None]
        self.drops = {}
        self.frames = 0
        self.last = None  # (gid, payload) of the last frame accepted
        self._work = bytearray(frame.BUF_SIZE)
        self._unsaved = 0
        self._load()

    # ---------------------------------------------------------------- persistence

    def _load(self):
        blob = self._store.load(_KEY) if self._store is not None else None
        if not blob or len(blob) % _REC_SIZE:
            return
        for i in range(len(blob) // _REC_SIZE):
            gid, addr, nwk, app, lo, hi, last = struct.unpack_from(_REC, blob, i * _REC_SIZE)
            if gid >= MAX_GROUPS:
                continue
            # power may have been lost after up to N - 1 unsaved frames (also when none was
            # saved since the setup: "nothing yet" on flash does not mean nothing was heard)
            base = last if last >= 0 else lo - 1
            last = base + _SAVE_EVERY
            self.groups[gid] = Group(gid, addr, nwk, app, lo, hi, last)

    def save(self):
        if self._store is None:
            return
        parts = []
        for g in self.groups:
            if g is not None:
                parts.append(
                    struct.pack(
                        _REC, g.gid, g.addr, g.nwk_s_key, g.app_s_key, g.fcnt_min, g.fcnt_max,
                        g.last,
                    )
                )  # fmt: skip
        self._store.save(_KEY, b"".join(parts))
        self._unsaved = 0

    # ---------------------------------------------------------------- TS004 package side

    def setup(self, gid, addr, nwk_s_key, app_s_key, fcnt_min, fcnt_max):
        self.groups[gid] = Group(gid, addr, nwk_s_key, app_s_key, fcnt_min, fcnt_max)
        self.save()

    def delete(self, gid):
        had = self.groups[gid] is not None
        self.groups[gid] = None
        if had:
            self.save()
        return had

    def session(self, gid, freq, dr, start_ticks, duration_ms):
        g = self.groups[gid]
        g.freq = freq
        g.dr = dr
        g.start = start_ticks
        g.end = self.clock.ticks_add(start_ticks, duration_ms)

    def active(self, g, now):
        c = self.clock
        return g.freq and c.ticks_diff(now, g.start) >= 0 and c.ticks_diff(g.end, now) > 0

    # ---------------------------------------------------------------- MAC side

    def window(self, now, freq, dr):
        """(freq, dr, timeout_ms or None) for the class C receiver at ``now``."""
        c = self.clock
        wake = None
        for g in self.groups:
            if g is None or not g.freq:
                continue
            if self.active(g, now):
                return g.freq, g.dr, c.ticks_diff(g.end, now)
            until = c.ticks_diff(g.start, now)
            if until > 0 and (wake is None or until < wake):
                wake = until
        return freq, dr, wake

    def _drop(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1
        return None

    def accept(self, rx):
        """A verified, decrypted group frame (:class:`lorawan.frame.Data`) or None."""
        try:
            return self._accept(rx.data)
        except Exception:  # nothing from the air raises out of the MAC
            return self._drop("other")

    def _accept(self, phy):
        n = len(phy)
        if n < 12:
            return self._drop("short")
        addr = phy[1] | (phy[2] << 8) | (phy[3] << 16) | (phy[4] << 24)
        g = None
        for x in self.groups:
            if x is not None and x.addr == addr:
                g = x
                break
        if g is None:
            return self._drop("dev_addr")
        if not self.active(g, self.clock.ticks_ms()):
            return self._drop("mc_session")  # heard outside its class C session (TS004 §4.4)
        try:
            d = frame.parse_data(phy, n, addr, g.last, g.keys, self._work)
        except frame.FrameError as exc:
            return self._drop(exc.reason)
        # multicast frames are unconfirmed and carry no MAC commands (L2 1.0.4 §4.3, TS004 §2)
        if d.mtype != frame.UNCONFIRMED_DOWN or d.fopts or d.fport <= 0 or d.ack:
            return self._drop("mc_frame")
        if d.fcnt > g.fcnt_max:
            return self._drop("mc_fcnt")  # past maxMcFCount: the group is spent (TS004 §4.2)
        g.last = d.fcnt
        g.frames += 1
        self.frames += 1
        self._unsaved += 1
        if self._unsaved >= _SAVE_EVERY:
            self.save()
        self.last = (g.gid, d.payload)
        return d
