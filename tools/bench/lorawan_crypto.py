"""LoRaWAN frame crypto speed: protocol.lorawan against the same work done by hand.

Baseline (measured in the same run, because the machine is shared): a 12-byte FPort 1 uplink
built with nothing but ``struct`` and `cryptography` — one AES-ECB block for the FRMPayload
keystream (L2 §4.3.3) and one AES-CMAC for the MIC (L2 §4.4). The figures divide the package's
rate by that, so they show what the layers cost: construct layouts, range checks, value types.

- ``uplink build``: :meth:`DataFrame.build` + ``to_bytes()`` (encrypt + MIC).
- ``uplink read``: :meth:`PHYPayload.from_bytes` + :meth:`DataFrame.verify_mic` +
  :meth:`DataFrame.decrypt` of the same frame, what a network server does per uplink; its
  baseline is the hand-written check + decrypt of the same bytes.

Rounds alternate between the candidates and the best of each is kept, so a burst of load from a
neighbour does not land on one side only. Each loop is bounded (count × rounds, ~1-2 s total).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from protocol.lorawan import AESKey, DataFrame, DevAddr, MType, PHYPayload
from tools.bench.report import Figure

_BENCH = "lorawan_crypto"
_NWK = AESKey(bytes(range(16)))
_APP = AESKey(bytes(range(16, 32)))
_ADDR = DevAddr(0x26011BDA)
_PAYLOAD = bytes(range(12))
_COUNT = 2000
_ROUNDS = 3


def _build(i: int) -> bytes:
    return DataFrame.build(
        mtype=MType.UNCONFIRMED_DATA_UP,
        dev_addr=_ADDR,
        fcnt=i,
        fport=1,
        payload=_PAYLOAD,
        nwk_s_key=_NWK,
        app_s_key=_APP,
    ).to_bytes()


def _keystream(key: bytes, fcnt: int) -> bytes:
    block = struct.pack("<B4xBIIxB", 0x01, 0, _ADDR.value, fcnt, 1)
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _cmac(key: bytes, fcnt: int, msg: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(struct.pack("<B4xBIIxB", 0x49, 0, _ADDR.value, fcnt, len(msg)) + msg)
    return mac.finalize()[:4]


def _bare_build(i: int) -> bytes:
    """The same uplink by hand: MHDR, FHDR, FPort, encrypted payload, MIC."""
    fcnt = i
    stream = _keystream(_APP.to_bytes(), fcnt)
    encrypted = bytes(a ^ b for a, b in zip(_PAYLOAD, stream, strict=False))
    msg = struct.pack("<BIBHB", 0x40, _ADDR.value, 0, fcnt & 0xFFFF, 1) + encrypted
    return msg + _cmac(_NWK.to_bytes(), fcnt, msg)


def run() -> list[Figure]:
    phy = _build(7)
    if _bare_build(7) != phy:  # the baseline must do exactly the same work
        raise RuntimeError("hand-built uplink differs from DataFrame.build")

    def read(_: int) -> bytes:
        frame = PHYPayload.from_bytes(phy)
        assert isinstance(frame, DataFrame)
        frame.verify_mic(_NWK, 7)
        return frame.decrypt(app_s_key=_APP, fcnt=7)

    def bare_read(_: int) -> bytes:
        if _cmac(_NWK.to_bytes(), 7, phy[:-4]) != phy[-4:]:
            raise RuntimeError("MIC")
        stream = _keystream(_APP.to_bytes(), 7)
        return bytes(a ^ b for a, b in zip(phy[9:-4], stream, strict=False))

    candidates: dict[str, Callable[[int], object]] = {
        "bare_build": _bare_build,
        "build": _build,
        "bare_read": bare_read,
        "read": read,
    }
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(_ROUNDS):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for i in range(_COUNT):
                fn(i)
            best[name] = min(best[name], time.perf_counter() - start)
    rate = {name: _COUNT / seconds for name, seconds in best.items()}
    return [
        Figure(_BENCH, "uplink build (by hand, baseline)", round(rate["bare_build"]), "frames/s"),
        Figure(_BENCH, "uplink build (DataFrame.build)", round(rate["build"]), "frames/s"),
        Figure(
            _BENCH,
            "uplink build / by hand",
            round(rate["build"] / rate["bare_build"], 3),
            "ratio",
            goal=0.1,
            better=">=",
            note="at most 10x the hand-written work: layouts, checks, value types",
        ),
        Figure(_BENCH, "uplink read (by hand, baseline)", round(rate["bare_read"]), "frames/s"),
        Figure(_BENCH, "uplink read (parse+verify+decrypt)", round(rate["read"]), "frames/s"),
        Figure(
            _BENCH,
            "uplink read / by hand",
            round(rate["read"] / rate["bare_read"], 3),
            "ratio",
            goal=0.1,
            better=">=",
            note="a network server's per-uplink work",
        ),
    ]
