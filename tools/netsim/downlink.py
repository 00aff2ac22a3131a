"""Downlink transmission: GWMP ``txpk`` windows and frames waiting for their gateway TX ack.

Windows (L2 §3.3, RP002 §2.2.7): class A answers go in RX1 (the uplink's channel, DR minus
RX1DROffset, ``tmst`` + RxDelay) with RX2 (869.525 MHz, RX2 DR, one second later) as the
fallback; class C and multicast frames go ``imme``. A gateway's TX ack (packet_forwarder
PROTOCOL.TXT §6, ``TX_ACK``) other than NONE moves to the next window; after the last one the
caller is told the error. A downlink whose gateway never acknowledges is forgotten after
``_TX_ACK_WAIT_S`` (without an ack ChirpStack does not advance the counter, chirpstack#605).
Every transmission attempt is one line of the air capture.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Callable
from typing import Any

from tools.netsim import region
from tools.netsim.capture import Capture
from tools.netsim.state import Inflight, QueueItem, Window

__all__ = ["DownlinkCallback", "Transmitter", "class_a_windows", "txpk_window"]

log = logging.getLogger("citypack.netsim")

DownlinkCallback = Callable[[dict[str, Any], int], None]
"""``on_downlink(txpk, token)``: a frame to transmit; acknowledge it with ``tx_ack(token)``."""

_TX_ACK_WAIT_S = 60.0  # forget a downlink whose gateway never sent TX_ACK (its FCnt stalls)


def txpk_window(
    frequency_hz: int, dr: int, power: int, tmst: int | None, delay_s: int | None
) -> Window:
    """One GWMP ``txpk`` (without data): ``imme`` when ``delay_s`` is None."""
    txpk: dict[str, Any] = {"imme": delay_s is None}
    if delay_s is not None and tmst is not None:
        txpk["tmst"] = (tmst + delay_s * 1_000_000) & 0xFFFFFFFF
    txpk.update(
        {
            "freq": frequency_hz / 1_000_000,
            "rfch": 0,
            "powe": power,
            "modu": "LORA",
            "datr": region.data_rate(dr).name,
            "codr": "4/5",
            "ipol": True,
        }
    )
    return Window(txpk, frequency_hz, dr, power, delay_s)


def class_a_windows(
    tmst: int,
    frequency_hz: int,
    uplink_dr: int,
    delay_s: int,
    *,
    rx1_dr_offset: int,
    rx2_frequency_hz: int,
    rx2_dr: int,
) -> list[Window]:
    """RX1 then RX2 after an uplink received at ``tmst`` (µs, the gateway's counter)."""
    rx1_dr = max(uplink_dr - rx1_dr_offset, 0)
    rx1 = txpk_window(frequency_hz, rx1_dr, region.RX1_POWER_DBM, tmst, delay_s)
    rx2 = txpk_window(rx2_frequency_hz, rx2_dr, region.RX2_POWER_DBM, tmst, delay_s + 1)
    return [rx1, rx2]


class Transmitter:
    """The attached gateways and the downlinks in flight through them."""

    def __init__(
        self,
        rnd: random.Random,
        counters: dict[str, int],
        loop_time: Callable[[], float],
        on_ack: Callable[[str, int, str], None],
        capture: Capture | None = None,
    ) -> None:
        """``on_ack(gateway_id, token, error)`` receives the acks the transmitter makes itself
        (``auto_ack`` gateways, a full queue, a failing callback): the owner's ``tx_ack``."""
        self._random = rnd
        self._on_ack = on_ack
        self._counters = counters
        self._loop_time = loop_time
        self.capture = capture
        self._gateways: dict[str, tuple[DownlinkCallback, bool]] = {}
        self._inflight: dict[tuple[str, int], Inflight] = {}

    def attach(self, gateway_id: str, on_downlink: DownlinkCallback, auto_ack: bool) -> None:
        self._gateways[gateway_id.lower()] = (on_downlink, auto_ack)

    def attached(self, gateway_id: str) -> bool:
        return gateway_id in self._gateways

    def send(
        self,
        dev_eui: str | None,
        gateway_id: str,
        tmst: int,
        windows: list[Window],
        phy: bytes,
        *,
        f_cnt_down: int | None,
        item: QueueItem | None,
        join_accept: bool = False,
        link_adr: tuple[int, int, int] | None = None,
        multicast_item: Any = None,
    ) -> None:
        """Fill the windows with ``phy`` and transmit in the first one."""
        for window in windows:
            window.txpk["size"] = len(phy)
            window.txpk["data"] = base64.b64encode(phy).decode("ascii")
        inflight = Inflight(
            downlink_id=self._random.getrandbits(32),
            dev_eui=dev_eui,
            windows=windows,
            index=0,
            gateway_id=gateway_id,
            context=tmst.to_bytes(4, "big"),
            f_cnt_down=f_cnt_down,
            item=item,
            join_accept=join_accept,
            link_adr=link_adr,
            multicast_item=multicast_item,
        )
        self._transmit(inflight)

    def _transmit(self, inflight: Inflight) -> None:
        gateway = self._gateways.get(inflight.gateway_id)
        if gateway is None:
            log.warning("netsim: gateway %s is not attached: no downlink", inflight.gateway_id)
            return
        callback, auto_ack = gateway
        token = self._random.getrandbits(16)
        while (inflight.gateway_id, token) in self._inflight:
            token = self._random.getrandbits(16)
        now = self._loop_time()
        stale = [k for k, v in self._inflight.items() if now - v.sent_at > _TX_ACK_WAIT_S]
        for key in stale:  # ChirpStack#605: without a TX ack the counter does not advance
            del self._inflight[key]
        inflight.sent_at = now
        self._inflight[(inflight.gateway_id, token)] = inflight
        window = inflight.windows[inflight.index]
        self._counters["downlinks"] += 1
        if self.capture is not None:
            self.capture.write(
                "down",
                base64.b64decode(window.txpk["data"]),
                # a multicast frame has no one device: "" (its McAddr is the frame's DevAddr)
                inflight.dev_eui if inflight.dev_eui is not None else "",
                window.frequency_hz,
                window.txpk["datr"],
                inflight.gateway_id,
            )
        try:
            callback(dict(window.txpk), token)
        except asyncio.QueueFull:
            log.warning("netsim: gateway %s has no room for a downlink", inflight.gateway_id)
            self._on_ack(inflight.gateway_id, token, "QUEUE_FULL")
            return
        except Exception:
            log.exception("netsim: the downlink callback of gateway %s failed", inflight.gateway_id)
            self._on_ack(inflight.gateway_id, token, "INTERNAL_ERROR")
            return
        if auto_ack:
            self._on_ack(inflight.gateway_id, token, "NONE")

    def ack(self, gateway_id: str, token: int, error: str) -> tuple[Inflight, str] | None:
        """Settle the frame sent with ``token``: None when unknown or retried in the next
        window, else (the frame, ``""`` for sent or the gateway's error after the last window)."""
        inflight = self._inflight.pop((gateway_id.lower(), token & 0xFFFF), None)
        if inflight is None:
            return None
        if error not in ("NONE", "OK", ""):
            if inflight.index + 1 < len(inflight.windows):
                inflight.index += 1
                self._transmit(inflight)
                return None
            return inflight, error
        return inflight, ""
