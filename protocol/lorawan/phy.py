"""PHYPayload: pick the frame type from the MHDR's MType (LoRaWAN L2 1.0.4 §4.1, §4.2).

``PHYPayload = MHDR | MACPayload | MIC`` or ``MHDR | Join-Request | MIC`` or
``MHDR | Join-Accept`` (L2 §4.1, Figure 5). :meth:`PHYPayload.from_bytes` checks the length
for the MType before it reads any field and returns a :class:`~protocol.lorawan.join.JoinRequest`,
an :class:`~protocol.lorawan.join.EncryptedJoinAccept` or a
:class:`~protocol.lorawan.data.DataFrame`. It raises only :class:`protocol.errors.FrameError`.
"""

from __future__ import annotations

from protocol.errors import FrameError
from protocol.lorawan.data import MAX_PHY_PAYLOAD, DataFrame
from protocol.lorawan.join import EncryptedJoinAccept, JoinRequest
from protocol.lorawan.mhdr import MHDR, MType

__all__ = ["Frame", "PHYPayload"]

Frame = JoinRequest | EncryptedJoinAccept | DataFrame


class PHYPayload:
    """Namespace for decoding any LoRaWAN 1.0.x PHYPayload."""

    @staticmethod
    def mtype(data: bytes) -> MType:
        """The MType of a frame (after checking MHDR's Major)."""
        if not data:
            raise FrameError("empty PHYPayload")
        return MHDR.from_bytes(bytes(data[:1])).mtype

    @staticmethod
    def from_bytes(data: bytes) -> Frame:
        data = bytes(data)
        if len(data) > MAX_PHY_PAYLOAD:
            raise FrameError(f"a PHYPayload is at most {MAX_PHY_PAYLOAD} bytes, got {len(data)}")
        mtype = PHYPayload.mtype(data)
        if mtype == MType.JOIN_REQUEST:
            return JoinRequest.from_bytes(data)
        if mtype == MType.JOIN_ACCEPT:
            return EncryptedJoinAccept.from_bytes(data)
        if mtype.is_data:
            return DataFrame.from_bytes(data)
        if mtype == MType.PROPRIETARY:
            raise FrameError("proprietary frame (MType 111): its format is not LoRaWAN's")
        raise FrameError("MType 110 is RFU")
