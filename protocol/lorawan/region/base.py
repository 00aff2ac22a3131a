"""What a regional channel plan defines, as data (LoRaWAN Regional Parameters RP002-1.0.4).

RP002-1.0.4 gives, per region: the data-rate table (§2.x.3), TX power table (§2.x.3), maximum
payload size M (MACPayload) and N (FRMPayload with no FOpts) per DR (§2.x.6), default channels
(§2.x.2), RX1 DR offset table (§2.x.7), RX2 defaults (§2.x.7) and default settings
(§2.x.8: RECEIVE_DELAY1/2, JOIN_ACCEPT_DELAY1/2, ADR_ACK_LIMIT/DELAY, RETRANSMIT_TIMEOUT).
:class:`Region` holds them; ``region/eu868.py`` and ``region/us915.py`` fill it in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.errors import EncodeError

__all__ = ["Channel", "DataRate", "Modulation", "Region", "SubBand"]


class Modulation(enum.StrEnum):
    LORA = "LORA"
    FSK = "FSK"
    LR_FHSS = "LR-FHSS"


@dataclass(frozen=True, slots=True)
class DataRate:
    """One row of a region's DR table with its payload limits (dwell time off).

    ``max_mac_payload`` is M (MACPayload = FHDR + FPort + FRMPayload), ``max_frm_payload`` is N
    (FRMPayload when there are no FOpts, N = M - 8).
    """

    index: int
    modulation: Modulation
    spreading_factor: int | None
    bandwidth_hz: int
    bitrate_bps: int
    max_mac_payload: int
    max_frm_payload: int
    uplink: bool = True
    downlink: bool = True

    @property
    def name(self) -> str:
        """``SF7BW125`` for LoRa (as GWMP ``datr`` writes it), else the modulation."""
        if self.modulation is Modulation.LORA:
            return f"SF{self.spreading_factor}BW{self.bandwidth_hz // 1000}"
        return f"{self.modulation.value}{self.bitrate_bps}"


@dataclass(frozen=True, slots=True)
class Channel:
    """An uplink channel and the data rates allowed on it."""

    frequency_hz: int
    min_dr: int
    max_dr: int


@dataclass(frozen=True, slots=True)
class SubBand:
    """A regulatory sub-band and its duty-cycle limit (a fraction: 0.01 = 1 %); ends inclusive."""

    name: str
    low_hz: int
    high_hz: int
    duty_cycle: float

    def contains(self, frequency_hz: int) -> bool:
        return self.low_hz <= frequency_hz <= self.high_hz

    def off_time_s(self, time_on_air_s: float) -> float:
        """Time the sub-band stays closed after a transmission: ToA × (1/dc − 1)."""
        return time_on_air_s * (1.0 / self.duty_cycle - 1.0)


@dataclass(frozen=True, slots=True)
class Region:
    """A regional channel plan (RP002-1.0.4 §2.x)."""

    name: str
    frequency_min_hz: int
    frequency_max_hz: int
    data_rates: tuple[DataRate, ...]
    default_channels: tuple[Channel, ...]
    max_channels: int
    rx1_dr_table: tuple[tuple[int, ...], ...]  # [uplink DR][RX1DROffset] -> downlink DR
    rx2_frequency_hz: int
    rx2_data_rate: int
    max_eirp_dbm: float
    tx_power_offsets_db: tuple[float, ...]  # TXPower index -> dB below max_eirp_dbm
    cflist_type: int
    join_data_rates: tuple[int, ...]
    sub_bands: tuple[SubBand, ...] = ()
    receive_delay1_s: int = 1
    receive_delay2_s: int = 2
    join_accept_delay1_s: int = 5
    join_accept_delay2_s: int = 6
    adr_ack_limit: int = 64
    adr_ack_delay: int = 32
    retransmit_timeout_s: tuple[int, int] = (1, 3)  # 2 s ± 1 s (RP002 §2.x.8)

    def data_rate(self, dr: int) -> DataRate:
        for rate in self.data_rates:
            if rate.index == dr:
                return rate
        raise EncodeError(f"{self.name} has no data rate DR{dr}")

    def max_frm_payload(self, dr: int, fopts_len: int = 0) -> int:
        """Largest application payload at ``dr`` with ``fopts_len`` bytes of FOpts."""
        return self.data_rate(dr).max_frm_payload - fopts_len

    def rx1_data_rate(self, uplink_dr: int, rx1_dr_offset: int) -> int:
        """The RX1 data rate for an uplink DR and RX1DROffset (RP002 §2.x.7)."""
        if not 0 <= uplink_dr < len(self.rx1_dr_table) or not self.rx1_dr_table[uplink_dr]:
            raise EncodeError(f"{self.name}: DR{uplink_dr} is not an uplink data rate")
        row = self.rx1_dr_table[uplink_dr]
        if not 0 <= rx1_dr_offset < len(row):
            raise EncodeError(f"{self.name}: RX1DROffset must be 0..{len(row) - 1}")
        return row[rx1_dr_offset]

    def tx_power_dbm(self, tx_power: int) -> float:
        """EIRP for a TXPower index (RP002 §2.x.3)."""
        if not 0 <= tx_power < len(self.tx_power_offsets_db):
            raise EncodeError(
                f"{self.name}: TXPower must be 0..{len(self.tx_power_offsets_db) - 1}"
            )
        return self.max_eirp_dbm - self.tx_power_offsets_db[tx_power]

    def sub_band_for(self, frequency_hz: int) -> SubBand | None:
        for band in self.sub_bands:
            if band.contains(frequency_hz):
                return band
        return None

    def data_rate_for(self, spreading_factor: int, bandwidth_hz: int) -> int:
        """The DR index of a LoRa SF/BW (uplink first), e.g. to read GWMP ``datr``."""
        for rate in self.data_rates:
            if (
                rate.modulation is Modulation.LORA
                and rate.spreading_factor == spreading_factor
                and rate.bandwidth_hz == bandwidth_hz
            ):
                return rate.index
        raise EncodeError(f"{self.name} has no DR for SF{spreading_factor}/{bandwidth_hz} Hz")
