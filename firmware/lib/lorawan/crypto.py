"""LoRaWAN 1.0.x cryptography on AES-128-ECB: AES-CMAC, FRMPayload encryption, session keys.

Sources: RFC 4493 (AES-CMAC, subkeys K1/K2 §2.3, MAC generation §2.4); LoRaWAN L2 1.0.4
(TS001-1.0.4) §4.3.3 FRMPayload encryption, §4.4 MIC, §6.2.5-§6.2.6 Join-Request/Join-Accept
and session keys. The device only ever runs AES *encrypt* (cryptolib's ECB), so the Join-Accept
is "decrypted" with AES-encrypt (the network encrypted it with AES-decrypt, §6.2.6).

Hot path (every uplink): :class:`Cmac` and :func:`crypt_payload` work in preallocated scratch
blocks and never slice; the frame buffer keeps 16 spare bytes in front of the frame for the MIC's
B0 block so the CMAC runs over one contiguous buffer without copying.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


from hal.aes import aes

_BLOCK = const(16)  # AES block size
_RB = const(0x87)  # RFC 4493 §2.3 constant R_128 (last byte)
_DIR_UP = const(0)  # L2 §4.3.3: Dir 0 = uplink
_DIR_DOWN = const(1)  # L2 §4.3.3: Dir 1 = downlink


def _shift_left_xor(src, dst):
    # dst = src << 1, then XOR Rb when the msb of src was set (RFC 4493 §2.3 steps 2-3)
    carry = 0
    for i in range(15, -1, -1):
        v = src[i]
        dst[i] = ((v << 1) | carry) & 0xFF
        carry = v >> 7
    if src[0] & 0x80:
        dst[15] ^= _RB


class Cmac:
    """AES-CMAC with one key; subkeys derived once, scratch blocks reused (RFC 4493)."""

    def __init__(self, key):
        if len(key) != _BLOCK:
            raise ValueError("AES-128 key must be 16 bytes")
        self._aes = aes(bytes(key), 1)
        self.tag = bytearray(_BLOCK)  # result of the last compute()
        self._blk = bytearray(_BLOCK)
        self._k1 = bytearray(_BLOCK)
        self._k2 = bytearray(_BLOCK)
        self._aes.encrypt(self._blk, self.tag)  # L = AES(K, 0^128)
        _shift_left_xor(self.tag, self._k1)
        _shift_left_xor(self._k1, self._k2)

    def compute(self, buf, off, n):
        """Tag of ``buf[off:off+n]`` into ``self.tag`` (and returned). Allocates nothing."""
        x = self.tag
        blk = self._blk
        aes_ecb = self._aes  # not a bound method: that would allocate on every call
        for i in range(_BLOCK):
            x[i] = 0
        nblocks = (n + 15) >> 4
        if nblocks == 0:
            nblocks = 1
        for b in range(nblocks - 1):
            p = off + (b << 4)
            for i in range(_BLOCK):
                blk[i] = x[i] ^ buf[p + i]
            aes_ecb.encrypt(blk, x)
        p = off + ((nblocks - 1) << 4)
        r = n - ((nblocks - 1) << 4)  # bytes in the last block, 0..16
        if r == _BLOCK:  # complete last block: XOR K1 (RFC 4493 §2.4 step 4)
            k = self._k1
            for i in range(_BLOCK):
                blk[i] = x[i] ^ buf[p + i] ^ k[i]
        else:  # padded with 10^i, XOR K2
            k = self._k2
            for i in range(_BLOCK):
                if i < r:
                    v = buf[p + i]
                elif i == r:
                    v = 0x80
                else:
                    v = 0
                blk[i] = x[i] ^ v ^ k[i]
        aes_ecb.encrypt(blk, x)
        return x

    def mic(self, buf, off, n):
        """The 4-byte LoRaWAN MIC (first 4 octets of the CMAC, L2 §4.4) as a little-endian int."""
        t = self.compute(buf, off, n)
        return t[0] | (t[1] << 8) | (t[2] << 16) | (t[3] << 24)

    def mic_into(self, buf, off, n, dst, dst_off):
        """Write the MIC of ``buf[off:off+n]`` to ``dst[dst_off:dst_off+4]``.

        Bytes, not an int: on a 32-bit board an int ≥ 2**30 is a heap object.
        """
        t = self.compute(buf, off, n)
        dst[dst_off] = t[0]
        dst[dst_off + 1] = t[1]
        dst[dst_off + 2] = t[2]
        dst[dst_off + 3] = t[3]

    def mic_matches(self, buf, off, n, mic, mic_off):
        """Whether ``mic[mic_off:mic_off+4]`` is the MIC of ``buf[off:off+n]``."""
        t = self.compute(buf, off, n)
        return (
            t[0] == mic[mic_off]
            and t[1] == mic[mic_off + 1]
            and t[2] == mic[mic_off + 2]
            and t[3] == mic[mic_off + 3]
        )


class FrameCipher:
    """FRMPayload encryption with one key (L2 §4.3.3): XOR with AES(K, A_i), in place."""

    def __init__(self, key, ecb=None):
        # ``ecb``: an AES-ECB object of the same key to share (one key schedule, less heap)
        self._aes = ecb if ecb is not None else aes(bytes(key), 1)
        self._a = bytearray(_BLOCK)
        self._s = bytearray(_BLOCK)

    def crypt(self, buf, off, n, dev_addr, fcnt, direction):
        """Encrypt or decrypt ``buf[off:off+n]`` in place (the operation is its own inverse)."""
        a = self._a
        s = self._s
        a[0] = 0x01
        a[1] = a[2] = a[3] = a[4] = 0
        a[5] = direction
        a[6] = dev_addr & 0xFF
        a[7] = (dev_addr >> 8) & 0xFF
        a[8] = (dev_addr >> 16) & 0xFF
        a[9] = (dev_addr >> 24) & 0xFF
        # the full 32-bit FCnt, not the 16 bits on air (L2 §4.3.3)
        a[10] = fcnt & 0xFF
        a[11] = (fcnt >> 8) & 0xFF
        a[12] = (fcnt >> 16) & 0xFF
        a[13] = (fcnt >> 24) & 0xFF
        a[14] = 0
        i = 0
        block = 1
        while i < n:
            a[15] = block
            self._aes.encrypt(a, s)
            j = 0
            while j < _BLOCK and i < n:
                buf[off + i] ^= s[j]
                i += 1
                j += 1
            block += 1


def fill_b0(buf, off, dev_addr, fcnt, direction, msg_len):
    """Write the MIC block B0 (L2 §4.4) at ``buf[off:off+16]``."""
    buf[off] = 0x49
    buf[off + 1] = buf[off + 2] = buf[off + 3] = buf[off + 4] = 0
    buf[off + 5] = direction
    for i in range(4):
        buf[off + 6 + i] = (dev_addr >> (8 * i)) & 0xFF
        buf[off + 10 + i] = (fcnt >> (8 * i)) & 0xFF  # 32-bit FCnt in B0
    buf[off + 14] = 0
    buf[off + 15] = msg_len
