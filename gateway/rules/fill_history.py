"""A bin's fill history, the (time, fill) points its fill-rate forecast fits (rules/bins.py),
kept compact: one flat ``array('d')`` ``[t0, f0, t1, f1, ...]``.

Why: every bin keeps ``[bins] forecast_samples`` points (12 by default). As a list of two-item
lists of Python ints that is about 1.4 kB per bin (a list object per point, an int object per
timestamp); as one array of doubles it is 256 bytes, for 100,000 bins 115 MB less (issue 17,
measured with tracemalloc after every bin reported 12 times). Doubles hold epoch seconds and
percentages exactly.

On the wire and in the store the history stays what it was, ``[[t, fill], ...]`` with whole
seconds (:func:`plain`, used by the twin's JSON encoder); a stored list is read back as it is
(:func:`points`).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["pack", "plain", "points"]


def pack(pairs: Iterable[Sequence[float]]) -> array[float]:
    """``[[t, fill], ...]`` as one flat array."""
    flat = array("d")
    for t, fill in pairs:
        flat.append(t)
        flat.append(fill)
    return flat


def points(value: Any) -> list[list[float]]:
    """The ``[[t, fill], ...]`` points of a packed history or of a stored list (anything else:
    none)."""
    if isinstance(value, array):
        return [[value[i], value[i + 1]] for i in range(0, len(value) - 1, 2)]
    if isinstance(value, list):
        return [list(p) for p in value if isinstance(p, list | tuple) and len(p) == 2]
    return []


def plain(value: array[float]) -> list[list[int | float]]:
    """A packed history for JSON, as it was written before packing: whole-second times, and
    fills as integers where they are whole (the catalogue's ``fill_percent`` is one)."""
    return [[int(t), int(f) if f.is_integer() else f] for t, f in points(value)]
