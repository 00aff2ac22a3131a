"""What a gateway's TX acknowledgement does to a unicast downlink (ChirpStack
``uplink/txack.rs``; reference/chirpstack.md §3).

On success the device's downlink counter advances (only now: a frame never acknowledged does
not use up a counter, chirpstack#605), a LinkADRReq it carried becomes pending, and a queue item
gives ``txack``; an unconfirmed item then leaves the queue, a confirmed one becomes pending until
the next uplink (``ack`` true with the ACK bit, false without) or, in class C, until
``class_c_timeout`` passes. After the last window failed, ``log`` DOWNLINK_GATEWAY is published
and the item stays queued for a retry. Join-Accepts change nothing here.
"""

from __future__ import annotations

from tools.netsim.eventbus import EventBus
from tools.netsim.state import DeviceState, Inflight

__all__ = ["settle_unicast"]


def settle_unicast(
    state: DeviceState,
    inflight: Inflight,
    failure: str,
    *,
    events: EventBus,
    now: float,
    class_c_timeout_s: float,
) -> bool:
    """Apply the ack (``failure`` "" for sent); True when a class C item now waits for its
    timeout (the scheduler must look again then)."""
    if failure:
        events.log_event(state, "ERROR", "DOWNLINK_GATEWAY", failure)
        if inflight.item is not None:
            inflight.item.f_cnt_down = None  # stays queued for a retry
        return False
    session = state.session
    if inflight.join_accept or session is None:
        return False
    session.n_f_cnt_down = (session.n_f_cnt_down + 1) & 0xFFFFFFFF
    if inflight.link_adr is not None:
        session.pending_link_adr = inflight.link_adr
    item = inflight.item
    if item is None:
        return False
    events.txack(state, inflight, item)
    if item not in state.queue:
        return False
    if not item.confirmed:
        state.queue.remove(item)
        return False
    item.is_pending = True
    if state.enabled_class != "C":
        return False
    item.timeout_at = now + class_c_timeout_s
    return True
