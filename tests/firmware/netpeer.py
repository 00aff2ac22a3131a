"""A small CPython LoRaWAN network-server peer for firmware tests, built on ``protocol.lorawan``.

It is the other end of the firmware's UDP sim radio (firmware/lib/hal/sim_radio.py documents
the datagrams): the MicroPython node sends ``uplink`` and ``poll`` datagrams on 127.0.0.1 and the
peer answers each with ``downlinks`` scheduled on the node's virtual clock (RX1 at TX-done +
RECEIVE_DELAY1, RX2 one second later, class C at any time on the RX2 channel).

Independent of the firmware's own frame code: every byte it checks or builds goes through the
CPython protocol package, so a session that works proves the two implementations agree.

A test drives it with a *plan*: ``plan[k]`` is a callable run on the k-th data uplink that
returns what to send back (a :class:`Down`, or None); ``on_poll`` does the same for class C.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol.lorawan import (
    EU868,
    AESKey,
    CFListFrequencies,
    DataFrame,
    DevAddr,
    DLSettings,
    JoinAccept,
    JoinRequest,
    MACCommand,
    MType,
    NetID,
    encode_mac_commands,
    parse_mac_commands,
    reconstruct_fcnt,
)
from protocol.lorawan import crypto as pcrypto
from protocol.lorawan.maccommands import RXParamSetupAns

NET_ID = NetID(0x000013)


@dataclass
class Down:
    """A downlink the plan wants sent: application data and/or MAC commands."""

    fport: int | None = None
    payload: bytes = b""
    confirmed: bool = False
    fopts: list[MACCommand] = field(default_factory=list)
    port0: list[MACCommand] = field(default_factory=list)  # MAC commands in FPort 0 instead
    window: str = "rx1"  # "rx1" or "rx2"


@dataclass
class Uplink:
    """One data uplink as the peer decoded it."""

    fcnt: int
    confirmed: bool
    ack: bool
    adr: bool
    adr_ack_req: bool
    fport: int | None
    payload: bytes
    commands: list[str]
    command_objects: list[Any]
    freq_hz: int
    datr: str
    dr: int
    t_ms: int


def _datr_dr(datr: str) -> int:
    sf_text, bw_text = datr[2:].split("BW")
    return EU868.data_rate_for(int(sf_text), int(bw_text) * 1000)


def _dr_datr(dr: int) -> str:
    rate = EU868.data_rate(dr)
    return f"SF{rate.spreading_factor}BW{rate.bandwidth_hz // 1000}"


class NetPeer:
    """UDP network peer for one EU868 OTAA node; start() / stop() around a test."""

    def __init__(self, app_key: bytes, *, rx2_dr: int = 3, cflist: bool = True) -> None:
        self.app_key = AESKey(app_key)
        self.rx2_dr = rx2_dr
        self.rx2_freq = EU868.rx2_frequency_hz
        self.rx1_offset = 0
        self.rx1_delay_s = 1
        self.cflist = cflist
        self.plan: dict[int, Callable[[Uplink], Down | None]] = {}
        self.on_poll: Callable[[int], Down | None] | None = None
        self.uplinks: list[Uplink] = []
        self.dev_nonces: list[int] = []
        self.errors: list[str] = []
        self.polls = 0
        self.dev_addr: DevAddr | None = None
        self.nwk_s_key: bytes = b""
        self.app_s_key: bytes = b""
        self.fcnt_down = 0
        self.last_fcnt_up: int | None = None
        self._join_nonce = 0x100
        self._pending_rx_param: tuple[int, int, int] | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="netpeer", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> NetPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                items = self._handle(json.loads(data))
            except Exception as exc:  # recorded for the test to report; the node still gets a reply
                self.errors.append(f"{type(exc).__name__}: {exc}")
                items = []
            self._sock.sendto(json.dumps({"type": "downlinks", "items": items}).encode(), addr)

    # -- protocol ----------------------------------------------------------------------------
    def _handle(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        if msg["type"] == "poll":
            self.polls += 1
            if self.on_poll is None or self.dev_addr is None:
                return []
            down = self.on_poll(msg["t_ms"])
            if down is None:
                return []
            # class C: on the RX2 channel, shortly after the node's poll
            return [self._data_down(down, self.rx2_freq, _dr_datr(self.rx2_dr), msg["t_ms"] + 50)]
        phy = bytes.fromhex(msg["phy"])
        mtype = MType(phy[0] >> 5)
        if mtype == MType.JOIN_REQUEST:
            return self._join(phy, msg)
        if mtype in (MType.UNCONFIRMED_DATA_UP, MType.CONFIRMED_DATA_UP):
            return self._uplink(phy, msg)
        self.errors.append(f"unexpected uplink MType {mtype}")
        return []

    def _join(self, phy: bytes, msg: dict[str, Any]) -> list[dict[str, Any]]:
        req = JoinRequest.from_bytes(phy)
        req.verify_mic(self.app_key)
        self.dev_nonces.append(req.dev_nonce)
        self._join_nonce += 1
        self.dev_addr = DevAddr(0x26010000 + req.dev_nonce)
        cflist = (
            CFListFrequencies((867100000, 867300000, 867500000, 867700000, 867900000))
            if self.cflist
            else None
        )
        accept = JoinAccept.build(
            self.app_key,
            join_nonce=self._join_nonce,
            net_id=NET_ID,
            dev_addr=self.dev_addr,
            dl_settings=DLSettings(rx1_dr_offset=0, rx2_data_rate=self.rx2_dr),
            rx_delay=self.rx1_delay_s,
            cflist=cflist,
        )
        keys = accept.session_keys(self.app_key, req.dev_nonce)
        self.nwk_s_key = keys.nwk_s_key.to_bytes()
        self.app_s_key = keys.app_s_key.to_bytes()
        self.fcnt_down = 0
        self.last_fcnt_up = None
        self.rx1_offset = 0
        return [
            {
                "phy": accept.encrypt(self.app_key).hex(),
                "freq_hz": msg["freq_hz"],
                "datr": msg["datr"],  # RX1 of a join: same DR (offset 0)
                "t_ms": msg["t_ms"] + 5000,
            }
        ]

    def _uplink(self, phy: bytes, msg: dict[str, Any]) -> list[dict[str, Any]]:
        frame = DataFrame.from_bytes(phy)
        if self.dev_addr is None or frame.dev_addr != self.dev_addr:
            self.errors.append("uplink from an unknown DevAddr")
            return []
        fcnt = reconstruct_fcnt(self.last_fcnt_up, frame.fcnt16)
        frame.verify_mic(self.nwk_s_key, fcnt)
        self.last_fcnt_up = fcnt
        commands = parse_mac_commands(frame.fhdr.fopts, uplink=True)
        payload = frame.decrypt(app_s_key=self.app_s_key, nwk_s_key=self.nwk_s_key, fcnt=fcnt)
        for command in commands:
            accepted = (
                isinstance(command, RXParamSetupAns)
                and command.rx1_dr_offset_ack
                and command.rx2_data_rate_ack
                and command.channel_ack
            )
            if accepted and self._pending_rx_param is not None:
                self.rx1_offset, self.rx2_dr, self.rx2_freq = self._pending_rx_param
        fctrl = frame.fctrl
        up = Uplink(
            fcnt=fcnt,
            confirmed=frame.mtype == MType.CONFIRMED_DATA_UP,
            ack=fctrl.ack,
            adr=fctrl.adr,
            adr_ack_req=fctrl.adr_ack_req,
            fport=frame.fport,
            payload=payload,
            commands=[type(c).__name__ for c in commands],
            command_objects=list(commands),
            freq_hz=msg["freq_hz"],
            datr=msg["datr"],
            dr=_datr_dr(msg["datr"]),
            t_ms=msg["t_ms"],
        )
        self.uplinks.append(up)
        step = self.plan.get(len(self.uplinks) - 1)
        down = step(up) if step is not None else None
        if down is None:
            if up.confirmed:  # an ACK is always owed to a confirmed uplink
                down = Down()
            else:
                return []
        if down.window == "rx2":
            freq, datr, t = (
                self.rx2_freq,
                _dr_datr(self.rx2_dr),
                msg["t_ms"] + 1000 * (self.rx1_delay_s + 1),
            )
        else:
            dr1 = EU868.rx1_data_rate(up.dr, self.rx1_offset)
            freq, datr, t = msg["freq_hz"], _dr_datr(dr1), msg["t_ms"] + 1000 * self.rx1_delay_s
        return [self._data_down(down, freq, datr, t, ack=up.confirmed)]

    def expect_rx_param(self, rx1_offset: int, rx2_dr: int, rx2_freq: int) -> None:
        """The settings to use once the node acknowledges an RXParamSetupReq."""
        self._pending_rx_param = (rx1_offset, rx2_dr, rx2_freq)

    def _data_down(
        self, down: Down, freq: int, datr: str, t_ms: int, *, ack: bool = False
    ) -> dict[str, Any]:
        assert self.dev_addr is not None
        fport, payload = down.fport, down.payload
        if down.port0:
            fport, payload = 0, encode_mac_commands(down.port0, uplink=False)
        frame = DataFrame.build(
            mtype=MType.CONFIRMED_DATA_DOWN if down.confirmed else MType.UNCONFIRMED_DATA_DOWN,
            dev_addr=self.dev_addr,
            fcnt=self.fcnt_down,
            nwk_s_key=self.nwk_s_key,
            app_s_key=self.app_s_key,
            fport=fport,
            payload=payload,
            fopts=encode_mac_commands(down.fopts, uplink=False),
            ack=ack,
        )
        self.fcnt_down += 1
        return {"phy": frame.to_bytes().hex(), "freq_hz": freq, "datr": datr, "t_ms": t_ms}


def data_mic_ok(nwk_s_key: bytes, phy: bytes, fcnt: int) -> bool:
    """Whether ``phy`` is a data frame signed with this key at this full FCnt (for tests)."""
    msg = phy[:-4]
    direction = pcrypto.DIR_DOWN if (phy[0] >> 5) & 1 else pcrypto.DIR_UP
    dev_addr = int.from_bytes(phy[1:5], "little")
    return pcrypto.data_mic(nwk_s_key, direction, dev_addr, fcnt, msg) == phy[-4:]
