"""Per-device random numbers for join and retransmission jitter (L2 1.0.4 §7 wants retries
randomised per device).

xorshift32 (Marsaglia 2003): the same sequence on MicroPython and CPython for one seed, so the
fleet simulator is reproducible while hundreds of nodes in one process stay independent. On a
board, seed it from ``os.urandom`` (the ESP32's hardware RNG) with :func:`hardware_seed`.
"""

import os


class Rng:
    def __init__(self, seed=1):
        self._x = (seed & 0xFFFFFFFF) or 0x9E3779B9

    def next32(self):
        x = self._x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._x = x
        return x

    def randrange(self, n):
        """An int in [0, n) (n ≥ 1)."""
        return self.next32() % n


def hardware_seed():
    b = os.urandom(4)
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)
