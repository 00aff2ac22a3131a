"""TS005-1.0.0 forward error correction, server side: a file into uncoded and coded fragments.

TS005 annex ("Fragmentation algorithm"): fragments 1..M are the M rows of the (padded) file;
coded fragment M + n (n = 1, 2, ...) is the XOR of the rows that ``matrix_line(n, M)`` selects.
The row is drawn with the annex's PRBS23 generator: M/2 draws in 0..M-1 (0..M when M is a power
of two, values >= M discarded), each draw setting its column (set, not toggled). Checked against
ChirpStack's ``lorawan/applayer/fragmentation/encode_test.go`` (protocol/vectors/fuota.json); the
node decodes it with firmware/lib/fuota/fragdecoder.py. :func:`decode` here is a reference
decoder for tests (Gaussian elimination, no memory limit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from protocol.errors import DecodeError, EncodeError

__all__ = ["decode", "encode", "matrix_line", "pad", "prbs23"]


def prbs23(x: int) -> int:
    b0 = x & 1
    b1 = (x & 32) >> 5
    return (x >> 1) + ((b0 ^ b1) << 22)


def matrix_line(n: int, m: int) -> list[int]:
    """Row ``n`` (1-based, among the coded fragments) of the parity matrix for ``m`` rows."""
    if n < 1 or m < 1:
        raise EncodeError("n and m must be at least 1")
    line = [0] * m
    mm = 1 if m & (m - 1) == 0 else 0
    x = 1 + 1001 * n
    for _ in range(m // 2):
        r = 1 << 16
        while r >= m:
            x = prbs23(x)
            r = x % (m + mm)
        line[r] = 1
    return line


def pad(data: bytes, frag_size: int) -> tuple[bytes, int]:
    """``data`` padded with zeros to whole fragments, and the padding (FragSessionSetupReq)."""
    if not 1 <= frag_size <= 255:
        raise EncodeError("frag_size must be 1..255")
    padding = (-len(data)) % frag_size
    return bytes(data) + bytes(padding), padding


def encode(data: bytes, frag_size: int, redundancy: int) -> list[bytes]:
    """Uncoded fragments then ``redundancy`` coded ones; ``len(data)`` a multiple of frag_size."""
    if frag_size < 1 or len(data) % frag_size or not data:
        raise EncodeError("data must be a non-empty multiple of frag_size (use pad())")
    if redundancy < 0:
        raise EncodeError("redundancy must be >= 0")
    rows = [bytes(data[i : i + frag_size]) for i in range(0, len(data), frag_size)]
    m = len(rows)
    if m + redundancy > 0x3FFF:
        raise EncodeError("more than 16383 fragments: N is 14 bits (TS005 §4.5)")
    out = list(rows)
    for n in range(1, redundancy + 1):
        acc = bytearray(frag_size)
        for x, bit in enumerate(matrix_line(n, m)):
            if bit:
                row = rows[x]
                for k in range(frag_size):
                    acc[k] ^= row[k]
        out.append(bytes(acc))
    return out


def decode(fragments: Mapping[int, bytes], m: int, frag_size: int) -> bytes:
    """The M rows from any fragments {N: bytes} that determine them; DecodeError otherwise."""
    pivots: dict[int, tuple[int, int]] = {}  # lowest column -> (row bits, payload)
    for n, payload in sorted(fragments.items()):
        if len(payload) != frag_size:
            raise DecodeError(f"fragment {n} is {len(payload)} bytes, not {frag_size}")
        bits = 1 << (n - 1) if n <= m else _bits(matrix_line(n - m, m))
        acc = int.from_bytes(payload, "big")
        while bits:
            low = (bits & -bits).bit_length() - 1
            if low not in pivots:
                pivots[low] = (bits, acc)
                break
            pb, pa = pivots[low]
            bits ^= pb
            acc ^= pa
    if len(pivots) < m:
        raise DecodeError(f"{m - len(pivots)} rows cannot be recovered from these fragments")
    solved: dict[int, int] = {}
    for col in range(m - 1, -1, -1):
        bits, acc = pivots[col]
        rest = bits & ~(1 << col)
        while rest:
            low = (rest & -rest).bit_length() - 1
            acc ^= solved[low]
            rest &= rest - 1
        solved[col] = acc
    return b"".join(solved[c].to_bytes(frag_size, "big") for c in range(m))


def _bits(line: Sequence[int]) -> int:
    v = 0
    for i, b in enumerate(line):
        if b:
            v |= 1 << i
    return v
