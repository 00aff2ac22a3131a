"""Simulated LoRa gateways and the radio link between nodes and gateways.

Link budget (what each gateway hears of one uplink):

- Path loss, log-distance model with log-normal shadowing (Rappaport, *Wireless Communications*,
  §4.9): ``PL(d) = PL(d0) + 10·n·log10(d/d0) + X_σ``. With d0 = 1 m, PL(d0) = 31.2 dB (free space at
  868 MHz), n = 2.9 and σ = 6 dB, the loss at 1 km is about 118 dB, in line with urban LoRa
  measurements at 868 MHz (Petäjäjärvi et al., "On the coverage of LPWANs", ITST 2015).
  Shadowing is drawn once per (node, gateway) pair, because buildings do not move, plus a small
  fast-fading term per frame.
- Noise floor: ``-174 dBm/Hz + 10·log10(BW) + NF`` with a 6 dB gateway noise figure (SX1301
  class concentrators), i.e. -117 dBm at 125 kHz; SNR = RSSI - noise floor, as LoRa gateways
  report it (clamped to what an SX1301 reports, about +13 dB).
- Demodulation floor per spreading factor (Semtech SX1276 datasheet, table 13: -7.5 dB at SF7 down
  to -20 dB at SF12); within 2 dB above it the frame is lost with a probability falling
  linearly, and any frame is lost with ``loss_probability`` (collisions, interference).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

from tools.sim.world import distance_m

_DEMOD_FLOOR_DB = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
_DATR = re.compile(r"^SF(?P<sf>\d+)BW(?P<bw>\d+)$")


class RadioError(Exception):
    """A data-rate string or parameter the radio model does not understand."""


def parse_datr(datr: str) -> tuple[int, int]:
    """``"SF7BW125"`` (GWMP's ``datr``) → (spreading factor, bandwidth in kHz)."""
    match = _DATR.match(datr)
    if match is None:
        raise RadioError(f"not a LoRa data rate: {datr!r} (expected like SF7BW125)")
    sf, bw = int(match["sf"]), int(match["bw"])
    if sf not in _DEMOD_FLOOR_DB or bw not in (125, 250, 500):
        raise RadioError(f"unsupported LoRa data rate {datr!r}")
    return sf, bw


@dataclass(frozen=True, slots=True)
class SimGateway:
    """A LoRa gateway on a roof: its EUI (16 hex digits) and where it stands."""

    gateway_id: str
    latitude: float
    longitude: float
    altitude_m: float = 30.0


@dataclass(frozen=True, slots=True)
class Reception:
    """One gateway's copy of one frame."""

    gateway_id: str
    rssi_dbm: int
    snr_db: float


@dataclass(slots=True)
class PathLossModel:
    """Log-distance path loss with shadowing (see the module docstring for the sources)."""

    exponent: float = 2.9
    pl_d0_db: float = 31.2
    d0_m: float = 1.0
    shadowing_sigma_db: float = 6.0
    fading_sigma_db: float = 1.5
    noise_figure_db: float = 6.0
    loss_probability: float = 0.01
    seed: int = 7
    _shadow: dict[tuple[str, str], float] = field(default_factory=dict)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def path_loss_db(self, distance: float) -> float:
        d = max(distance, self.d0_m)
        return self.pl_d0_db + 10.0 * self.exponent * math.log10(d / self.d0_m)

    def noise_floor_dbm(self, bandwidth_khz: int) -> float:
        return -174.0 + 10.0 * math.log10(bandwidth_khz * 1000.0) + self.noise_figure_db

    def shadowing_db(self, node: str, gateway: str) -> float:
        key = (node, gateway)
        if key not in self._shadow:
            # Seeded from the pair so it does not depend on the order frames were sent in.
            pair_rng = random.Random(f"{self.seed}:{node}:{gateway}")
            self._shadow[key] = pair_rng.gauss(0.0, self.shadowing_sigma_db)
        return self._shadow[key]

    def receive(
        self,
        *,
        node: str,
        node_position: tuple[float, float],
        gateway: SimGateway,
        tx_power_dbm: float,
        datr: str,
    ) -> Reception | None:
        """What ``gateway`` hears of a frame from ``node``, or None when it is lost."""
        sf, bw = parse_datr(datr)
        distance = distance_m(node_position, (gateway.latitude, gateway.longitude))
        loss = (
            self.path_loss_db(distance)
            + self.shadowing_db(node, gateway.gateway_id)
            + self._rng.gauss(0.0, self.fading_sigma_db)
        )
        rssi = tx_power_dbm - loss
        snr = rssi - self.noise_floor_dbm(bw)
        margin = snr - _DEMOD_FLOOR_DB[sf]
        if margin < 0:
            return None
        if margin < 2.0 and self._rng.random() > margin / 2.0:
            return None
        if self._rng.random() < self.loss_probability:
            return None
        # A gateway reports RSSI as an integer and SNR to 0.25 dB, capped near +13.5 dB.
        return Reception(gateway.gateway_id, round(rssi), round(min(snr, 13.5) * 4) / 4)


@dataclass(slots=True)
class RadioStats:
    """Counts for the terminal view and the benchmark."""

    uplinks_sent: int = 0
    uplinks_heard: int = 0  # by at least one gateway
    uplinks_lost: int = 0
    receptions: int = 0  # gateway copies (one uplink heard by two gateways counts two)
    downlinks_sent: int = 0
    downlinks_delivered: int = 0
    downlinks_missed: int = 0  # nobody was listening on that frequency at that time


class Coverage:
    """The gateways of a city and the model that links nodes to them."""

    def __init__(self, gateways: list[SimGateway], model: PathLossModel | None = None) -> None:
        if not gateways:
            raise RadioError("a simulated network needs at least one gateway")
        self.gateways = {gw.gateway_id: gw for gw in gateways}
        self.model = model or PathLossModel()
        self.stats = RadioStats()

    def uplink(
        self, node: str, position: tuple[float, float], tx_power_dbm: float, datr: str
    ) -> list[Reception]:
        """Every gateway's reception of one uplink (empty when no gateway heard it)."""
        heard = [
            rx
            for gw in self.gateways.values()
            if (
                rx := self.model.receive(
                    node=node,
                    node_position=position,
                    gateway=gw,
                    tx_power_dbm=tx_power_dbm,
                    datr=datr,
                )
            )
            is not None
        ]
        self.stats.uplinks_sent += 1
        self.stats.receptions += len(heard)
        if heard:
            self.stats.uplinks_heard += 1
        else:
            self.stats.uplinks_lost += 1
        return heard

    def downlink_reaches(
        self, node: str, position: tuple[float, float], gateway_id: str, power_dbm: float, datr: str
    ) -> Reception | None:
        """Whether a downlink from ``gateway_id`` reaches ``node`` (same model, other way)."""
        gateway = self.gateways.get(gateway_id)
        if gateway is None:
            return None
        return self.model.receive(
            node=node, node_position=position, gateway=gateway, tx_power_dbm=power_dbm, datr=datr
        )
