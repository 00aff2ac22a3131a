"""The OTAA join server (L2 §6.2.4-§6.2.6; ChirpStack ``uplink/join.rs``).

The Join-Request MIC is checked with the AppKey; DevNonce must be greater than the last one
accepted for the device (the 1.0.4 counter rule, §6.2.5); JoinNonce increments per device; a
DevAddr is allocated in NetID type 0's range (§6.1.1); the Join-Accept carries RX1DROffset,
RX2 DR, RxDelay and the EU868 CFList (§6.2.6, RP002 §2.2.5) and is encrypted with the AppKey.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass

from protocol.lorawan.join import CFListFrequencies, DLSettings, JoinAccept, JoinRequest
from protocol.lorawan.keys import DevAddr, NetID, derive_session_keys
from tools.netsim import region
from tools.netsim.config import NetsimConfig
from tools.netsim.state import DeviceState, Session

__all__ = ["JoinRefused", "accept_join", "allocate_dev_addr"]


@dataclass(frozen=True)
class JoinRefused:
    """Why a Join-Request gets no answer: a ChirpStack ``log`` event's code and words."""

    code: str
    description: str
    context: dict[str, str]


def allocate_dev_addr(net_id: int, rnd: random.Random, used: Container[int]) -> int:
    """A free DevAddr of NetID type 0: 0b0 | NwkID (6 bits) | NwkAddr (25 bits) (L2 §6.1.1)."""
    nwk_id = net_id & 0x3F
    while True:
        addr = (nwk_id << 25) | rnd.getrandbits(25)
        if addr not in used:
            return addr


def accept_join(
    state: DeviceState,
    request: JoinRequest,
    uplink_dr: int,
    allocate: Callable[[], int],
    config: NetsimConfig,
) -> bytes | JoinRefused:
    """Check a Join-Request; on success start the new session in ``state`` (its DevAddr from
    ``allocate``, called only for an accepted request) and return the encrypted Join-Accept."""
    app_key = state.device.app_key
    if not request.mic_ok(app_key):
        return JoinRefused("UPLINK_MIC", "MIC of join-request is invalid", {})
    nonce = request.dev_nonce
    if state.last_dev_nonce is not None and nonce <= state.last_dev_nonce:
        # L2 1.0.4 §6.2.5: DevNonce is a counter; the server drops a non-incremented one.
        return JoinRefused(
            "OTAA",
            f"DevNonce {nonce} is not greater than the last used {state.last_dev_nonce}: "
            "DevNonce has already been used",
            {"dev_nonce": str(nonce)},
        )
    state.last_dev_nonce = nonce
    join_nonce = state.join_nonce
    state.join_nonce = (state.join_nonce + 1) & 0xFFFFFF
    dev_addr = allocate()
    net_id = NetID(config.net_id)
    keys = derive_session_keys(app_key, join_nonce, net_id, nonce)
    accept = JoinAccept.build(
        app_key,
        join_nonce=join_nonce,
        net_id=net_id,
        dev_addr=DevAddr(dev_addr),
        dl_settings=DLSettings(config.rx1_dr_offset, config.rx2_dr),
        rx_delay=config.rx1_delay_s,
        cflist=CFListFrequencies(region.EXTRA_CHANNELS_HZ),
    )
    session = Session(
        dev_addr=dev_addr,
        nwk_s_key=keys.nwk_s_key.to_bytes(),
        app_s_key=keys.app_s_key.to_bytes(),
        dr=uplink_dr,
    )
    session.history = deque(maxlen=max(config.adr_history, 1))
    state.session = session
    if config.flush_queue_on_activate:
        state.queue.clear()
    return accept.encrypt(app_key)
