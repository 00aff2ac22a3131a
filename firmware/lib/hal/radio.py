"""The radio seam of the MAC, and the LoRa timing both radio implementations share.

Interface every radio implements (all coroutines never block the event loop)::

    radio.configure()                                    # once, at start-up
    tx_done = await radio.transmit(freq_hz, sf, bw_khz, power_dbm, payload)
        # payload: bytes-like PHYPayload; returns the clock ticks (ms) at TX done, taken from the
        # TX-done interrupt, which anchors RX1/RX2 (never the time transmit() returned)
    frame = await radio.receive(freq_hz, sf, bw_khz, open_ticks, timeout_ms)
        # single receive: wait until open_ticks, listen for timeout_ms (the symbol timeout of
        # :func:`rx_window`); a frame whose preamble started in the window is received to its
        # end. timeout_ms=None is continuous receive (class C) until a frame or cancellation.
        # Returns an RxFrame (data, rssi dBm, snr dB) or None.
    radio.sleep()                                        # idle between uplinks

Settings both radios apply (L2 1.0.4 §3.1, RP002 §2): sync word 0x34 (public network), preamble
8 symbols, coding rate 4/5, explicit header, CRC on uplinks only, IQ inverted on receive.

Sources: time on air from Semtech AN1200.13 / SX1276 datasheet §4.1.1.7; receive window size and
offset from LoRaMac-node ``RegionCommonComputeRxWindowParameters`` (MinRxSymbols 6,
SystemMaxRxError 10 ms, 1 ms radio wake-up).
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


SYNC_WORD = const(0x34)  # LoRaWAN public network sync word
PREAMBLE = const(8)  # symbols, RP002 §2 (both directions)
CODING_RATE = const(5)  # 4/5 in micropython-lib's coding_rate numbering
_MIN_RX_SYMBOLS = const(6)  # LoRaMac-node MinRxSymbols
_MAX_RX_ERROR_US = const(10000)  # LoRaMac-node SystemMaxRxError 10 ms
_WAKEUP_US = const(1000)  # radio wake-up time assumed by LoRaMac-node examples


class RxFrame:
    """A received PHYPayload with its link quality (``snr`` in dB, ``rssi`` in dBm)."""

    def __init__(self, data, rssi=0, snr=0, ticks=0):
        self.data = data
        self.rssi = rssi
        self.snr = snr
        self.ticks = ticks


def symbol_us(sf, bw_khz):
    """One LoRa symbol in µs: 2^SF / BW (exact in integers for 125/250/500 kHz)."""
    return ((1 << sf) * 1000) // bw_khz


def time_on_air_us(sf, bw_khz, pl, crc=True):
    """LoRa time on air in µs for a PHYPayload of ``pl`` bytes (AN1200.13, CR 4/5, explicit)."""
    tsym = symbol_us(sf, bw_khz)
    de = 1 if (sf >= 11 and bw_khz == 125) else 0  # low data rate optimise
    num = 8 * pl - 4 * sf + 28 + (16 if crc else 0)
    den = 4 * (sf - 2 * de)
    n = (num + den - 1) // den if num > 0 else 0
    n_payload = 8 + n * CODING_RATE  # (CR + 4) with CR = 1
    return ((4 * PREAMBLE + 17) * tsym) // 4 + n_payload * tsym  # preamble + 4.25 symbols


def time_on_air_ms(sf, bw_khz, pl, crc=True):
    return (time_on_air_us(sf, bw_khz, pl, crc) + 999) // 1000


def rx_window(sf, bw_khz):
    """(offset_ms, timeout_ms, timeout_symbols) of a receive window at this rate.

    The window opens at nominal + offset_ms (negative = early) and listens for timeout_ms, so that
    6 preamble symbols fit even with ±10 ms of clock error (LoRaMac-node's formula).
    """
    tsym = symbol_us(sf, bw_khz)
    syms = ((2 * _MIN_RX_SYMBOLS - 8) * tsym + 2 * _MAX_RX_ERROR_US + tsym - 1) // tsym
    if syms < _MIN_RX_SYMBOLS:
        syms = _MIN_RX_SYMBOLS
    offset_us = 4 * tsym - (syms * tsym + 1) // 2 - _WAKEUP_US
    offset_ms = (offset_us + 500) // 1000 if offset_us >= 0 else -((-offset_us + 500) // 1000)
    return offset_ms, (syms * tsym + 999) // 1000, syms


def datr(sf, bw_khz):
    """Semtech packet-forwarder data-rate string, e.g. ``SF7BW125``."""
    return "SF" + str(sf) + "BW" + str(bw_khz)
