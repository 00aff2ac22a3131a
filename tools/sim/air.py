"""The simulated air between the fleet's radios and the network: the in-process channel.

``firmware/lib/hal/sim_radio.py`` documents the channel a node's ``SimRadio`` talks to::

    channel.attach(node_id, radio)
    channel.uplink(node_id, phy, freq_hz, datr, t_ms)      # at TX done, node clock ticks
    radio.deliver(phy, freq_hz, datr, t_ms, rssi, snr)      # a downlink starting at t_ms

:class:`Air` is that channel. For every uplink it asks the radio model (:mod:`tools.sim.radio`)
which gateways heard the frame and at what RSSI/SNR, and hands the frame with those receptions to
a :class:`Backhaul` (the emulator's in-process path, or GWMP over UDP). Downlinks come back from
the backhaul addressed to a gateway; the air delivers them to the node they are meant for when
the same model says the gateway's signal reaches it (node ids are DevEUIs; the network knows
which device a downlink is for, and over the air the other nodes would drop it on its DevAddr).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tools.sim.radio import Coverage, Reception

_NODE_TX_POWER_DBM = 14.0  # EU868 max EIRP 16 dBm minus 2 dB antenna loss (RP002 §2.1)
_GATEWAY_TX_POWER_DBM = 27.0  # EU868 RX2 869.525 MHz allows 27 dBm ERP


class NodeRadio(Protocol):
    def deliver(
        self, phy: bytes, freq_hz: int, datr: str, t_ms: int, rssi: int = ..., snr: float = ...
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Uplink:
    """One frame on the air as the gateways heard it."""

    node_id: str
    phy: bytes
    freq_hz: int
    datr: str
    t_ms: int
    receptions: tuple[Reception, ...]


class Backhaul(Protocol):
    """Where the gateways send what they heard (the network server side)."""

    def uplink(self, frame: Uplink) -> None: ...


class Air:
    """The in-process channel of ``hal.sim_radio`` over the radio model."""

    def __init__(
        self,
        coverage: Coverage,
        positions: Callable[[str], tuple[float, float]],
        *,
        on_frame: Callable[[str, Uplink | dict[str, Any]], None] | None = None,
    ) -> None:
        self.coverage = coverage
        self._positions = positions
        self._radios: dict[str, NodeRadio] = {}
        self.backhaul: Backhaul | None = None
        self._on_frame = on_frame
        # DevAddr (8 hex, MSB first) -> node id; the fleet answers from its MACs' sessions
        self.resolve_dev_addr: Callable[[str], str | None] = lambda _addr: None

    def attach(self, node_id: str, radio: NodeRadio) -> None:
        self._radios[node_id] = radio

    def uplink(self, node_id: str, phy: bytes, freq_hz: int, datr: str, t_ms: int) -> None:
        heard = self.coverage.uplink(node_id, self._positions(node_id), _NODE_TX_POWER_DBM, datr)
        frame = Uplink(node_id, bytes(phy), int(freq_hz), datr, int(t_ms), tuple(heard))
        if self._on_frame is not None:
            self._on_frame("up", frame)
        if heard and self.backhaul is not None:
            self.backhaul.uplink(frame)

    def downlink(
        self,
        node_id: str,
        gateway_id: str,
        phy: bytes,
        freq_hz: int,
        datr: str,
        t_ms: int,
        power_dbm: float = _GATEWAY_TX_POWER_DBM,
    ) -> bool:
        """Put a downlink on the air; True when it reached the node's radio."""
        stats = self.coverage.stats
        stats.downlinks_sent += 1
        radio = self._radios.get(node_id)
        if radio is None:
            stats.downlinks_missed += 1
            return False
        reach = self.coverage.downlink_reaches(
            node_id, self._positions(node_id), gateway_id, power_dbm, datr
        )
        if reach is None:
            stats.downlinks_missed += 1
            return False
        stats.downlinks_delivered += 1
        radio.deliver(bytes(phy), int(freq_hz), datr, int(t_ms), reach.rssi_dbm, reach.snr_db)
        return True
