"""A stand-in for ``apps.maclink.MacLink`` while the firmware does not ship one.

``firmware/apps/node.py`` documents the link an app talks to (``join``, ``send``,
``set_receiver``, ``device_time``) and names ``apps.maclink.MacLink`` as the one over the real
MAC. The fleet uses that module whenever it exists; until then this is the thinnest adapter over
the MAC's public surface (``firmware/lib/lorawan/mac.py``), with nothing of its own: it only maps
``SendResult`` to ``(ok, downlinks)``. DeviceTimeAns carries GPS seconds (L2 1.0.4 §5.9); GPS
time is Unix time + 315 964 800 s - the leap seconds since 1980 (18 since 2017).
"""

from __future__ import annotations

from typing import Any

_GPS_EPOCH_UNIX = 315_964_800
_LEAP_SECONDS = 18


class MacLinkAdapter:
    def __init__(self, mac: Any) -> None:
        self.mac = mac

    async def join(self) -> bool:
        result = await self.mac.join()
        if result.ok:
            self.mac.request_device_time()  # rides on the first uplink (device_info)
        return bool(result.ok)

    async def send(self, fport: int, data: bytes, confirmed: bool) -> tuple[bool, list[Any]]:
        result = await self.mac.send(fport, data, confirmed)
        downlinks = []
        if result.fport is not None and result.payload is not None:
            downlinks.append((result.fport, bytes(result.payload)))
        return bool(result.ok), downlinks

    def set_receiver(self, callback: Any) -> None:
        self.mac.on_downlink = callback

    def set_class(self, device_class: str) -> None:
        self.mac.set_class(device_class)

    async def device_time(self) -> int | None:
        """Unix seconds now, from the last DeviceTimeAns; asks for one on the next uplink."""
        known = self.mac.device_time
        if known is None:
            self.mac.request_device_time()
            return None
        gps_s, _fraction, at_ticks = known
        clock = self.mac.clock
        elapsed_ms = clock.ticks_diff(clock.ticks_ms(), at_ticks)
        return int(gps_s) + _GPS_EPOCH_UNIX - _LEAP_SECONDS + int(elapsed_ms) // 1000
