"""Ed25519 signature verification (RFC 8032 §5.1) in pure Python, for MicroPython and CPython.

Only verification lives on the node: update bundles are signed off the node (``citypack fuota
bundle``, with ``cryptography``), and the node checks them against the public key in its config,
so a node that is taken apart yields nothing that can sign for the others.

Arithmetic follows RFC 8032 §5.1: the field GF(2^255 - 19), twisted Edwards curve
-x^2 + y^2 = 1 + d x^2 y^2, points in extended homogeneous coordinates (X, Y, Z, T) with
x = X/Z, y = Y/Z, x*y = T/Z (§5.1.4), point decoding §5.1.3, verification §5.1.7 (the
cofactorless equation [S]B = R + [k]A, as RFC 8032's reference code checks it). Arbitrary-size
integers are MicroPython's long ints (the ESP32 and unix ports have them). Checked against the
RFC 8032 §7.1 test vectors on the unix port and CPython (tests/firmware/test_fuota_crypto.py).
"""

from fuota.sha512 import sha512

_P = 2**255 - 19  # the field prime (RFC 8032 §5.1)
_L = 2**252 + 27742317777372353535851937790883648493  # order of the base point
_D = -121665 * pow(121666, _P - 2, _P) % _P  # curve constant d
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)  # sqrt(-1), for the square root in §5.1.3 step 3
_BY = 4 * pow(5, _P - 2, _P) % _P  # base point B: y = 4/5, x positive (RFC 8032 §5.1)


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)  # candidate root (p = 5 mod 8)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x & 1 != sign:
        x = _P - x
    return x


# base point x (RFC 8032 §5.1: the positive root for y = 4/5); checked against _recover_x in tests
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_B = (_BX, _BY, 1, _BX * _BY % _P)
_ZERO = (0, 1, 1, 0)


def _add(p, q):
    # RFC 8032 §5.1.4, "add-2008-hwcd-3" for a = -1
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, p):
    q = _ZERO
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _equal(p, q):
    # projective: x1/z1 == x2/z2 and y1/z1 == y2/z2
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def _decode(s):
    """A point from its 32-byte encoding (RFC 8032 §5.1.3), or None when it is not one."""
    if len(s) != 32:
        return None
    y = int.from_bytes(bytes(s), "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def verify(public_key, message, signature):
    """True when ``signature`` (64 bytes) is ``public_key``'s (32 bytes) over ``message``.

    Never raises on malformed input: wrong lengths, points off the curve, S out of range all
    give False (RFC 8032 §5.1.7 steps 1-3).
    """
    try:
        if len(public_key) != 32 or len(signature) != 64:
            return False
        a = _decode(public_key)
        r = _decode(signature[:32])
        if a is None or r is None:
            return False
        s = int.from_bytes(bytes(signature[32:]), "little")
        if s >= _L:
            return False
        k = (
            int.from_bytes(
                sha512(bytes(signature[:32]) + bytes(public_key) + bytes(message)), "little"
            )
            % _L
        )
        return _equal(_mul(s, _B), _add(r, _mul(k, a)))
    except Exception:  # arithmetic on hostile input: a failed check, never an exception
        return False
