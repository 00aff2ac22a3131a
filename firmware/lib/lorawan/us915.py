"""US902-928 regional parameters for the firmware MAC (RP002-1.0.4 §5.2, "RP").

Hand-checked against RP002-1.0.4, LoRaMac-node ``RegionUS915.h`` and ``protocol/lorawan/region``
(tests/firmware/test_region_tables.py compares them). The module is the region object
(``lorawan.region.get("US915")``). Sub-bands are chosen with ``default_plan(state, sub_band)``
and LinkADRReq ChMaskCntl; DR5-7 and DR14-15 are not LoRa rates here (``NO_RATE``).
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


_MAX_EIRP = const(30)  # RP §5.2.1 (conducted 30 dBm)

NO_RATE = (0, 0)
DR_TABLE = (
    (10, 125), (9, 125), (8, 125), (7, 125), (8, 500), NO_RATE, NO_RATE, NO_RATE,
    (12, 500), (11, 500), (10, 500), (9, 500), (8, 500), (7, 500), NO_RATE, NO_RATE,
)  # fmt: skip
# RP §5.2.6 Table 36: M per DR (DR5-7 and 14-15 RFU / LR-FHSS)
MAX_M = (19, 61, 133, 250, 250, 0, 0, 0, 61, 137, 250, 250, 250, 250, 0, 0)
# RP §5.2.7 Table 37: RX1 DR from uplink DR (rows) and RX1DROffset 0..3 (columns)
RX1_DR = ((10, 9, 8, 8), (11, 10, 9, 8), (12, 11, 10, 9), (13, 12, 11, 10), (13, 13, 12, 11))
BANDS = ()  # no duty-cycle sub-bands


def _us_freq(ch):
    if ch < 64:
        return 902300000 + 200000 * ch  # RP §5.2.2, 125 kHz channels 0..63
    return 903000000 + 1600000 * (ch - 64)  # 500 kHz channels 64..71


name = "US915"
max_channels = 72
rx2_freq = 923300000  # RP §5.2.8
rx2_dr = 8
join_drs = (0, 4)  # alternate 125 kHz DR0 and 500 kHz DR4 (RP §5.2.2)
min_dr = 0
max_dr_up = 4
default_dr = 0
max_tx_power = 14  # RP §5.2.3: TXPower 0..14
max_rx1_offset = 3
uses_duty_cycle = False
has_cflist_freqs = False  # CFListType 1 = channel mask (RP §5.2.4)
mask_bits = 72


def tx_power_dbm(index):
    return _MAX_EIRP - 2 * index


def default_plan(state, sub_band=0):
    """All 72 channels on (RP §5.2.2), or only sub-band 1..8 (8 × 125 kHz + its 500 kHz)."""
    for i in range(10):
        state.mask[i] = 0
    for ch in range(72):
        if sub_band == 0 or (ch < 64 and ch >> 3 == sub_band - 1) or ch == 63 + sub_band:
            state.mask[ch >> 3] |= 1 << (ch & 7)
    state.rx2_freq = rx2_freq
    state.rx2_dr = rx2_dr


def channel_freq(state, ch):
    return _us_freq(ch)


def channel_count():
    return 72


def channel_allows(state, ch, dr):
    if ch < 64:
        return 0 <= dr <= 3
    return dr == 4


def rx1(state, ch, dr, offset):
    """RX1 (RP §5.2.7): 923.3 + 0.6 × (channel mod 8) MHz, DR from Table 37."""
    return 923300000 + 600000 * (ch & 7), RX1_DR[dr][offset]


def join_channels(state):
    # every enabled channel; channel_allows() keeps the 125 kHz ones for DR0, 500 kHz for DR4
    return tuple(ch for ch in range(72) if state.mask[ch >> 3] & (1 << (ch & 7)))


def valid_freq(freq):
    return 902000000 <= freq <= 928000000


def band_of(freq):
    return -1  # no duty-cycle sub-bands in US915


def apply_cflist(state, cflist):
    """CFListType 1: ChMask for channels 0..71 in the first 9 bytes (RP §5.2.4)."""
    if cflist[15] != 1:
        return False
    for i in range(9):
        state.mask[i] = cflist[i]
    return True


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


def max_payload(dr):
    return MAX_M[dr]


def valid_uplink_dr(dr):
    return 0 <= dr <= 4


def valid_rx_dr(dr):
    return 8 <= dr <= 13


def all_on(state):
    for i in range(9):
        state.mask[i] = 0xFF
