"""Uplink de-duplication: copies of one frame from several gateways become one uplink.

ChirpStack ``uplink/mod.rs`` (``deduplicate_uplink``): copies with the same frequency, data rate
and PHYPayload are collected for ``network.deduplication_delay`` (200 ms) into one set with
every gateway's reception; a copy arriving after the set was handled, within a TTL
(max(2 × window, 200 ms) unless configured), is dropped as a duplicate. One gateway counts once
per set.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from tools.netsim.state import Collect, RxCopy

__all__ = ["Deduplicator", "FrameKey"]

FrameKey = tuple[int, str, bytes]  # (frequency Hz, datr, PHYPayload)


class Deduplicator:
    """Collects copies per :data:`FrameKey`; times are event-loop seconds given by the caller."""

    def __init__(self, window_s: float, ttl_s: float | None) -> None:
        self.window_s = window_s
        self.ttl_s = max(2 * window_s, 0.2) if ttl_s is None else ttl_s
        self._collecting: dict[FrameKey, Collect] = {}
        self._recent: dict[FrameKey, float] = {}  # key -> end of its TTL
        self._recent_order: deque[tuple[float, FrameKey]] = deque()

    def offer(
        self, key: FrameKey, copy: RxCopy, now: float
    ) -> Literal["new", "added", "duplicate"]:
        """Add one copy. ``new``: a set was opened; close it with :meth:`close` after the window."""
        collect = self._collecting.get(key)
        if collect is not None:
            if all(c.gateway_id != copy.gateway_id for c in collect.copies):
                collect.copies.append(copy)
                return "added"
            return "duplicate"  # the same gateway twice: one rxInfo per gateway
        seen = self._recent.get(key)
        if seen is not None and now < seen:
            return "duplicate"
        frequency_hz, datr, phy = key
        self._collecting[key] = Collect(key, phy, frequency_hz, datr, [copy])
        return "new"

    def close(self, key: FrameKey, now: float) -> Collect:
        """End a set's window: late copies within the TTL are duplicates from now on."""
        collect = self._collecting.pop(key)
        while self._recent_order and self._recent_order[0][0] <= now:
            expired_at, old = self._recent_order.popleft()
            if self._recent.get(old) == expired_at:
                del self._recent[old]
        self._recent[key] = now + self.ttl_s
        self._recent_order.append((now + self.ttl_s, key))
        return collect
