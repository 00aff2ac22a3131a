"""Passes over the whole fleet that let the event loop run between their chunks.

At 100,000 devices one pass over the registry holds the loop from milliseconds (counting a
gauge) to seconds (encoding every device for the dashboard), and every uplink and probe waits
behind it (issue 17; gateway/README.md §9 has the figures). The maintenance task, ``/metrics``,
the device list, the collection list and ``/stats`` take the fleet through :func:`in_turns` instead,
and the long answers (the device list, the collection list in its three formats) are encoded
by :func:`joined_in_turns` as they are sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

__all__ = ["in_turns", "joined_in_turns"]

_T = TypeVar("_T")


async def in_turns(items: Sequence[_T], size: int) -> AsyncIterator[Sequence[_T]]:
    """``items`` in slices of ``size``, with a turn of the event loop between two slices."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + size]


async def joined_in_turns(
    items: Sequence[_T],
    size: int,
    encode: Callable[[Sequence[_T]], bytes],
    *,
    head: bytes = b"",
    tail: bytes = b"",
    separator: bytes = b",",
) -> AsyncIterator[bytes]:
    """A response body made as it is sent: ``head``, then ``encode`` of each slice of ``size``
    items with ``separator`` between two slices (``encode`` joins the items within one), then
    ``tail``; a turn of the event loop between two slices."""
    yield head
    between = b""
    async for part in in_turns(items, size):
        yield between + encode(part)
        between = separator
    yield tail
