"""TS004-1.0.0 remote multicast setup, node side (fPort 200).

Commands (TS004 §4; the answer has the request's CID; little-endian fields):

=====  ====================================================  ===================================
CID    down (network -> node)                                 up (node -> network)
0x00   PackageVersionReq                                      PackageVersionAns: 2, 1
0x01   McGroupStatusReq: CmdMask (RegGroupsMask bits 0..3)    McGroupStatusAns: Status (AnsGroupMask
                                                              bits 0..3, NbTotalGroups bits 4..6),
                                                              then McGroupID u8 + McAddr u32 each
0x02   McGroupSetupReq: McGroupIDHeader (bits 0..1), McAddr   McGroupSetupAns: McGroupID, IDerror
       u32, McKey_encrypted 16, minMcFCount u32,              (bit 2)
       maxMcFCount u32 (29 bytes)
0x03   McGroupDeleteReq: McGroupIDHeader                      McGroupDeleteAns: McGroupID,
                                                              McGroupUndefined (bit 2)
0x04   McClassCSessionReq: McGroupIDHeader, SessionTime u32   McClassCSessionAns: Status (McGroupID,
       (GPS s), SessionTimeOut (bits 0..3: 2^TimeOut s),      DR error bit 2, frequency error bit 3,
       DLFrequency u24 (x100 Hz), DR (10 bytes)               McGroupUndefined bit 4), TimeToStart
                                                              u24 s when no error
=====  ====================================================  ===================================

Keys (TS004 §3.1.2): McRootKey = aes128_encrypt(GenAppKey, 0x00 | pad16) for an L2 1.0.x device
(citypack provisions GenAppKey = AppKey); McKEKey = aes128_encrypt(McRootKey, 0x00 | pad16). The
network sends McKey_encrypted = aes128_decrypt(McKEKey, McKey), so the node recovers
McKey = aes128_encrypt(McKEKey, McKey_encrypted) with AES encryption only (as LoRaMac-node's
secure element and ChirpStack's FUOTA server do). McAppSKey = aes128_encrypt(McKey, 0x01 | McAddr
| pad16), McNwkSKey = aes128_encrypt(McKey, 0x02 | McAddr | pad16). McKey itself is dropped once
the session keys are derived; McKEKey is the only long-lived key kept here.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


from hal.aes import aes
from lorawan.multicast import MAX_GROUPS

from fuota.clocksync import _u32

PORT = const(200)
PACKAGE_ID = const(2)  # TS004 §4.1
PACKAGE_VERSION = const(1)
_PKG = const(0x00)
_STATUS = const(0x01)
_SETUP = const(0x02)
_DELETE = const(0x03)
_CLASS_C = const(0x04)
_MAX_TIME_TO_START = const(0xFFFFFF)  # TimeToStart is 3 bytes


def _encrypt(key, block):
    out = bytearray(16)
    aes(bytes(key), 1).encrypt(bytes(block), out)
    return bytes(out)


def mc_kekey(gen_app_key):
    """McKEKey from the device's GenAppKey (L2 1.0.x: AppKey), TS004 §3.1.2."""
    return _encrypt(_encrypt(gen_app_key, bytes(16)), bytes(16))


def mc_session_keys(mc_key, mc_addr):
    """(McNwkSKey, McAppSKey) of a group, TS004 §3.1.2."""
    blk = bytearray(16)
    for i in range(4):
        blk[1 + i] = (mc_addr >> (8 * i)) & 0xFF  # McAddr little-endian, as on the air
    blk[0] = 0x02
    nwk = _encrypt(mc_key, blk)
    blk[0] = 0x01
    app = _encrypt(mc_key, blk)
    return nwk, app


class McSetup:
    def __init__(self, groups, clocksync, region, gen_app_key):
        self.groups = groups
        self.time = clocksync
        self.region = region
        self._kek = mc_kekey(gen_app_key)

    def handle(self, p, out):
        """Apply the commands in ``p``, answers to ``out``; stops at a truncated or unknown one."""
        i = 0
        n = len(p)
        groups = self.groups
        while i < n:
            cid = p[i]
            if cid == _PKG:
                out.append(_PKG)
                out.append(PACKAGE_ID)
                out.append(PACKAGE_VERSION)
                i += 1
            elif cid == _STATUS and i + 2 <= n:
                mask = p[i + 1] & 0x0F
                ans = 0
                total = 0
                for g in groups.groups:
                    if g is not None:
                        total += 1
                        if mask & (1 << g.gid):
                            ans |= 1 << g.gid
                out.append(_STATUS)
                out.append(ans | (total << 4))
                for gid in range(MAX_GROUPS):
                    if ans & (1 << gid):
                        g = groups.groups[gid]
                        out.append(gid)
                        for k in range(4):
                            out.append((g.addr >> (8 * k)) & 0xFF)
                i += 2
            elif cid == _SETUP and i + 30 <= n:
                gid = p[i + 1] & 0x03
                addr = _u32(p, i + 2)
                lo = _u32(p, i + 22)
                hi = _u32(p, i + 26)
                err = 0
                if lo > hi:
                    err = 0x04  # a window that holds no frame: refused like an ID we cannot take
                else:
                    mc_key = _encrypt(self._kek, p[i + 6 : i + 22])
                    nwk, app = mc_session_keys(mc_key, addr)
                    groups.setup(gid, addr, nwk, app, lo, hi)
                out.append(_SETUP)
                out.append(gid | err)
                i += 30
            elif cid == _DELETE and i + 2 <= n:
                gid = p[i + 1] & 0x03
                had = groups.delete(gid)
                out.append(_DELETE)
                out.append(gid | (0 if had else 0x04))
                i += 2
            elif cid == _CLASS_C and i + 11 <= n:
                self._class_c(p, i + 1, out)
                i += 11
            else:
                break

    def _class_c(self, p, i, out):
        gid = p[i] & 0x03
        session_s = _u32(p, i + 1)
        timeout_s = 1 << (p[i + 5] & 0x0F)  # 2^TimeOut seconds (TS004 §4.4)
        freq = (p[i + 6] | (p[i + 7] << 8) | (p[i + 8] << 16)) * 100
        dr = p[i + 9]
        region = self.region
        status = gid
        if dr >= len(region.DR_TABLE) or region.DR_TABLE[dr][0] == 0 or not region.valid_rx_dr(dr):
            status |= 0x04  # DR error (FSK or not a downlink DR here)
        if not region.valid_freq(freq):
            status |= 0x08
        if self.groups.groups[gid] is None:
            status |= 0x10
        out.append(_CLASS_C)
        out.append(status)
        if status != gid:
            return
        now_s = self.time.gps()
        to_start = (session_s - now_s) & 0xFFFFFFFF
        if to_start >= 0x80000000:  # already begun: the window still ends where it would have
            to_start = 0
        self.groups.session(gid, freq, dr, self.time.ticks_at(session_s), timeout_s * 1000)
        t = to_start if to_start <= _MAX_TIME_TO_START else _MAX_TIME_TO_START
        out.append(t & 0xFF)
        out.append((t >> 8) & 0xFF)
        out.append(t >> 16)
