"""Errors raised by the protocol package.

Every decoder that reads outside bytes raises only these, never a bare ``ValueError``,
``KeyError``, ``construct`` or ``cbor2`` error (ARCHITECTURE.md invariant 2)::

    ProtocolError
    ├── DecodeError          bytes that do not parse (too short, bad CBOR, unknown fPort ...)
    │   └── FrameError       a LoRaWAN PHYPayload that does not parse
    ├── EncodeError          values that cannot be encoded (out of range, wrong type, unknown field)
    ├── MICError             a frame whose MIC does not verify
    ├── FCntError            a frame counter that is replayed or too far ahead
    └── CatalogueError       an unknown message name or a catalogue inconsistency
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CatalogueError",
    "DecodeError",
    "EncodeError",
    "FCntError",
    "FrameError",
    "MICError",
    "ProtocolError",
]


class ProtocolError(Exception):
    """Base of every error the protocol package raises on outside data.

    Keyword arguments are kept as attributes (``dev_eui``, ``f_cnt``, ``fport`` ...) so callers
    can log and count them without parsing the message.
    """

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)


class DecodeError(ProtocolError):
    """Bytes that do not decode."""


class FrameError(DecodeError):
    """A LoRaWAN frame that does not parse."""


class EncodeError(ProtocolError):
    """Values that cannot be encoded."""


class MICError(ProtocolError):
    """A message integrity code that does not verify."""


class FCntError(ProtocolError):
    """A frame counter that is replayed or out of the accepted window."""


class CatalogueError(ProtocolError):
    """An unknown message or field name, or an inconsistent catalogue."""
