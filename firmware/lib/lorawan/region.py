"""Regional parameters for the firmware: EU868 and US915 (LoRaWAN RP002-1.0.4, "RP").

Hand-checked against RP002-1.0.4 §5.1 (EU863-870) and §5.2 (US902-928), LoRaMac-node
``RegionEU868.h`` / ``RegionUS915.h`` and ``protocol/lorawan/region`` (a test compares the tables,
``tests/firmware/test_region_tables.py``). Only LoRa data rates are listed: the radios are used
in LoRa mode only, so EU868 DR7 (FSK) and the RFU / LR-FHSS rates are ``_NO_RATE`` (SF 0).

A region object is stateless; the channel plan a device is using lives in
:class:`lorawan.session.State` (``ch_freq``, ``ch_dr``, ``ch_dl``, ``mask``).
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


_MAX_CHANNELS_EU = const(16)  # RP §5.1.2: up to 16 channels
_EU_MAX_EIRP = const(16)  # RP §5.1.1 default MaxEIRP, dBm
_US_MAX_EIRP = const(30)  # RP §5.2.1 (conducted 30 dBm)

_NO_RATE = (0, 0)  # not a LoRa rate on these radios
# (spreading factor, bandwidth kHz) per DR
EU868_DR = ((12, 125), (11, 125), (10, 125), (9, 125), (8, 125), (7, 125), (7, 250), _NO_RATE)
# RP §5.1.6 Table 22: maximum MACPayload size M per DR (repeater compatible off)
EU868_MAX_M = (59, 59, 59, 123, 250, 250, 250, 250)
US915_DR = (
    (10, 125), (9, 125), (8, 125), (7, 125), (8, 500), _NO_RATE, _NO_RATE, _NO_RATE,
    (12, 500), (11, 500), (10, 500), (9, 500), (8, 500), (7, 500), _NO_RATE, _NO_RATE,
)  # fmt: skip
# RP §5.2.6 Table 36: M per DR (DR5-7 and 14-15 RFU / LR-FHSS)
US915_MAX_M = (19, 61, 133, 250, 250, 0, 0, 0, 61, 137, 250, 250, 250, 250, 0, 0)
# RP §5.2.7 Table 37: RX1 DR from uplink DR (rows) and RX1DROffset 0..3 (columns)
US915_RX1_DR = ((10, 9, 8, 8), (11, 10, 9, 8), (12, 11, 10, 9), (13, 12, 11, 10), (13, 13, 12, 11))

# ETSI EN 300 220 sub-bands used by LoRaMac-node (RegionEU868.h BAND0..5): lo Hz, hi Hz, 1/dc
EU868_BANDS = (
    (863000000, 865000000, 1000),
    (865000000, 868000000, 100),
    (868000000, 868600000, 100),
    (868700000, 869200000, 1000),
    (869400000, 869650000, 10),
    (869700000, 870000000, 100),
)


class EU868:
    name = "EU868"
    dr_table = EU868_DR
    max_m = EU868_MAX_M
    max_channels = _MAX_CHANNELS_EU
    default_freqs = (868100000, 868300000, 868500000)  # RP §5.1.2, DR0-5
    rx2_freq = 869525000  # RP §5.1.8
    rx2_dr = 0
    join_drs = (5, 4, 3, 2, 1, 0)  # try fast first, then fall back (L2 §7 back-off applies)
    min_dr = 0
    max_dr_up = 6  # highest LoRa uplink DR (DR7 is FSK)
    default_dr = 0
    max_tx_power = 7  # RP §5.1.3: TXPower 0..7
    max_rx1_offset = 5
    uses_duty_cycle = True
    has_cflist_freqs = True  # CFListType 0 (RP §5.1.4)
    mask_bits = 16

    @staticmethod
    def tx_power_dbm(index):
        return _EU_MAX_EIRP - 2 * index  # RP §5.1.3 Table 15

    @staticmethod
    def default_plan(state):
        for i in range(16):
            state.ch_freq[i] = 0
            state.ch_dr[i] = 0
            state.ch_dl[i] = 0
        for i in range(10):
            state.mask[i] = 0
        for i in range(3):
            state.ch_freq[i] = EU868.default_freqs[i]
            state.ch_dr[i] = 0x50  # DR0..DR5 (max << 4 | min)
            state.mask[0] |= 1 << i
        state.rx2_freq = EU868.rx2_freq
        state.rx2_dr = EU868.rx2_dr

    @staticmethod
    def channel_freq(state, ch):
        return state.ch_freq[ch]

    @staticmethod
    def channel_count():
        return _MAX_CHANNELS_EU

    @staticmethod
    def channel_allows(state, ch, dr):
        v = state.ch_dr[ch]
        return state.ch_freq[ch] != 0 and (v & 0x0F) <= dr <= (v >> 4)

    @staticmethod
    def rx1(state, ch, dr, offset):
        """(frequency, DR) of RX1 (RP §5.1.7): same frequency unless DlChannelReq moved it."""
        freq = state.ch_dl[ch] or state.ch_freq[ch]
        rx_dr = dr - offset
        return freq, rx_dr if rx_dr > 0 else 0

    @staticmethod
    def join_channels(state):
        return (0, 1, 2)

    @staticmethod
    def valid_freq(freq):
        return 863000000 <= freq <= 870000000

    @staticmethod
    def band_of(freq):
        for i in range(len(EU868_BANDS)):
            lo, hi, _ = EU868_BANDS[i]
            if lo <= freq < hi:
                return i
        return -1

    @staticmethod
    def apply_cflist(state, cflist):
        """CFListType 0: five frequencies for channels 3..7, DR0-5 (RP §5.1.4, L2 §6.2.6)."""
        if cflist[15] != 0:
            return False
        for i in range(5):
            f = (cflist[3 * i] | (cflist[3 * i + 1] << 8) | (cflist[3 * i + 2] << 16)) * 100
            ch = 3 + i
            if f == 0:
                state.ch_freq[ch] = 0
                state.mask[0] &= ~(1 << ch) & 0xFF
                continue
            if not EU868.valid_freq(f):
                continue
            state.ch_freq[ch] = f
            state.ch_dr[ch] = 0x50
            state.mask[0] |= 1 << ch
        return True

    @staticmethod
    def apply_chmask(state, mask_out, cntl, chmask):
        """Fold one LinkADRReq ChMask into ``mask_out`` (RP §5.1.5); False = NACK."""
        if cntl == 0:
            for i in range(16):
                if chmask & (1 << i) and state.ch_freq[i] == 0:
                    return False  # enabling an undefined channel
            mask_out[0] = chmask & 0xFF
            mask_out[1] = chmask >> 8
            return True
        if cntl == 6:  # all defined channels on
            m = 0
            for i in range(16):
                if state.ch_freq[i]:
                    m |= 1 << i
            mask_out[0] = m & 0xFF
            mask_out[1] = m >> 8
            return True
        return False  # RFU

    @staticmethod
    def max_payload(dr):
        return EU868_MAX_M[dr]

    @staticmethod
    def valid_uplink_dr(dr):
        return 0 <= dr <= 6

    @staticmethod
    def valid_rx_dr(dr):
        return 0 <= dr <= 6

    @staticmethod
    def all_on(state):
        EU868.default_plan_mask_only(state)

    @staticmethod
    def default_plan_mask_only(state):
        # ADR back-off end state: re-enable the default channels (L2 §4.3.1.1)
        state.mask[0] |= 0x07


def _us_freq(ch):
    if ch < 64:
        return 902300000 + 200000 * ch  # RP §5.2.2, 125 kHz channels 0..63
    return 903000000 + 1600000 * (ch - 64)  # 500 kHz channels 64..71


class US915:
    name = "US915"
    dr_table = US915_DR
    max_m = US915_MAX_M
    max_channels = 72
    rx2_freq = 923300000  # RP §5.2.8
    rx2_dr = 8
    join_drs = (0,)
    min_dr = 0
    max_dr_up = 4
    default_dr = 0
    max_tx_power = 14  # RP §5.2.3: TXPower 0..14
    max_rx1_offset = 3
    uses_duty_cycle = False
    has_cflist_freqs = False  # CFListType 1 = channel mask (RP §5.2.4)
    mask_bits = 72

    @staticmethod
    def tx_power_dbm(index):
        return _US_MAX_EIRP - 2 * index

    @staticmethod
    def default_plan(state, sub_band=0):
        """All 72 channels on (RP §5.2.2), or only sub-band 1..8 (8 × 125 kHz + its 500 kHz)."""
        for i in range(10):
            state.mask[i] = 0
        for ch in range(72):
            if sub_band == 0 or (ch < 64 and ch >> 3 == sub_band - 1) or ch == 63 + sub_band:
                state.mask[ch >> 3] |= 1 << (ch & 7)
        state.rx2_freq = US915.rx2_freq
        state.rx2_dr = US915.rx2_dr

    @staticmethod
    def channel_freq(state, ch):
        return _us_freq(ch)

    @staticmethod
    def channel_count():
        return 72

    @staticmethod
    def channel_allows(state, ch, dr):
        if ch < 64:
            return 0 <= dr <= 3
        return dr == 4

    @staticmethod
    def rx1(state, ch, dr, offset):
        """RX1 (RP §5.2.7): 923.3 + 0.6 × (channel mod 8) MHz, DR from Table 37."""
        return 923300000 + 600000 * (ch & 7), US915_RX1_DR[dr][offset]

    @staticmethod
    def join_channels(state):
        return tuple(ch for ch in range(64) if state.mask[ch >> 3] & (1 << (ch & 7)))

    @staticmethod
    def valid_freq(freq):
        return 902000000 <= freq <= 928000000

    @staticmethod
    def band_of(freq):
        return -1  # no duty-cycle sub-bands in US915

    @staticmethod
    def apply_cflist(state, cflist):
        """CFListType 1: ChMask for channels 0..71 in the first 9 bytes (RP §5.2.4)."""
        if cflist[15] != 1:
            return False
        for i in range(9):
            state.mask[i] = cflist[i]
        return True

    @staticmethod
    def apply_chmask(state, mask_out, cntl, chmask):
        """One LinkADRReq ChMask (RP §5.2.5 Table 34); False = NACK."""
        lo = chmask & 0xFF
        hi = chmask >> 8
        if cntl <= 3:  # channels 16*cntl .. 16*cntl+15
            mask_out[2 * cntl] = lo
            mask_out[2 * cntl + 1] = hi
        elif cntl == 4:  # 500 kHz channels 64..71
            mask_out[8] = lo
        elif cntl == 5:  # each bit 0..7 enables a bank of 8 × 125 kHz and its 500 kHz channel
            for b in range(8):
                on = (lo >> b) & 1
                mask_out[b] = 0xFF if on else 0
            mask_out[8] = lo
        elif cntl == 6 or cntl == 7:  # all 125 kHz on (6) / off (7); ChMask applies to 64..71
            v = 0xFF if cntl == 6 else 0
            for b in range(8):
                mask_out[b] = v
            mask_out[8] = lo
        else:
            return False
        return True

    @staticmethod
    def max_payload(dr):
        return US915_MAX_M[dr]

    @staticmethod
    def valid_uplink_dr(dr):
        return 0 <= dr <= 4

    @staticmethod
    def valid_rx_dr(dr):
        return 8 <= dr <= 13

    @staticmethod
    def all_on(state):
        for i in range(9):
            state.mask[i] = 0xFF


def get(name):
    if name == "EU868":
        return EU868
    if name == "US915":
        return US915
    raise ValueError("unsupported region")
