"""The emulator's settings and the errors of its own API.

Defaults are ChirpStack v4's (``chirpstack.toml`` ``[network]`` / ``[network.scheduler]`` and the
device-profile defaults; reference/chirpstack.md §3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tools.netsim import region

__all__ = ["DEFAULT_APPLICATION_ID", "CommandError", "NetsimConfig", "NetsimError"]

DEFAULT_APPLICATION_ID = "8c1c5a3e-2f4b-4a57-9c1e-6b0d3f2a7e10"


class NetsimError(Exception):
    """An error of the emulator's own API (unknown device, bad argument)."""


class CommandError(NetsimError):
    """A downlink command that ChirpStack would refuse (it only logs a warning)."""


def wall_clock() -> datetime:
    """ChirpStack's clock: real UTC time (the default ``now``; the fleet simulator's
    ``expiry_now``, tools/sim/fleet.py)."""
    return datetime.now(UTC)


@dataclass
class NetsimConfig:
    """Settings; defaults are ChirpStack v4's (``chirpstack.toml`` and device-profile defaults)."""

    application_id: str = DEFAULT_APPLICATION_ID
    application_name: str = "citypack"
    tenant_id: str = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
    tenant_name: str = "citypack"
    net_id: int = 0
    dedup_window_s: float = 0.2  # network.deduplication_delay
    dedup_ttl_s: float | None = None  # late copies dropped until then; None: max(2×window, 0.2)
    downlink_data_delay_s: float = 0.1  # network.get_downlink_data_delay
    scheduler_interval_s: float = 1.0  # network.scheduler.interval
    class_c_lock_s: float = 5.0  # network.scheduler.class_c_lock_duration
    class_a_lock_s: float = 5.0  # network.scheduler.class_a_lock_duration
    class_c_timeout_s: float = 5.0  # device-profile class_c_timeout
    multicast_class_c_margin_s: float = 5.0  # network.scheduler.multicast_class_c_margin
    rx1_delay_s: int = 1
    join_accept_delay_s: int = 5
    rx1_dr_offset: int = 0
    rx2_dr: int = region.RX2_DR
    rx2_frequency_hz: int = region.RX2_FREQUENCY_HZ
    adr_enabled: bool = True
    installation_margin_db: float = 10.0
    adr_history: int = 20
    dev_status_every: int = 50  # DevStatusReq on the first uplink after join, then every N
    flush_queue_on_activate: bool = True
    seed: int | None = None
    now: Callable[[], datetime] = field(default=wall_clock)
    # what a queue item's ``expiresAt`` is compared with: ChirpStack's wall clock, the clock of
    # whoever set it; None is ``now``. The fleet simulator runs ``now`` faster than real time
    # while the gateway it talks to (a child process) stamps expiries in real time
    # (tools/sim/fleet.py)
    expiry_now: Callable[[], datetime] | None = None

    def expiry_clock(self) -> datetime:
        return (self.expiry_now or self.now)()
