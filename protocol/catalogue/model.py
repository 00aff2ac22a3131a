"""The shapes of the message catalogue: messages, fields and their on-air encoding.

A message is one CBOR map (RFC 8949 §3.1 major type 5) whose keys are small unsigned integers
(0..23 fit the initial byte, RFC 8949 §3.3), sent on its own fPort (LoRaWAN L2 1.0.4 §4.3.2:
FPort 1..223 are application-specific). The field kinds and how each sits on the air:

``uint`` / ``int``
    an integer in user units; on the air ``round_half_up(value / scale)`` (fixed point with a step
    of ``scale`` units), so that typical values fit the one-byte CBOR forms.
``bool``
    one bit of a small unsigned integer shared by every bool with the same key (a flags word).
``enum``
    the index of the value in ``choices``.
``str``
    a CBOR text string of printable ASCII, at most ``max_len`` characters.
``list``
    a CBOR array of at most ``max_items`` items; each item is a CBOR array of the ``item`` struct's
    fields by position (more compact than a map; positions are never reused).

A field with a ``default`` is omitted on the air when it has that value and filled in by decoders
when absent; a field without one (``required``) must always be present. The vocabulary follows
TALQ 2.7.1 and uCIFI (OMA LwM2M registry objects 3410-3460).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from protocol.errors import CatalogueError

FieldType = Literal["uint", "int", "bool", "enum", "str", "list"]
ItemType = Literal["uint", "int", "enum"]
Direction = Literal["up", "down"]
Device = Literal["bin", "lamp", "common"]

UINT32_MAX = 0xFFFF_FFFF
INT_LIMIT = 0xFFFF_FFFF
"""On-air integers use at most a 4-byte CBOR argument (additional information 26)."""

RESERVED_NAMES = frozenset({"message", "fport"})
"""Names a field may not take: the ChirpStack codec puts ``message`` beside the fields."""


@dataclass(frozen=True, slots=True)
class ItemField:
    """One position of a list item (a struct sent as a CBOR array)."""

    name: str
    type: ItemType
    description: str
    unit: str = ""
    minimum: int = 0
    maximum: int = 0
    choices: tuple[str, ...] = ()

    @property
    def bounds(self) -> tuple[int, int]:
        if self.type == "enum":
            return 0, len(self.choices) - 1
        return self.minimum, self.maximum


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message.

    ``minimum``/``maximum`` are in user units (already multiplied by ``scale``). ``default`` is
    ``None`` for a required field. For ``bool`` fields ``bit`` is the bit of the flags word at
    ``key``; the flags word is omitted when every bit is clear (all bool defaults are ``False``).
    """

    name: str
    key: int
    type: FieldType
    description: str
    unit: str = ""
    scale: int = 1
    minimum: int = 0
    maximum: int = 0
    default: Any = None
    choices: tuple[str, ...] = ()
    bit: int | None = None
    max_len: int = 0
    max_items: int = 0
    item: tuple[ItemField, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is None

    @property
    def range_text(self) -> str:
        """The accepted values in words, used by error messages and `codec list`."""
        if self.type in ("uint", "int"):
            step = f" in steps of {self.scale}" if self.scale != 1 else ""
            return f"{self.minimum}..{self.maximum}{step}"
        if self.type == "enum":
            return " | ".join(self.choices)
        if self.type == "bool":
            return "true | false"
        if self.type == "str":
            return f"printable ASCII, at most {self.max_len} characters"
        return f"at most {self.max_items} items"


@dataclass(frozen=True, slots=True)
class Message:
    """One application message: its fPort, direction, fields and examples.

    ``examples`` holds at least ``typical``, ``minimum`` and ``maximum`` (more edge cases may be
    added); each is the fields dict that :func:`protocol.codec.encode` takes.
    """

    name: str
    fport: int
    direction: Direction
    device: Device
    periodic: bool
    description: str
    fields: tuple[Field, ...]
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)
    compact_fport: int | None = None
    """fPort of the message's compact form, or None. The compact form is a CBOR array of the
    on-air values by key (key k at position k; flags as their word), trailing values at their
    default left off: no keys on the air. It decodes to the same message and fields."""
    compact_limits: tuple[tuple[str, int, int], ...] = ()
    """(field, minimum, maximum) narrower than the field's range that the compact form takes, so
    its worst case stays small; a value beyond them is sent in the map form."""

    def field(self, name: str) -> Field:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise CatalogueError(f"{self.name} has no field {name!r}", message_name=self.name)

    @property
    def keys(self) -> tuple[int, ...]:
        """The distinct on-air keys, ascending (the canonical order, RFC 8949 §4.2.1)."""
        return tuple(sorted({f.key for f in self.fields}))


def check_message(message: Message) -> None:
    """Refuse a catalogue entry that would encode ambiguously; run at import time."""

    def fail(text: str) -> CatalogueError:
        return CatalogueError(f"catalogue: {message.name}: {text}", message_name=message.name)

    if not 1 <= message.fport <= 223:
        raise fail(f"fPort {message.fport} outside the application range 1..223 (L2 §4.3.2)")
    names = [f.name for f in message.fields]
    if len(set(names)) != len(names):
        raise fail("duplicate field names")
    by_key: dict[int, list[Field]] = {}
    for f in message.fields:
        by_key.setdefault(f.key, []).append(f)
        if f.name in RESERVED_NAMES:
            raise fail(f"field name {f.name!r} is reserved")
        if not 0 <= f.key <= 23:
            raise fail(f"{f.name}: key {f.key} must be 0..23 (one-byte CBOR key)")
        if f.scale < 1:
            raise fail(f"{f.name}: scale must be a positive integer")
        if f.type in ("uint", "int"):
            if f.minimum > f.maximum:
                raise fail(f"{f.name}: minimum above maximum")
            if f.minimum % f.scale or f.maximum % f.scale:
                raise fail(f"{f.name}: range must be multiples of the scale")
            if f.type == "uint" and f.minimum < 0:
                raise fail(f"{f.name}: uint with a negative minimum")
            if max(abs(f.minimum), abs(f.maximum)) // f.scale > INT_LIMIT:
                raise fail(f"{f.name}: range needs more than a 4-byte CBOR argument")
            if f.default is not None and (
                not f.minimum <= f.default <= f.maximum or f.default % f.scale
            ):
                raise fail(f"{f.name}: default outside the range or not a step")
        if f.type == "enum":
            if not f.choices:
                raise fail(f"{f.name}: enum without choices")
            if f.default is not None and f.default not in f.choices:
                raise fail(f"{f.name}: default not one of the choices")
        if f.type == "bool" and (f.bit is None or not 0 <= f.bit <= 15 or f.default is not False):
            raise fail(f"{f.name}: bool needs a bit 0..15 and the default False")
        if f.type == "str" and not 1 <= f.max_len <= 64:
            raise fail(f"{f.name}: str needs max_len 1..64")
        if f.type == "list" and (not f.item or f.max_items < 1 or f.default not in (None, ())):
            raise fail(f"{f.name}: list needs item fields, max_items and default () or None")
    for key, group in by_key.items():
        if len(group) > 1:
            if any(f.type != "bool" for f in group):
                raise fail(f"key {key} shared by fields that are not all bool flags")
            bits = [f.bit for f in group]
            if len(set(bits)) != len(bits):
                raise fail(f"key {key}: two flags on the same bit")
    for label in ("typical", "minimum", "maximum"):
        if label not in message.examples:
            raise fail(f"missing the {label!r} example")
    if message.compact_fport is not None:
        if not 1 <= message.compact_fport <= 223 or message.compact_fport == message.fport:
            raise fail("compact fPort outside 1..223 or equal to the fPort")
        if message.keys != tuple(range(len(message.keys))):
            raise fail("a compact form needs keys 0, 1, 2 ... (key = array position)")
        if any(f.type in ("str", "list") for f in message.fields):
            raise fail("a compact form takes integers, enums and flags only")
    for name, lo, hi in message.compact_limits:
        f = message.field(name)
        if message.compact_fport is None or f.type not in ("uint", "int"):
            raise fail(f"compact limit on {name!r}: not an integer field of a compact form")
        if not f.minimum <= lo <= hi <= f.maximum or lo % f.scale or hi % f.scale:
            raise fail(f"compact limit on {name!r} outside its range or not in steps")
