"""A bin's fill history, the (time, fill) points its fill-rate forecast fits (rules/bins.py),
kept compact.

Why: every bin keeps ``[bins] forecast_samples`` points (12 by default). As a list of two-item
lists of Python ints that is about 1.4 kB per bin (a list object per point, an int object per
timestamp); as one :class:`Packed` bytes object, the times as 32-bit whole seconds and then the
fills as 32-bit floats, it is 129 bytes for 12 points (issue 17: at 100,000 bins, measured with
tools/bench/gateway_throughput_memory.py). Times are whole seconds (the rules round them) and
catalogue fills whole percent, so both are exact; a history that would not come back exactly
(a fill of 1/3, a time past 2106) is kept as a flat ``array('d')`` ``[t0, f0, t1, f1, ...]``,
which holds epoch seconds and percentages exactly.

The usual history, whole fills from 0 to 255 (the catalogue's ``fill_percent`` is 0-100), keeps
each fill in one byte instead (:class:`PackedBytes`): 93 instead of 129 bytes for 12 points, an
object of 112 instead of 160 bytes in CPython's small-object allocator (16-byte size classes,
with the collector's header a ``bytes`` subclass carries), 4.8 MB at 100,000 bins (issue 17).

On the wire and in the store the history stays what it was, ``[[t, fill], ...]`` with whole
seconds (:func:`plain`, used by the twin's JSON encoder); a stored list is read back as it is
(:func:`points`).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Packed", "PackedBytes", "pack", "plain", "points"]

_EXACT = array("I").itemsize == 4 and array("f").itemsize == 4  # else: arrays of doubles
_F32_INT = 1 << 24  # every int up to this is exact in a 32-bit float (IEEE 754 binary32)
_BYTE_MAX = 255  # the largest fill PackedBytes holds


class Packed(bytes):
    """A history as 32-bit whole-second times then 32-bit float fills (module docstring)."""

    __slots__ = ()


class PackedBytes(Packed):
    """A history as 32-bit whole-second times then one unsigned byte per whole fill (module
    docstring); a :class:`Packed` to whoever only asks whether a history is packed."""

    __slots__ = ()


def pack(pairs: Iterable[Sequence[float]]) -> Packed | array[float]:
    """``[[t, fill], ...]`` in its compact form."""
    pairs = list(pairs)
    if _EXACT:
        # the usual history, whole seconds and whole percent, in one struct call (a 12-point
        # pack went from 14 to about 4 µs; it runs once per bin report, issue 17)
        whole_t = [p[0] for p in pairs]
        whole_f = [p[1] for p in pairs]
        if pairs and all(type(t) is int for t in whole_t) and all(type(f) is int for f in whole_f):
            low, high = min(whole_f), max(whole_f)
            count = len(pairs)
            try:
                if low >= 0 and high <= _BYTE_MAX:  # the usual one: a byte a fill
                    return PackedBytes(struct.pack(f"={count}I{count}B", *whole_t, *whole_f))
                if low >= -_F32_INT and high <= _F32_INT:
                    return Packed(struct.pack(f"={count}I{count}f", *whole_t, *whole_f))
            except struct.error:
                pass  # a time before 1970 or past 2106: the checked path below
        try:
            times = array("I", [int(t) for t, _ in pairs])  # OverflowError past 32 bits
            fills = array("f", [f for _, f in pairs])
        except (OverflowError, TypeError, ValueError):
            pass
        else:  # only what comes back exactly (module docstring)
            if all(t == p[0] and f == p[1] for t, f, p in zip(times, fills, pairs, strict=True)):
                return Packed(times.tobytes() + fills.tobytes())
    flat = array("d")
    for t, fill in pairs:
        flat.append(t)
        flat.append(fill)
    return flat


def points(value: Any) -> list[list[float]]:
    """The ``[[t, fill], ...]`` points of a packed history or of a stored list (anything else:
    none)."""
    if type(value) is PackedBytes:
        split = len(value) // 5 * 4  # 4 bytes of time and 1 of fill a point
        times, percents = array("I"), array("B")
        times.frombytes(value[:split])
        percents.frombytes(value[split:])
        return [[t, f] for t, f in zip(times, percents, strict=True)]
    if type(value) is Packed:
        half = len(value) // 2
        times, fills = array("I"), array("f")
        times.frombytes(value[:half])
        fills.frombytes(value[half:])
        return [[t, f] for t, f in zip(times, fills, strict=True)]
    if isinstance(value, array):
        return [[value[i], value[i + 1]] for i in range(0, len(value) - 1, 2)]
    if isinstance(value, list):
        return [list(p) for p in value if isinstance(p, list | tuple) and len(p) == 2]
    return []


def plain(value: Packed | array[float]) -> list[list[int | float]]:
    """A packed history for JSON, as it was written before packing: whole-second times, and
    fills as integers where they are whole (the catalogue's ``fill_percent`` is one)."""
    return [[int(t), int(f) if float(f).is_integer() else f] for t, f in points(value)]
