"""Harness: hal.radio_sx.SxRadio against a stand-in for micropython-lib's async modem API.

There is no radio hardware here; this checks what the adapter asks of the driver: the LoRaWAN
configuration keys (sync word 0x34, preamble 8, CR 4/5, IQ inverted on receive only, CRC on
uplinks only), frequency/SF/BW/power per call, standby before TX, a receive window opened no
earlier than asked, the TX-done timestamp passed through, SNR from dB x 4, and the modem
released when a continuous (class C) receive is cancelled. MicroPython only (asyncio.sleep_ms).
"""

import asyncio
import json
import sys
import time

from hal.radio_sx import SxRadio


class Packet(bytearray):
    def __init__(self, data, ticks, snr, rssi):
        super().__init__(data)
        self.ticks_ms = ticks
        self.snr = snr
        self.rssi = rssi


class Continuous:
    def __init__(self, modem):
        self.modem = modem

    def __aiter__(self):
        return self

    async def __anext__(self):
        await asyncio.sleep_ms(10000)  # nothing on the air: cancelled by the test
        raise StopAsyncIteration


class FakeModem:
    def __init__(self):
        self.calls = []
        self.cfg = {}
        self.recv_at = None
        self.reply = None

    def configure(self, cfg):
        self.calls.append(("configure", dict(cfg)))
        self.cfg.update(cfg)

    def standby(self):
        self.calls.append(("standby",))

    def sleep(self):
        self.calls.append(("sleep",))

    async def send(self, packet):
        self.calls.append(("send", bytes(packet)))
        await asyncio.sleep_ms(5)
        return 123456  # the TX-done IRQ timestamp

    async def recv(self, timeout_ms=None):
        self.recv_at = time.ticks_ms()
        self.calls.append(("recv", timeout_ms))
        return self.reply

    def recv_continuous(self):
        self.calls.append(("recv_continuous",))
        return Continuous(self)


async def main(fail):
    modem = FakeModem()
    radio = SxRadio(modem, {"tx_ant": "PA_BOOST"})
    radio.configure()
    want = {"syncword": 0x34, "preamble_len": 8, "coding_rate": 5, "implicit_header": False,
            "crc_en": True, "invert_iq_tx": False, "invert_iq_rx": True, "tx_ant": "PA_BOOST"}  # fmt: skip
    if modem.calls[0] != ("configure", want):
        fail.append("configure: %r" % (modem.calls[0],))
    t = await radio.transmit(868100000, 7, 125, 14, memoryview(b"\x40abc"))
    if t != 123456:
        fail.append("TX done must be the driver's IRQ timestamp, got %r" % t)
    if modem.calls[1] != ("standby",):
        fail.append("standby before TX: %r" % (modem.calls[1],))
    tx_cfg = modem.calls[2][1]
    if tx_cfg != {"freq_khz": 868100.0, "sf": 7, "bw": "125", "output_power": 14, "crc_en": True}:
        fail.append("TX config %r" % tx_cfg)
    if modem.calls[3] != ("send", b"\x40abc"):
        fail.append("send %r" % (modem.calls[3],))
    # RX1 on the same channel and rate: only crc_en changes
    modem.reply = Packet(b"\x60\x01", 777, -30, -101)
    open_at = time.ticks_add(time.ticks_ms(), 60)
    rx = await radio.receive(868100000, 7, 125, open_at, 25)
    if modem.calls[4] != ("configure", {"crc_en": False}):
        fail.append("RX config %r" % (modem.calls[4],))
    if time.ticks_diff(modem.recv_at, open_at) < 0:
        fail.append("the window opened %d ms early" % time.ticks_diff(open_at, modem.recv_at))
    if modem.calls[5] != ("recv", 25):
        fail.append("recv %r" % (modem.calls[5],))
    if rx is None or rx.data != b"\x60\x01" or rx.snr != -8 or rx.rssi != -101 or rx.ticks != 777:
        fail.append("frame %r" % (None if rx is None else (rx.data, rx.snr, rx.rssi, rx.ticks)))
    # RX2 elsewhere: frequency and rate are reconfigured, nothing heard
    modem.reply = None
    rx = await radio.receive(869525000, 12, 125, time.ticks_ms(), 197)
    cfg = modem.calls[6][1]
    if cfg != {"freq_khz": 869525.0, "sf": 12, "bw": "125", "crc_en": False} or rx is not None:
        fail.append("RX2 %r -> %r" % (cfg, rx))
    # class C: continuous receive, cancelled before an uplink, releases the modem
    task = asyncio.create_task(radio.receive(869525000, 12, 125, time.ticks_ms(), None))
    await asyncio.sleep_ms(20)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    if ("recv_continuous",) not in modem.calls or modem.calls[-1] != ("standby",):
        fail.append("continuous receive not released: %r" % (modem.calls[-3:],))
    radio.sleep()
    if modem.calls[-1] != ("sleep",):
        fail.append("sleep")


fail = []
asyncio.run(main(fail))
print(json.dumps({"failures": fail}))
sys.exit(1 if fail else 0)
