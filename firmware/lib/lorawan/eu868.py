"""EU863-870 regional parameters for the firmware MAC (RP002-1.0.4 §5.1, "RP").

Hand-checked against RP002-1.0.4, LoRaMac-node ``RegionEU868.h`` and ``protocol/lorawan/region``
(tests/firmware/test_region_tables.py compares them). The module itself is the region object the
MAC uses (``lorawan.region.get("EU868")``), so a board loads only its own region's code.
Only LoRa rates: DR7 (FSK) is ``NO_RATE``.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


_MAX_CHANNELS = const(16)  # RP §5.1.2: up to 16 channels
_MAX_EIRP = const(16)  # RP §5.1.1 default MaxEIRP, dBm

NO_RATE = (0, 0)  # not a LoRa rate on these radios
# (spreading factor, bandwidth kHz) per DR (RP §5.1.3 Table 14)
DR_TABLE = ((12, 125), (11, 125), (10, 125), (9, 125), (8, 125), (7, 125), (7, 250), NO_RATE)
# RP §5.1.6 Table 22: maximum MACPayload size M per DR (repeater compatible off)
MAX_M = (59, 59, 59, 123, 250, 250, 250, 250)
# ETSI EN 300 220 sub-bands as in LoRaMac-node's band table (RegionEU868.c): lowest Hz, highest
# Hz (both inclusive; 865.0 MHz belongs to g, 868.0 MHz to g, not g1), 1 / duty cycle
BANDS = (
    (863000000, 864999999, 1000),
    (865000000, 868000000, 100),
    (868000001, 868600000, 100),
    (868700000, 869200000, 1000),
    (869400000, 869650000, 10),
    (869700000, 870000000, 100),
)

name = "EU868"
max_channels = _MAX_CHANNELS
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


def tx_power_dbm(index):
    return _MAX_EIRP - 2 * index  # RP §5.1.3 Table 15


def default_plan(state, sub_band=0):  # sub_band: US915 only
    for i in range(16):
        state.ch_freq[i] = 0
        state.ch_dr[i] = 0
        state.ch_dl[i] = 0
    for i in range(10):
        state.mask[i] = 0
    for i in range(3):
        state.ch_freq[i] = default_freqs[i]
        state.ch_dr[i] = 0x50  # DR0..DR5 (max << 4 | min)
        state.mask[0] |= 1 << i
    state.rx2_freq = rx2_freq
    state.rx2_dr = rx2_dr


def channel_freq(state, ch):
    return state.ch_freq[ch]


def channel_count():
    return _MAX_CHANNELS


def channel_allows(state, ch, dr):
    v = state.ch_dr[ch]
    return state.ch_freq[ch] != 0 and (v & 0x0F) <= dr <= (v >> 4)


def rx1(state, ch, dr, offset):
    """(frequency, DR) of RX1 (RP §5.1.7): same frequency unless DlChannelReq moved it."""
    freq = state.ch_dl[ch] or state.ch_freq[ch]
    rx_dr = dr - offset
    return freq, rx_dr if rx_dr > 0 else 0


def join_channels(state):
    return (0, 1, 2)


def valid_freq(freq):
    return 863000000 <= freq <= 870000000


def band_of(freq):
    for i in range(len(BANDS)):
        lo, hi, _ = BANDS[i]
        if lo <= freq <= hi:
            return i
    return -1


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
        if not valid_freq(f):
            continue
        state.ch_freq[ch] = f
        state.ch_dr[ch] = 0x50
        state.mask[0] |= 1 << ch
    return True


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


def max_payload(dr):
    return MAX_M[dr]


def valid_uplink_dr(dr):
    return 0 <= dr <= 6


def valid_rx_dr(dr):
    return 0 <= dr <= 6


def all_on(state):
    # ADR back-off end state: re-enable the default channels (L2 1.0.4 §4.3.1.1)
    state.mask[0] |= 0x07
