"""The air capture: every frame on the simulated air as one JSON line (ARCHITECTURE.md).

Each line is ``{"time", "direction": "up"|"down", "phy": hex, "dev_eui", "frequency", "datr",
"gateway"}``: ``time`` RFC 3339 (``+00:00``, as in the events), ``phy`` the PHYPayload in hex,
``dev_eui`` 16 hex digits, null when the emulator cannot tell (an uplink from an unknown
DevAddr), or ``""`` for a multicast frame (no one device: its DevAddr is the group's McAddr),
``frequency`` in Hz, ``datr`` as GWMP writes it (``"SF7BW125"``), ``gateway`` the gateway EUI.
An uplink heard by two gateways gives two lines (one per reception); a downlink one line per
transmission attempt. ``citypack frame decode`` reads the ``phy`` field.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tools.netsim.events import rfc3339

__all__ = ["Capture"]


class Capture:
    """Append capture lines to a file (line-buffered, so a crash loses at most one line)."""

    def __init__(
        self, path: Path | str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.path = Path(path)
        self._now = now
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self.lines = 0

    def write(
        self,
        direction: str,
        phy: bytes,
        dev_eui: str | None,
        frequency_hz: int,
        datr: str,
        gateway_id: str,
    ) -> None:
        record: dict[str, Any] = {
            "time": rfc3339(self._now()),
            "direction": direction,
            "phy": phy.hex(),
            "dev_eui": dev_eui,
            "frequency": frequency_hz,
            "datr": datr,
            "gateway": gateway_id,
        }
        with self._lock:
            if self._file is None:
                return
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
