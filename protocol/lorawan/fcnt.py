"""32-bit frame counter reconstruction from the 16 bits on the air (LoRaWAN L2 1.0.4 §4.3.1.5).

Only the 16 least significant bits of FCntUp/FCntDown travel in the FHDR; the MIC and the
encryption use all 32 (L2 §4.3.1.5, §4.3.3, §4.4). A receiver infers the high bits from the last
counter it accepted. The rule is LoRaMac-node's ``LoRaMacCryptoGetFCntDown``
(Lora-net/LoRaMac-node ``src/mac/LoRaMacCrypto.c``):

- nothing received yet (the first downlink after a join): the 16-bit value is taken as is;
- ``diff = fcnt16 - (last & 0xFFFF)``; ``diff > 0`` → ``last + diff``;
- ``diff == 0`` → a duplicate: rejected (:class:`protocol.errors.FCntError`, replay);
- ``diff < 0`` → one 16-bit rollover is assumed: ``(last & 0xFFFF0000) + 0x10000 + fcnt16``.

A counter that would pass 0xFFFFFFFF is rejected: the session must be renewed (L2 §4.3.1.5).
LoRaWAN 1.0.2/1.0.3 also bounded the step with MAX_FCNT_GAP = 16384; pass ``max_gap`` to apply it.
"""

from __future__ import annotations

from protocol.errors import EncodeError, FCntError

__all__ = ["MAX_FCNT_GAP", "reconstruct_fcnt"]

MAX_FCNT_GAP = 16384  # LoRaWAN 1.0.2 §4.3.1.5 / RP 1.0.2 (dropped in 1.0.4)
_MAX_FCNT = 0xFFFFFFFF


def reconstruct_fcnt(last: int | None, fcnt16: int, *, max_gap: int | None = None) -> int:
    """The full 32-bit counter of a frame whose FHDR carries ``fcnt16``.

    ``last`` is the last accepted full counter, or ``None`` when nothing was received in this
    session. Raises :class:`FCntError` (with ``f_cnt`` and ``last``) for a replay, a counter past
    32 bits or a step larger than ``max_gap``.
    """
    if not 0 <= fcnt16 <= 0xFFFF:
        raise EncodeError(f"the on-air FCnt is 16 bits, got {fcnt16}")
    if last is None:
        return fcnt16
    if not 0 <= last <= _MAX_FCNT:
        raise EncodeError(f"the last FCnt is a 32-bit counter, got {last}")
    diff = fcnt16 - (last & 0xFFFF)
    if diff > 0:
        full = last + diff
    elif diff == 0:
        raise FCntError(f"FCnt {last} received again: duplicate or replay", f_cnt=last, last=last)
    else:
        full = (last & 0xFFFF0000) + 0x10000 + fcnt16
    if full > _MAX_FCNT:
        raise FCntError(
            "FCnt would pass 0xFFFFFFFF: the session is exhausted and must be renewed",
            f_cnt=full,
            last=last,
        )
    if max_gap is not None and full - last > max_gap:
        raise FCntError(
            f"FCnt {full} is {full - last} ahead of {last}, more than MAX_FCNT_GAP {max_gap}",
            f_cnt=full,
            last=last,
        )
    return full
