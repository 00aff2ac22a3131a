"""The application message catalogue: every message citypack sends on the air, defined once.

Each message (:class:`~protocol.catalogue.model.Message`) has a name, an fPort (unique across both
directions, so an fPort alone names the message), a direction, a periodic flag, and fields with a
CBOR integer key, type, unit, scale, range, default and examples. ``protocol/`` is the only place a
key, scale, unit or range is written (ARCHITECTURE.md invariant 1): the CPython codec
(:mod:`protocol.codec`) reads this catalogue, and :mod:`protocol.codegen` generates the firmware
codec and the ChirpStack JS codec from it.

Schema evolution rule (never break a deployed node or decoder):

1. A field's key, type and scale are never changed and keys are never renumbered or reused; a
   retired field's key stays retired.
2. New fields get new keys (or new bits of a flags word, or new trailing positions of a list item)
   and a default, so an old sender that omits them still decodes.
3. Decoders ignore unknown keys (and unknown flag bits, and extra list-item positions); they fill
   in defaults for omitted fields.
4. ``device_info`` carries ``protocol_version`` (:data:`PROTOCOL_VERSION`), bumped whenever a
   message gains a field or a form, so the gateway knows what a node can send and understand.

Breaking changes. Nodes in the field are not reflashed together, so what a v1 node sends must
decode forever: ``protocol/vectors/payloads-v1.json`` is the frozen v1 set and ``payloads-v2.json``
the v2 one (never regenerated, pinned by their SHA-256), and tests/protocol/test_vectors_v1.py
decodes them with today's catalogue in CPython, on the MicroPython unix port and with the
ChirpStack codec on node, so a change that breaks one fails CI. A change the rules above do not
allow (a key, type, scale or range of an existing field; a new encoding of a message) is made as a
**new message or form on a new fPort**: ``bin_status`` on fPort 10 stays as it is and its compact
form (``Message.compact_fport``, a CBOR array by key) has fPort 12 (protocol version 2); new
firmware sends the new form, the gateway and the ChirpStack codec decode both, and the old one is
retired only when no node sends it any more (its fPort is then never reused). ``PROTOCOL_VERSION``
goes up and a new frozen set (``payloads-v<N>.json``) is added beside the others, never in place of
one.

fPort plan (LoRaWAN L2 1.0.4 §4.3.2, application ports 1..223): 1-9 common uplinks, 10-19 bin
uplinks (12: bin_status's compact form), 20-29 lamp uplinks, 100-109 common downlinks, 110-119
bin downlinks, 120-129 lamp downlinks.
"""

from __future__ import annotations

from protocol.catalogue import bin as _bin
from protocol.catalogue import common as _common
from protocol.catalogue import lamp as _lamp
from protocol.catalogue.common import PROTOCOL_VERSION
from protocol.catalogue.model import Field, ItemField, Message, check_message
from protocol.errors import CatalogueError

__all__ = [
    "BY_FPORT",
    "BY_NAME",
    "COMPACT_FPORTS",
    "MESSAGES",
    "PROTOCOL_VERSION",
    "Field",
    "ItemField",
    "Message",
    "by_fport",
    "message",
]

MESSAGES: tuple[Message, ...] = _common.MESSAGES + _bin.MESSAGES + _lamp.MESSAGES
"""Every message, uplinks and downlinks, in catalogue order."""

BY_NAME: dict[str, Message] = {m.name: m for m in MESSAGES}
BY_FPORT: dict[int, Message] = {m.fport: m for m in MESSAGES}
BY_FPORT.update({m.compact_fport: m for m in MESSAGES if m.compact_fport is not None})
"""Every fPort, a compact form's too, to its message (``message.fport`` is the map form's)."""
COMPACT_FPORTS: frozenset[int] = frozenset(
    m.compact_fport for m in MESSAGES if m.compact_fport is not None
)


def _check_catalogue() -> None:
    for entry in MESSAGES:
        check_message(entry)
    if len(BY_NAME) != len(MESSAGES):
        raise CatalogueError("catalogue: two messages share a name")
    if len(BY_FPORT) != len(MESSAGES) + len(COMPACT_FPORTS):
        raise CatalogueError("catalogue: two messages share an fPort")


_check_catalogue()


def message(name: str) -> Message:
    """The message called ``name``; :class:`CatalogueError` when there is none."""
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        known = ", ".join(BY_NAME)
        raise CatalogueError(
            f"unknown message {name!r}; known: {known}", message_name=name
        ) from None


def by_fport(fport: int) -> Message:
    """The message sent on ``fport``; :class:`CatalogueError` when the port is not ours."""
    try:
        return BY_FPORT[fport]
    except (KeyError, TypeError):
        raise CatalogueError(f"no message on fPort {fport!r}", fport=fport) from None
