"""What the emulator holds per device and per frame in flight (ChirpStack's storage, in memory).

``QueueItem`` is a device-queue item (chirpstack ``storage/device_queue.rs``); ``Session`` the
device session (``internal.DeviceSession``: DevAddr, session keys, frame counters, ADR state);
``RxCopy``/``Collect`` one gateway's reception and one frame's de-duplication set
(``uplink/mod.rs``); ``Window``/``Inflight`` a downlink's transmit opportunities and the frame
waiting for its gateway TX ack (``storage/downlink_frame.rs``).
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tools.netsim import region
from tools.netsim.devices import Device

__all__ = [
    "Collect",
    "DeviceState",
    "Inflight",
    "QueueItem",
    "RxCopy",
    "Session",
    "Window",
]


@dataclass
class QueueItem:
    """A device-queue item (storage/device_queue.rs)."""

    id: str
    dev_eui: str
    f_port: int
    confirmed: bool
    data: bytes
    expires_at: datetime | None = None
    is_pending: bool = False
    f_cnt_down: int | None = None
    timeout_at: float | None = None  # loop time; class C confirmed items


@dataclass
class RxCopy:
    """One gateway's reception of a frame."""

    gateway_id: str
    rxpk: dict[str, Any]
    ns_time: datetime
    rssi: int
    snr: float
    tmst: int

    @classmethod
    def from_rxpk(
        cls, gateway_id: str, rxpk: dict[str, Any], ns_time: datetime
    ) -> tuple[bytes, int, str, RxCopy]:
        """(PHYPayload, frequency Hz, datr, the reception) from a GWMP ``rxpk`` (packet_forwarder
        PROTOCOL.TXT §4); raises KeyError, TypeError, ValueError or binascii.Error."""
        phy = base64.b64decode(str(rxpk["data"]), validate=True)
        frequency_hz = round(float(rxpk["freq"]) * 1_000_000)
        datr = str(rxpk["datr"])
        region.dr_of(datr)
        tmst = int(rxpk.get("tmst", 0)) & 0xFFFFFFFF
        rssi = int(rxpk.get("rssi", rxpk.get("rssic", 0)))
        snr = float(rxpk.get("lsnr", 0.0))
        return phy, frequency_hz, datr, cls(gateway_id, rxpk, ns_time, rssi, snr, tmst)


@dataclass
class Collect:
    """The copies of one frame gathered in the de-duplication window."""

    key: tuple[int, str, bytes]
    phy: bytes
    frequency_hz: int
    datr: str
    copies: list[RxCopy]

    def best(self) -> RxCopy:
        """The copy with the best SNR: the gateway a class A answer goes through."""
        return max(self.copies, key=lambda c: c.snr)


@dataclass
class Session:
    """A device session after OTAA (keys never in the repr)."""

    dev_addr: int
    nwk_s_key: bytes = field(repr=False)
    app_s_key: bytes = field(repr=False)
    last_f_cnt: int | None = None
    n_f_cnt_down: int = 0
    dr: int = 0
    tx_power_index: int = 0
    nb_trans: int = 1
    adr: bool = False
    history: deque[tuple[int, float, int]] = field(default_factory=lambda: deque(maxlen=20))
    join_event_pending: bool = True
    uplinks: int = 0
    pending_link_adr: tuple[int, int, int] | None = None
    adr_quiet_until: int = 0  # no LinkADRReq before this uplink count (after a refusal)
    mac_answers: list[bytes] = field(default_factory=list)


@dataclass
class DeviceState:
    """Everything the emulator keeps for one device."""

    device: Device
    last_dev_nonce: int | None = None
    join_nonce: int = 0
    session: Session | None = None
    queue: list[QueueItem] = field(default_factory=list)
    last_rx: list[RxCopy] = field(default_factory=list)
    last_frequency_hz: int = 0
    scheduler_run_after: float = 0.0

    @property
    def enabled_class(self) -> str:
        return self.device.device_class if self.session is not None else "A"

    def summary(self) -> dict[str, Any] | None:
        """The session without keys (for tests and the demo view); None before a join."""
        s = self.session
        if s is None:
            return None
        return {
            "dev_addr": f"{s.dev_addr:08x}",
            "f_cnt_up": s.last_f_cnt,
            "n_f_cnt_down": s.n_f_cnt_down,
            "dr": s.dr,
            "tx_power_index": s.tx_power_index,
            "nb_trans": s.nb_trans,
            "class": self.enabled_class,
        }


@dataclass
class Window:
    """One transmit opportunity: a GWMP ``txpk`` without its data, and what it means."""

    txpk: dict[str, Any]
    frequency_hz: int
    dr: int
    power_dbm: int
    delay_s: int | None  # None = immediately (class C)


@dataclass
class Inflight:
    """A downlink handed to a gateway, waiting for its TX ack.

    ``dev_eui`` is the device's, or None for a multicast frame (then ``multicast_item`` is set).
    """

    downlink_id: int
    dev_eui: str | None
    windows: list[Window]
    index: int
    gateway_id: str
    context: bytes
    f_cnt_down: int | None
    item: QueueItem | None
    join_accept: bool = False
    link_adr: tuple[int, int, int] | None = None
    sent_at: float = 0.0  # loop time of the last transmission attempt
    multicast_item: Any = None  # a tools.netsim.multicast.McQueueItem
