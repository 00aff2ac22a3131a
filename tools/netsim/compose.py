"""Composing one unicast data downlink (ChirpStack ``downlink/data.rs``; L2 §4.3).

The next queue item that fits (:mod:`tools.netsim.queue`) and, for class A, the MAC commands
(:mod:`tools.netsim.mac`) go in one frame: MAC commands in FOpts up to 15 bytes, else alone in
an FPort 0 payload (L2 §4.3.1.6: FOpts and FPort 0 are never both used) with FPending set; an
item that does not fit beside the commands waits with FPending. A frame also goes with no item
when the uplink must be acknowledged (ACK bit) or answered (MAC, ADRACKReq).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.lorawan.data import DataFrame
from protocol.lorawan.keys import DevAddr
from protocol.lorawan.mhdr import MType
from tools.netsim.config import NetsimConfig
from tools.netsim.mac import downlink_mac
from tools.netsim.queue import Discarded, next_item
from tools.netsim.state import DeviceState, QueueItem

__all__ = ["DataDownlink", "compose_data_downlink"]


@dataclass(frozen=True)
class DataDownlink:
    """A built frame: its bytes, the FCnt it uses, the queue item it carries, the ADR asked."""

    phy: bytes
    f_cnt_down: int
    item: QueueItem | None
    link_adr: tuple[int, int, int] | None


def compose_data_downlink(
    state: DeviceState,
    max_payload: int,
    *,
    must_ack: bool,
    must_send: bool,
    class_c: bool,
    config: NetsimConfig,
) -> tuple[DataDownlink | None, list[Discarded]]:
    """The frame to send now, or None if there is nothing to send; plus the queue items
    discarded on the way (expired, too large) for their ``log`` events."""
    session = state.session
    assert session is not None
    item, discarded = next_item(state, max_payload, config.expiry_clock())
    more = item is not None and sum(1 for i in state.queue if not i.is_pending) > 1
    commands: list[bytes] = []
    link_adr = None
    if not class_c:
        commands, link_adr = downlink_mac(session, config)
    fopts = b"".join(commands)
    if item is None and not fopts and not must_ack and not must_send:
        return None, discarded
    f_pending = more
    fport: int | None = None
    payload = b""
    mac_in_payload = len(fopts) > 15
    if mac_in_payload:
        fport, payload, fopts = 0, fopts, b""
        f_pending = f_pending or item is not None
        item = None
    elif item is not None and len(item.data) + len(fopts) > max_payload:
        f_pending = True
        item = None
    elif item is not None:
        fport, payload = item.f_port, item.data
    confirmed = item is not None and item.confirmed
    frame = DataFrame.build(
        mtype=MType.CONFIRMED_DATA_DOWN if confirmed else MType.UNCONFIRMED_DATA_DOWN,
        dev_addr=DevAddr(session.dev_addr),
        fcnt=session.n_f_cnt_down,
        nwk_s_key=session.nwk_s_key,
        app_s_key=session.app_s_key,
        fport=fport,
        payload=payload,
        fopts=fopts,
        adr=config.adr_enabled,
        ack=must_ack,
        f_pending=f_pending,
    )
    return DataDownlink(frame.to_bytes(), session.n_f_cnt_down, item, link_adr), discarded
