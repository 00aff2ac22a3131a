"""A fake LoRaWAN 1.0.4 end device for the emulator's tests, built only on protocol.lorawan.

It is not a MAC: it builds the frames a node would send (Join-Request with a DevNonce counter,
data uplinks with a 32-bit FCnt) and reads the emulator's downlinks (Join-Accept, data).
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from typing import Any

from protocol.lorawan.data import DataFrame
from protocol.lorawan.join import JoinAccept, JoinRequest
from protocol.lorawan.keys import EUI64, AESKey, DevAddr
from protocol.lorawan.maccommands import parse_mac_commands
from protocol.lorawan.mhdr import MType
from tools.netsim.devices import Device
from tools.netsim.gwmp import rxpk

_tmst = itertools.count(1_000_000, 3_000_000)


@dataclass
class Downlink:
    frame: DataFrame
    payload: bytes
    mac: list[Any]


@dataclass
class FakeNode:
    dev_eui: str
    join_eui: str
    app_key_hex: str = field(repr=False)
    dev_nonce: int = 0
    fcnt_up: int = 0
    dev_addr: int | None = None
    nwk_s_key: bytes = field(default=b"", repr=False)
    app_s_key: bytes = field(default=b"", repr=False)
    last_join_nonce: int | None = None
    accept: JoinAccept | None = None

    @classmethod
    def for_device(cls, device: Device) -> FakeNode:
        return cls(device.dev_eui, device.join_eui, device.app_key.hex())

    @property
    def app_key(self) -> AESKey:
        return AESKey.from_hex(self.app_key_hex)

    def join_request(self, dev_nonce: int | None = None) -> bytes:
        nonce = self.dev_nonce if dev_nonce is None else dev_nonce
        if dev_nonce is None:
            self.dev_nonce += 1
        self._pending_nonce = nonce
        request = JoinRequest.build(
            self.app_key, EUI64.from_hex(self.join_eui), EUI64.from_hex(self.dev_eui), nonce
        )
        return request.to_bytes()

    def join_accept(self, phy: bytes) -> JoinAccept:
        accept = JoinAccept.decrypt(phy, self.app_key)
        keys = accept.session_keys(self.app_key, self._pending_nonce)
        self.dev_addr = accept.dev_addr.value
        self.nwk_s_key = keys.nwk_s_key.to_bytes()
        self.app_s_key = keys.app_s_key.to_bytes()
        self.fcnt_up = 0
        self.last_join_nonce = accept.join_nonce
        self.accept = accept
        return accept

    def uplink(
        self,
        payload: bytes = b"",
        *,
        fport: int | None = 1,
        confirmed: bool = False,
        ack: bool = False,
        fopts: bytes = b"",
        adr: bool = False,
        fcnt: int | None = None,
    ) -> bytes:
        assert self.dev_addr is not None, "join first"
        count = self.fcnt_up if fcnt is None else fcnt
        if fcnt is None:
            self.fcnt_up += 1
        frame = DataFrame.build(
            mtype=MType.CONFIRMED_DATA_UP if confirmed else MType.UNCONFIRMED_DATA_UP,
            dev_addr=DevAddr(self.dev_addr),
            fcnt=count,
            nwk_s_key=self.nwk_s_key,
            app_s_key=self.app_s_key,
            fport=fport,
            payload=payload,
            fopts=fopts,
            adr=adr,
            ack=ack,
        )
        return frame.to_bytes()

    def downlink(self, phy: bytes, fcnt: int) -> Downlink:
        frame = DataFrame.from_bytes(phy)
        frame.verify_mic(self.nwk_s_key, fcnt)
        if frame.fport == 0:
            raw = frame.decrypt(nwk_s_key=self.nwk_s_key, fcnt=fcnt)
            return Downlink(frame, b"", parse_mac_commands(raw, uplink=False))
        payload = frame.decrypt(app_s_key=self.app_s_key, fcnt=fcnt)
        return Downlink(frame, payload, parse_mac_commands(frame.fhdr.fopts, uplink=False))


def air(
    phy: bytes,
    *,
    freq_mhz: float = 868.1,
    datr: str = "SF7BW125",
    lsnr: float = 7.5,
    rssi: int = -60,
    tmst: int | None = None,
) -> dict[str, Any]:
    """The rxpk a gateway reports for ``phy``."""
    return rxpk(
        phy,
        tmst=next(_tmst) if tmst is None else tmst,
        freq_mhz=freq_mhz,
        datr=datr,
        lsnr=lsnr,
        rssi=rssi,
    )


def phy_of(txpk: dict[str, Any]) -> bytes:
    return base64.b64decode(txpk["data"])
