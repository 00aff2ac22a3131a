"""Regional parameters (RP002-1.0.4): EU868 and US915 channel plans as data."""

from __future__ import annotations

from protocol.lorawan.region.base import Channel, DataRate, Modulation, Region, SubBand
from protocol.lorawan.region.eu868 import EU868
from protocol.lorawan.region.us915 import US915

__all__ = ["EU868", "REGIONS", "US915", "Channel", "DataRate", "Modulation", "Region", "SubBand"]

REGIONS: dict[str, Region] = {"EU868": EU868, "US915": US915}
