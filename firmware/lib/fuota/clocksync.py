"""TS003-1.0.0 application-layer clock synchronisation, node side (fPort 202).

Commands (TS003 §3-§4; uplink answers share the request's CID):

=====  ===============================  ========================================================
CID    down (network -> node)           up (node -> network)
0x00   PackageVersionReq                PackageVersionAns: PackageIdentifier 1, PackageVersion 1
0x01   AppTimeAns: TimeCorrection i32,  AppTimeReq: DeviceTime u32 (GPS s), Param: TokenReq
       Param: TokenAns (bits 0..3)      (bits 0..3), AnsRequired (bit 4)
0x02   DeviceAppTimePeriodicityReq:     DeviceAppTimePeriodicityAns: Status (bit 0
       Periodicity (bits 0..3)          NotSupported), Time u32 (device GPS s)
0x03   ForceDeviceResyncReq: NbTrans    (AppTimeReq, NbTransmissions times)
       (bits 0..2)
=====  ===============================  ========================================================

All multi-byte fields little-endian. The node keeps GPS time as (seconds at a reference tick);
a node that never synchronised counts from 0 at boot, which is what it reports as DeviceTime, so
the first AppTimeAns brings it to the network's time. Also set from DeviceTimeAns (L2 §5.9) with
:meth:`ClockSync.set_gps`. A correction is applied only when its TokenAns matches the token of
the last request (TS003 §4.2), so a replayed old answer changes nothing.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


PORT = const(202)
PACKAGE_ID = const(1)  # TS003 §4.1
PACKAGE_VERSION = const(1)
_PKG = const(0x00)
_APP_TIME = const(0x01)
_PERIODICITY = const(0x02)
_RESYNC = const(0x03)
_REBASE_MS = const(86400000)  # rebase the reference daily: ticks differences stay small
_RESYNC_GAP_MS = const(60000)  # between forced AppTimeReqs


def _u32(b, i):
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)


def put_u32(out, v):
    v &= 0xFFFFFFFF
    out.append(v & 0xFF)
    out.append((v >> 8) & 0xFF)
    out.append((v >> 16) & 0xFF)
    out.append(v >> 24)


class ClockSync:
    def __init__(self, clock, rng=None):
        self.clock = clock
        self._rng = rng
        self._ref_s = 0  # GPS seconds at _ref_ticks
        self._ref_ticks = clock.ticks_ms()
        self._ref_ms = 0  # sub-second part at _ref_ticks
        self.token = 0
        self.synced = False
        self.corrections = 0
        self.period_s = 0  # 0: no periodic requests
        self._next = None  # ticks of the next periodic or forced request
        self.resync_left = 0
        self.want = True  # a request is owed (first sync after boot)

    def gps(self):
        """The node's GPS time in whole seconds (mod 2^32 on the air)."""
        c = self.clock
        now = c.ticks_ms()
        ms = c.ticks_diff(now, self._ref_ticks) + self._ref_ms
        if ms >= _REBASE_MS:
            self._ref_s += ms // 1000
            self._ref_ms = ms % 1000
            self._ref_ticks = now
            ms = self._ref_ms
        return self._ref_s + ms // 1000

    def set_gps(self, seconds):
        self._ref_s = seconds
        self._ref_ms = 0
        self._ref_ticks = self.clock.ticks_ms()
        self.synced = True
        # an AppTimeAns still on its way corrects the DeviceTime its request carried, not this
        # time: a new token makes it stale (TS003 §4.2), else the correction lands twice
        self.token = (self.token + 1) & 0x0F

    def ticks_at(self, gps_s):
        """Clock ticks at GPS second ``gps_s`` (mod 2^32 arithmetic, as on the air)."""
        delta = (gps_s - self.gps()) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        return self.clock.ticks_add(self.clock.ticks_ms(), delta * 1000)

    # ---------------------------------------------------------------- uplinks

    def request(self, out, ans_required=False):
        """Append an AppTimeReq to ``out`` (a bytearray)."""
        out.append(_APP_TIME)
        put_u32(out, self.gps())
        out.append((self.token & 0x0F) | (0x10 if ans_required else 0))
        self.want = False
        if self.resync_left > 0:
            self.resync_left -= 1
        self._schedule()

    def due(self):
        if self.want:
            return True
        if self._next is None:
            return False
        c = self.clock
        return c.ticks_diff(c.ticks_ms(), self._next) >= 0

    def _schedule(self):
        c = self.clock
        if self.resync_left > 0:
            self._next = c.ticks_add(c.ticks_ms(), _RESYNC_GAP_MS)
        elif self.period_s:
            jitter = self._rng.randrange(30000) if self._rng is not None else 0
            self._next = c.ticks_add(c.ticks_ms(), self.period_s * 1000 + jitter)
        else:
            self._next = None

    # ---------------------------------------------------------------- downlinks

    def handle(self, p, out):
        """Apply the commands in ``p``, answers to ``out``; stops at a truncated or unknown one."""
        i = 0
        n = len(p)
        while i < n:
            cid = p[i]
            if cid == _PKG:
                out.append(_PKG)
                out.append(PACKAGE_ID)
                out.append(PACKAGE_VERSION)
                i += 1
            elif cid == _APP_TIME and i + 6 <= n:
                corr = _u32(p, i + 1)
                if corr >= 0x80000000:
                    corr -= 0x100000000
                if p[i + 5] & 0x0F == self.token:
                    self._ref_s += corr
                    self.synced = True
                    self.corrections += 1
                    self.token = (self.token + 1) & 0x0F
                    self.resync_left = 0
                    self._schedule()
                i += 6
            elif cid == _PERIODICITY and i + 2 <= n:
                self.period_s = 128 << (p[i + 1] & 0x0F)  # 128 * 2^Periodicity s (TS003 §4.3)
                out.append(_PERIODICITY)
                out.append(0)  # Status: supported
                put_u32(out, self.gps())
                self._schedule()
                i += 2
            elif cid == _RESYNC and i + 2 <= n:
                self.resync_left = p[i + 1] & 0x07
                if self.resync_left:
                    self.want = True
                i += 2
            else:
                break
