"""CPython encoder and decoder of citypack application payloads (the catalogue's CBOR maps).

Encoding uses cbor2's deterministic (canonical) form, RFC 8949 §4.2.1: shortest integer forms,
definite lengths, map keys in ascending order. Fields at their default are omitted.

Decoding accepts exactly the CBOR subset the generated MicroPython and JavaScript codecs accept
(:mod:`protocol.codegen`), so the three implementations agree on every byte string:

- at most :data:`MAX_PAYLOAD` bytes (the largest LoRaWAN FRMPayload, RP002-1.0.4 §2.4.6), one
  item, no trailing bytes;
- major types 0-5 only (unsigned and negative integers, byte and text strings, arrays, maps): no
  tags (type 6), no floats or simple values (type 7);
- arguments of at most 4 bytes (additional information 0..26): 8-byte arguments are refused as
  huge, 28..30 are reserved, 31 (indefinite length) is refused;
- a length never larger than the bytes that remain; nesting at most :data:`MAX_DEPTH` deep;
- text strings ASCII only (bytes < 0x80), map keys unsigned integers, no duplicate keys.

Non-shortest integer forms are accepted, as generic CBOR decoders do (the shortest form is an
encoder's rule, RFC 8949 §4.1-4.2).
Then the message's own rules: unknown keys are ignored, omitted fields get their defaults,
required fields must be present, every value has its type and range.

Speed: status messages are flat maps of small integers. :func:`decode` reads and checks
those in one pass straight from the bytes, most pairs with one lookup in a per-message table of
pre-checked (key, small value) pairs (faster than ``cbor2.loads`` followed by a walk over its
result); anything it does not recognise (text, arrays, nested or unusual items, any error) goes
to the strict reader (:class:`_Reader` + :func:`_fields`), which decides and words the error.
The tests hold both paths to the same answers on every vector and on random and mutated bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from protocol import catalogue
from protocol.catalogue.model import Field, Message
from protocol.errors import CatalogueError, DecodeError, EncodeError

__all__ = ["MAX_DEPTH", "MAX_PAYLOAD", "Decoded", "decode", "decode_strict", "encode"]

MAX_PAYLOAD: Final = 242
"""Largest application payload accepted (EU868 DR7 / US915 DR4 maximum N, RP002-1.0.4)."""

MAX_DEPTH: Final = 8
"""Deepest nesting of arrays and maps accepted (the catalogue itself needs 3)."""

_MISSING: Final = object()

# Decode plan kinds (small ints: comparisons in the hot loop stay cheap).
_INT: Final = 0
_ENUM: Final = 1
_FLAGS: Final = 2
_STR: Final = 3
_LIST: Final = 4


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded application payload: the message name and every field (defaults filled in)."""

    message: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Spec:
    key: int
    kind: int
    name: str
    lo: int  # raw (on-air) bounds
    hi: int
    scale: int
    default: Any
    extra: Any  # enum choices | ((name, bit), ...) | max_len | (max_items, item fields)


def _plan(msg: Message) -> tuple[_Spec, ...]:
    specs: list[_Spec] = []
    for key in msg.keys:
        group = [f for f in msg.fields if f.key == key]
        first = group[0]
        if first.type == "bool":
            bits = tuple((f.name, f.bit) for f in group)
            specs.append(_Spec(key, _FLAGS, "", 0, 0, 1, 0, bits))
        elif first.type in ("uint", "int"):
            default = _MISSING if first.default is None else first.default
            specs.append(
                _Spec(
                    key,
                    _INT,
                    first.name,
                    first.minimum // first.scale,
                    first.maximum // first.scale,
                    first.scale,
                    default,
                    None,
                )
            )
        elif first.type == "enum":
            default = _MISSING if first.default is None else first.default
            specs.append(
                _Spec(key, _ENUM, first.name, 0, len(first.choices) - 1, 1, default, first.choices)
            )
        elif first.type == "str":
            specs.append(_Spec(key, _STR, first.name, 0, 0, 1, _MISSING, first.max_len))
        else:
            default = _MISSING if first.default is None else first.default
            specs.append(
                _Spec(key, _LIST, first.name, 0, 0, 1, default, (first.max_items, first.item))
            )
    return tuple(specs)


_PLANS: Final[dict[int, tuple[Message, tuple[_Spec, ...]]]] = {
    m.fport: (m, _plan(m)) for m in catalogue.MESSAGES
}


# --------------------------------------------------------------------------- encode


def _as_int(msg: Message, name: str, value: Any) -> int:
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is not int:  # bool is refused too: True is not a level
        raise EncodeError(
            f"{msg.name}: {name} must be an integer, got {value!r}",
            message_name=msg.name,
            field=name,
        )
    return value


def _encode_int(msg: Message, f: Field, value: Any) -> int:
    number = _as_int(msg, f.name, value)
    if not f.minimum <= number <= f.maximum:
        raise EncodeError(
            f"{msg.name}: {f.name} {number} out of range {f.range_text}",
            message_name=msg.name,
            field=f.name,
        )
    # Fixed point: round half up to the nearest step (identical in the generated codecs).
    return (2 * number + f.scale) // (2 * f.scale) if f.scale != 1 else number


def _encode_enum(msg: Message, name: str, choices: tuple[str, ...], value: Any) -> int:
    if type(value) is not str or value not in choices:
        raise EncodeError(
            f"{msg.name}: {name} must be one of {' | '.join(choices)}, got {value!r}",
            message_name=msg.name,
            field=name,
        )
    return choices.index(value)


def _encode_str(msg: Message, f: Field, value: Any) -> str:
    if (
        type(value) is not str
        or len(value) > f.max_len
        or not all(" " <= ch <= "~" for ch in value)
    ):
        raise EncodeError(
            f"{msg.name}: {f.name} must be {f.range_text}, got {value!r}",
            message_name=msg.name,
            field=f.name,
        )
    return value


def _encode_list(msg: Message, f: Field, value: Any) -> list[list[int]]:
    if not isinstance(value, list | tuple) or len(value) > f.max_items:
        raise EncodeError(
            f"{msg.name}: {f.name} must be a list of at most {f.max_items} items",
            message_name=msg.name,
            field=f.name,
        )
    items: list[list[int]] = []
    names = {i.name for i in f.item}
    for index, entry in enumerate(value):
        where = f"{f.name}[{index}]"
        if not isinstance(entry, Mapping):
            raise EncodeError(
                f"{msg.name}: {where} must be an object", message_name=msg.name, field=f.name
            )
        unknown = sorted(set(entry) - names, key=repr)
        if unknown:
            raise EncodeError(
                f"{msg.name}: {where} has unknown field {unknown[0]!r}",
                message_name=msg.name,
                field=f.name,
            )
        row: list[int] = []
        for item in f.item:
            if item.name not in entry:
                raise EncodeError(
                    f"{msg.name}: {where}.{item.name} is missing",
                    message_name=msg.name,
                    field=f.name,
                )
            raw = entry[item.name]
            if item.type == "enum":
                row.append(_encode_enum(msg, f"{where}.{item.name}", item.choices, raw))
                continue
            number = _as_int(msg, f"{where}.{item.name}", raw)
            if not item.minimum <= number <= item.maximum:
                raise EncodeError(
                    f"{msg.name}: {where}.{item.name} {number} out of range "
                    f"{item.minimum}..{item.maximum}",
                    message_name=msg.name,
                    field=f.name,
                )
            row.append(number)
        items.append(row)
    return items


def encode(message: str, fields: Mapping[str, Any]) -> tuple[int, bytes]:
    """Encode ``fields`` of ``message``; return its fPort and the CBOR bytes.

    Raises :class:`CatalogueError` for an unknown message and :class:`EncodeError` for a missing
    required field, an unknown field, a wrong type or a value out of range.
    """
    msg = catalogue.message(message)
    if not isinstance(fields, Mapping):
        raise EncodeError(f"{msg.name}: fields must be an object", message_name=msg.name)
    known = {f.name for f in msg.fields}
    unknown = sorted(str(n) for n in fields if n not in known)
    if unknown:
        raise EncodeError(
            f"{msg.name}: unknown field {unknown[0]!r}; fields: {', '.join(sorted(known))}",
            message_name=msg.name,
            field=unknown[0],
        )
    out: dict[int, Any] = {}
    for f in msg.fields:
        if f.name not in fields:
            if f.required:
                raise EncodeError(
                    f"{msg.name}: required field {f.name!r} is missing",
                    message_name=msg.name,
                    field=f.name,
                )
            continue
        value = fields[f.name]
        if f.type == "bool":
            if type(value) is not bool:
                raise EncodeError(
                    f"{msg.name}: {f.name} must be true or false, got {value!r}",
                    message_name=msg.name,
                    field=f.name,
                )
            if value:
                assert f.bit is not None
                out[f.key] = out.get(f.key, 0) | (1 << f.bit)
            continue
        raw: Any
        if f.type in ("uint", "int"):
            raw = _encode_int(msg, f, value)
            if f.default is not None and raw * f.scale == f.default:
                continue
        elif f.type == "enum":
            raw = _encode_enum(msg, f.name, f.choices, value)
            if f.default is not None and f.choices[raw] == f.default:
                continue
        elif f.type == "str":
            raw = _encode_str(msg, f, value)
        else:
            raw = _encode_list(msg, f, value)
            if not raw:
                continue
        out[f.key] = raw
    return msg.fport, cbor2.dumps(out, canonical=True)


# --------------------------------------------------------------------------- decode


class _Reader:
    """The strict reader of the accepted CBOR subset (the generated codecs' algorithm)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, text: str, at: int | None = None) -> DecodeError:
        offset = self.pos if at is None else at
        return DecodeError(f"bad CBOR at byte {offset}: {text}", offset=offset)

    def item(self, depth: int) -> Any:
        data = self.data
        if self.pos >= len(data):
            raise self.fail("payload ends inside an item")
        start = self.pos
        initial = data[start]
        self.pos += 1
        major = initial >> 5
        info = initial & 0x1F
        if major >= 6:
            raise self.fail("tags, floats and simple values are not used", start)
        if info < 24:
            argument = info
        elif info <= 26:
            width = 1 << (info - 24)
            if self.pos + width > len(data):
                raise self.fail("payload ends inside an integer")
            argument = int.from_bytes(data[self.pos : self.pos + width], "big")
            self.pos += width
        elif info == 27:
            raise self.fail("8-byte integers and lengths are too large", start)
        elif info == 31:
            raise self.fail("indefinite-length items are not accepted", start)
        else:
            raise self.fail(f"reserved additional information {info}", start)
        if major == 0:
            return argument
        if major == 1:
            return -1 - argument
        remaining = len(data) - self.pos
        if major in (2, 3):
            if argument > remaining:
                raise self.fail("string longer than the payload")
            chunk = data[self.pos : self.pos + argument]
            self.pos += argument
            if major == 2:
                return bytes(chunk)
            if not chunk.isascii():
                raise self.fail("text strings must be ASCII")
            return chunk.decode("ascii")
        if depth >= MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH}")
        if major == 4:
            if argument > remaining:
                raise self.fail("array longer than the payload")
            return [self.item(depth + 1) for _ in range(argument)]
        if argument * 2 > remaining:
            raise self.fail("map longer than the payload")
        result: dict[int, Any] = {}
        for _ in range(argument):
            key_pos = self.pos
            key = self.item(depth + 1)
            if type(key) is not int or key < 0:
                self.pos = key_pos
                raise self.fail("map keys must be unsigned integers")
            if key in result:
                self.pos = key_pos
                raise self.fail(f"duplicate map key {key}")
            result[key] = self.item(depth + 1)
        return result


def _read_strict(data: bytes) -> Any:
    reader = _Reader(data)
    value = reader.item(0)
    if reader.pos != len(data):
        raise reader.fail(f"{len(data) - reader.pos} trailing bytes after the payload")
    return value


def _bad(msg: Message, name: str, value: Any, expected: str) -> DecodeError:
    return DecodeError(
        f"{msg.name}: {name} {value!r} is not {expected}", message_name=msg.name, field=name
    )


def _fields(msg: Message, specs: tuple[_Spec, ...], obj: Any) -> dict[str, Any]:
    if type(obj) is not dict:
        raise DecodeError(f"{msg.name}: payload is not a CBOR map", message_name=msg.name)
    out: dict[str, Any] = {}
    get = obj.get
    for spec in specs:
        value = get(spec.key, _MISSING)
        kind = spec.kind
        if value is _MISSING:
            if kind == _FLAGS:
                for name, _bit in spec.extra:
                    out[name] = False
            elif spec.default is _MISSING:
                raise DecodeError(
                    f"{msg.name}: required field {spec.name!r} (key {spec.key}) is missing",
                    message_name=msg.name,
                    field=spec.name,
                )
            elif kind == _LIST:
                out[spec.name] = []
            else:
                out[spec.name] = spec.default
            continue
        if kind == _INT:
            if type(value) is not int or not spec.lo <= value <= spec.hi:
                lo, hi = spec.lo * spec.scale, spec.hi * spec.scale
                shown = value * spec.scale if type(value) is int else value
                raise _bad(msg, spec.name, shown, f"an integer in {lo}..{hi}")
            out[spec.name] = value * spec.scale if spec.scale != 1 else value
        elif kind == _FLAGS:
            if type(value) is not int or value < 0:
                raise _bad(msg, "flags", value, "an unsigned integer")
            for name, bit in spec.extra:
                out[name] = bool(value >> bit & 1)
        elif kind == _ENUM:
            if type(value) is not int or not 0 <= value <= spec.hi:
                raise _bad(msg, spec.name, value, f"an index 0..{spec.hi}")
            out[spec.name] = spec.extra[value]
        elif kind == _STR:
            if type(value) is not str or len(value) > spec.extra or not value.isprintable():
                raise _bad(msg, spec.name, value, f"printable ASCII of at most {spec.extra}")
            out[spec.name] = value
        else:
            out[spec.name] = _decode_list(msg, spec, value)
    return out


def _decode_list(msg: Message, spec: _Spec, value: Any) -> list[dict[str, Any]]:
    max_items, item_fields = spec.extra
    if type(value) is not list or len(value) > max_items:
        raise _bad(msg, spec.name, value, f"an array of at most {max_items} items")
    items: list[dict[str, Any]] = []
    for index, row in enumerate(value):
        # Extra trailing positions are fields a newer sender added: ignored (evolution rule 3).
        if type(row) is not list or len(row) < len(item_fields):
            raise _bad(msg, f"{spec.name}[{index}]", row, f"an array of {len(item_fields)}")
        entry: dict[str, Any] = {}
        for position, item in enumerate(item_fields):
            raw = row[position]
            lo, hi = item.bounds
            if type(raw) is not int or not lo <= raw <= hi:
                raise _bad(msg, f"{spec.name}[{index}].{item.name}", raw, f"in {lo}..{hi}")
            entry[item.name] = item.choices[raw] if item.type == "enum" else raw
        items.append(entry)
    return items


_BAIL: Final = 0  # unpacking an int raises TypeError: keys the fast path leaves to the strict one


@dataclass(frozen=True, slots=True)
class _Flat:
    """The fast path's view of a message whose fields are all integers, enums or flags."""

    table: tuple[Any, ...]  # by key byte 0..255: spec, None (unknown key) or _BAIL
    template: dict[str, Any]  # every field in catalogue order, defaults filled in
    required: int  # bit mask of the required keys
    quick: dict[int, tuple[str | None, Any, int]]  # see _quick_table


def _flat_plan(msg: Message, specs: tuple[_Spec, ...]) -> _Flat | None:
    if any(spec.kind in (_STR, _LIST) for spec in specs):
        return None
    table: list[Any] = [None] * 24 + [_BAIL] * 232
    required = 0
    for spec in specs:
        if spec.kind == _FLAGS:
            table[spec.key] = (_FLAGS, "", 0, 0xFFFF_FFFF, 1, spec.extra)
        else:
            # kind 3 in this table: an integer with a scale (kept apart to save a multiply)
            kind = 3 if spec.kind == _INT and spec.scale != 1 else spec.kind
            table[spec.key] = (kind, spec.name, spec.lo, spec.hi, spec.scale, spec.extra)
            if spec.default is _MISSING:
                required |= 1 << spec.key
    template = {f.name: (False if f.type == "bool" else f.default) for f in msg.fields}
    quick = _quick_table(table) if msg.direction == "up" else {}
    return _Flat(tuple(table), template, required, quick)


def _quick_table(table: list[Any]) -> dict[int, tuple[str | None, Any, int]]:
    """Every (key, small value) pair of a message, already checked and converted.

    Indexed by ``key << 8 | initial byte`` for values held in the initial byte (-24..23) and by
    ``0x10000 | key << 8 | byte`` for the one-byte-argument form (0..255): most fields of a
    status uplink then cost one dict lookup. An entry is (field, value, key bit), or (None,
    {flag: bool}, key bit) for a flags word. Only uplinks get one (a few kB each).
    """
    quick: dict[int, tuple[str | None, Any, int]] = {}
    for key in range(24):
        spec = table[key]
        if spec is None:
            continue
        kind, name, lo, hi, scale, extra = spec
        if kind == _FLAGS:  # the combinations of the known flags; other bits take the long way
            hi = (1 << (max(bit for _, bit in extra) + 1)) - 1
        for raw in range(max(lo, -24), min(hi, 255) + 1):
            entry: tuple[str | None, Any, int]
            if kind == _FLAGS:
                entry = (None, {flag: raw >> bit & 1 == 1 for flag, bit in extra}, 1 << key)
            elif kind == _ENUM:
                entry = (name, extra[raw], 1 << key)
            else:
                entry = (name, raw * scale, 1 << key)
            if raw < 24:
                quick[key << 8 | (raw if raw >= 0 else 0x1F - raw)] = entry
            if raw >= 0:
                quick[0x10000 | key << 8 | raw] = entry
    return quick


_FLAT: Final[dict[int, _Flat]] = {
    fport: flat
    for fport, (msg, specs) in _PLANS.items()
    if (flat := _flat_plan(msg, specs)) is not None
}


_FAST: Final[dict[int, tuple[str, str, tuple[Any, ...], dict[str, Any], int, dict[int, Any]]]] = {
    fport: (
        _PLANS[fport][0].name,
        _PLANS[fport][0].direction,
        f.table,
        f.template,
        f.required,
        f.quick,
    )
    for fport, f in _FLAT.items()
}


_new_decoded = object.__new__
_set_message = Decoded.__dict__["message"].__set__
_set_fields = Decoded.__dict__["fields"].__set__


def _decoded(message: str, fields: dict[str, Any]) -> Decoded:
    """``Decoded(message, fields)`` without the frozen ``__init__``'s two ``object.__setattr__``
    calls: the hot path builds millions of these. Writes the slots once, before anyone sees it."""
    result: Decoded = _new_decoded(Decoded)
    _set_message(result, message)
    _set_fields(result, fields)
    return result


def _lookup(fport: int, data: Any, direction: str | None) -> tuple[Message, tuple[_Spec, ...]]:
    if type(fport) is not int:
        raise DecodeError(f"fPort must be an integer, got {fport!r}", fport=fport)
    try:
        msg, specs = _PLANS[fport]
    except KeyError:
        raise DecodeError(f"no citypack message on fPort {fport}", fport=fport) from None
    if direction is not None and msg.direction != direction:
        if direction not in ("up", "down"):
            raise DecodeError(f"direction must be 'up' or 'down', got {direction!r}")
        raise DecodeError(
            f"fPort {fport} carries the {msg.direction}link {msg.name}, "
            f"not {'an uplink' if direction == 'up' else 'a downlink'}",
            fport=fport,
            message_name=msg.name,
        )
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"payload must be bytes, got {type(data).__name__}", fport=fport)
    if not data:
        raise DecodeError(f"{msg.name}: empty payload", fport=fport, message_name=msg.name)
    if len(data) > MAX_PAYLOAD:
        raise DecodeError(
            f"{msg.name}: payload of {len(data)} bytes is longer than {MAX_PAYLOAD}",
            fport=fport,
            message_name=msg.name,
        )
    return msg, specs


def decode(fport: int, data: bytes, direction: str | None = "up") -> Decoded:
    """Decode the payload received on ``fport``.

    ``direction`` is ``"up"``, ``"down"`` or ``None`` (either). For any input this returns a
    :class:`Decoded` or raises :class:`DecodeError`, nothing else.

    The body is the fast path for flat maps of integers (every status uplink), inlined by hand
    because it is the gateway's hot path; whatever it does not recognise, or any error, goes to
    :func:`decode_strict`, which decides and words the error. It accepts a subset of what the
    strict path accepts and decodes it the same way (the tests hold both to that).
    """
    try:
        name, fast_direction, table, template, required, quick = _FAST[fport]
    except (KeyError, TypeError):
        return decode_strict(fport, data, direction)
    if (
        type(data) is not bytes
        or type(fport) is not int  # 10.0 and True find their dict entry too
        or (direction != fast_direction and direction is not None)
    ):
        return decode_strict(fport, data, direction)
    b = data
    n = len(b)
    if not 0 < n <= MAX_PAYLOAD:
        return decode_strict(fport, data, direction)
    count = b[0] - 0xA0  # a map header with fewer than 24 pairs
    if not 0 <= count < 24:
        return decode_strict(fport, data, direction)
    out = template.copy()
    seen = 0
    pos = 1
    try:
        left = count  # a countdown is cheaper than a range iterator for a handful of pairs
        while left:
            left -= 1
            key = b[pos]
            initial = b[pos + 1]
            # The quick table answers most pairs of a status uplink in one lookup; a miss (an
            # unknown key, a value out of range, a flags word with unknown bits) takes the
            # long way below, which decides.
            if initial < 24 or 0x20 <= initial < 0x38:
                hit = quick.get(key << 8 | initial)
                if hit is not None:
                    field, decoded, bit = hit
                    seen |= bit
                    pos += 2
                    if field is None:
                        out.update(decoded)
                    else:
                        out[field] = decoded
                    continue
                value = initial if initial < 24 else 0x1F - initial
                pos += 2
            elif initial == 24:
                value = b[pos + 2]
                hit = quick.get(0x10000 | key << 8 | value)
                if hit is not None:
                    field, decoded, bit = hit
                    seen |= bit
                    pos += 3
                    if field is None:
                        out.update(decoded)
                    else:
                        out[field] = decoded
                    continue
                pos += 3
            elif initial == 25:
                value = b[pos + 2] << 8 | b[pos + 3]
                pos += 4
            elif initial == 0x38:
                value = -1 - b[pos + 2]
                pos += 3
            elif initial == 0x39:
                value = -1 - (b[pos + 2] << 8 | b[pos + 3])
                pos += 4
            elif initial == 26:
                value = b[pos + 2] << 24 | b[pos + 3] << 16 | b[pos + 4] << 8 | b[pos + 5]
                pos += 6
            elif initial == 0x3A:
                value = -1 - (b[pos + 2] << 24 | b[pos + 3] << 16 | b[pos + 4] << 8 | b[pos + 5])
                pos += 6
            else:
                return decode_strict(fport, data, direction)
            spec = table[key]  # keys 24..255 (and non-integer keys) are _BAIL: TypeError
            seen |= 1 << key
            if spec is None:
                continue  # an unknown key holding an integer: ignored (evolution rule 3)
            kind, field, lo, hi, scale, extra = spec
            if not lo <= value <= hi:
                return decode_strict(fport, data, direction)
            if kind == 0:  # _INT
                out[field] = value
            elif kind == 1:  # _ENUM
                out[field] = extra[value]
            elif kind == 3:  # _INT with a scale
                out[field] = value * scale
            else:
                for flag, flag_bit in extra:
                    out[flag] = value >> flag_bit & 1 == 1
    except (IndexError, TypeError):  # ran off the end, or a key the table bails on
        return decode_strict(fport, data, direction)
    # Fewer distinct keys than pairs means a duplicate key; the strict path refuses it.
    if pos != n or seen.bit_count() != count or seen & required != required:
        return decode_strict(fport, data, direction)
    result: Decoded = _new_decoded(Decoded)
    _set_message(result, name)
    _set_fields(result, out)
    return result


def decode_strict(fport: int, data: bytes, direction: str | None = "up") -> Decoded:
    """:func:`decode` through the pure-Python reader only (the reference the tests compare)."""
    msg, specs = _lookup(fport, data, direction)
    return _decoded(msg.name, _fields(msg, specs, _read_strict(bytes(data))))


def message_for(fport: int) -> Message:
    """The catalogue message on ``fport``; :class:`DecodeError` when the port is not ours."""
    try:
        return catalogue.by_fport(fport)
    except CatalogueError as exc:
        raise DecodeError(str(exc), fport=fport) from None
