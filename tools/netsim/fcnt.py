"""The data-uplink frame counter and MIC check (L2 §4.3.1.5, §4.4; ChirpStack
``uplink/data.rs`` and ``storage/device_session.rs`` ``get_for_phypayload_and_incr_f_cnt_up``).

The 32-bit FCnt is reconstructed from the 16 bits on the air and the last counter
(``protocol.lorawan.fcnt``) and the MIC is checked with it. A counter that did not increase is
a retransmission (UPLINK_F_CNT_RETRANSMISSION), one that went back and still verifies is a
device reset (UPLINK_F_CNT_RESET), both WARNING; anything else is UPLINK_MIC (ERROR).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import FCntError
from protocol.lorawan.data import DataFrame
from protocol.lorawan.fcnt import reconstruct_fcnt
from tools.netsim.state import Session

__all__ = ["UplinkRefused", "check_uplink"]


@dataclass(frozen=True)
class UplinkRefused:
    """An uplink that gets no ``up``: the ``log`` event ChirpStack publishes instead."""

    level: str
    code: str
    description: str
    context: dict[str, str]


def check_uplink(session: Session, frame: DataFrame, dedup_id: str) -> int | UplinkRefused:
    """The frame's full 32-bit FCnt if its MIC verifies with a new counter."""
    last = session.last_f_cnt
    f16 = frame.fcnt16
    try:
        full = reconstruct_fcnt(last, f16)
    except FCntError:
        full = None
    if full is not None and frame.mic_ok(session.nwk_s_key, full):
        return full
    if last is not None and f16 == last & 0xFFFF and frame.mic_ok(session.nwk_s_key, last):
        return UplinkRefused(
            "WARNING",
            "UPLINK_F_CNT_RETRANSMISSION",
            "Uplink was flagged as re-transmission / frame-counter did not increment",
            {"deduplication_id": dedup_id, "f_cnt_up": str(last)},
        )
    base = (last or 0) & 0xFFFF0000
    candidates = sorted({f16, base | f16})
    reset = next(
        (c for c in candidates if c <= (last or 0) and frame.mic_ok(session.nwk_s_key, c)),
        None,
    )
    if reset is not None:
        return UplinkRefused(
            "WARNING",
            "UPLINK_F_CNT_RESET",
            "Frame-counter reset or rollover detected",
            {"deduplication_id": dedup_id, "f_cnt_up": str(reset)},
        )
    return UplinkRefused(
        "ERROR", "UPLINK_MIC", "MIC of uplink frame is invalid", {"deduplication_id": dedup_id}
    )
