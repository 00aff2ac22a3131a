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

Speed: status messages are flat maps of integers, sent canonically. :func:`decode` reads those
in one pass straight from the bytes with a straight-line decoder generated per message at import
(:func:`_canonical_source`; faster than ``cbor2.loads`` followed by a walk over its result);
anything else (another key order, unknown keys, longer forms, text, arrays, any error) goes to
the strict reader (:class:`_Reader` + :func:`_fields`), which decides and words the error.
The tests hold both paths to the same answers on every vector and on random and mutated bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from protocol import catalogue
from protocol.catalogue.model import Field, Message
from protocol.errors import CatalogueError, DecodeError, EncodeError

__all__ = [
    "MAX_DEPTH",
    "MAX_PAYLOAD",
    "Decoded",
    "decode",
    "decode_strict",
    "encode",
    "encode_compact",
]

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
_PLANS.update({port: _PLANS[catalogue.BY_FPORT[port].fport] for port in catalogue.COMPACT_FPORTS})


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
    return msg.fport, cbor2.dumps(_raw_values(msg, fields), canonical=True)


def _default_raw(f: Field) -> Any:
    if f.type == "bool":
        return 0
    if f.type == "enum":
        return None if f.default is None else f.choices.index(f.default)
    return None if f.default is None else f.default // f.scale


def encode_compact(message: str, fields: Mapping[str, Any]) -> tuple[int, bytes]:
    """Encode ``fields`` in the message's compact form (``Message.compact_fport``): a CBOR array
    of the on-air values by key, trailing defaults left off. :class:`EncodeError` when the message
    has no compact form or a value is beyond its ``compact_limits`` (send the map form then)."""
    msg = catalogue.message(message)
    if msg.compact_fport is None:
        raise EncodeError(f"{msg.name} has no compact form", message_name=msg.name)
    raw = _raw_values(msg, fields)
    for name, lo, hi in msg.compact_limits:
        f = msg.field(name)
        value = fields.get(name, f.default)
        if not lo <= value <= hi:
            raise EncodeError(
                f"{msg.name}: {name} {value} is beyond the compact form's {lo}..{hi}",
                message_name=msg.name,
                field=name,
            )
    values = []
    defaults = []
    for key in msg.keys:
        first = next(f for f in msg.fields if f.key == key)
        default = _default_raw(first)
        values.append(raw.get(key, default))
        defaults.append(default)
    while values and defaults[-1] is not None and values[-1] == defaults[-1]:
        values.pop()
        defaults.pop()
    return msg.compact_fport, cbor2.dumps(values, canonical=True)


def _raw_values(msg: Message, fields: Mapping[str, Any]) -> dict[int, Any]:
    """The on-air value of every field not at its default, by key (validated)."""
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
    return out


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


def _forms(lo: int, hi: int) -> list[tuple[str, str, int]]:
    """The shortest CBOR integer forms a raw value in lo..hi can take (RFC 8949 §3.1, §4.2.1):
    (condition on the initial byte, expression of the value, bytes the item takes)."""
    forms: list[tuple[str, str, int]] = []
    if hi >= 0:
        forms.append(("initial < 24", "initial", 2))
    if hi >= 24:
        forms.append(("initial == 24", "b[pos + 2]", 3))
    if hi >= 0x100:
        forms.append(("initial == 25", "b[pos + 2] << 8 | b[pos + 3]", 4))
    if hi >= 0x10000:
        forms.append(
            (
                "initial == 26",
                "b[pos + 2] << 24 | b[pos + 3] << 16 | b[pos + 4] << 8 | b[pos + 5]",
                6,
            )
        )
    if lo < 0:
        forms.append(("0x20 <= initial < 0x38", "0x1F - initial", 2))
    if lo < -24:
        forms.append(("initial == 0x38", "-1 - b[pos + 2]", 3))
    if lo < -0x100:
        forms.append(("initial == 0x39", "-1 - (b[pos + 2] << 8 | b[pos + 3])", 4))
    if lo < -0x10000:
        forms.append(
            (
                "initial == 0x3A",
                "-1 - (b[pos + 2] << 24 | b[pos + 3] << 16 | b[pos + 4] << 8 | b[pos + 5])",
                6,
            )
        )
    return forms


def _canonical_source(fport: int, specs: tuple[_Spec, ...]) -> str | None:
    """Python source of a decoder for the canonical encoding of one flat message.

    It walks the keys in ascending order (the only order a canonical encoder writes), each value
    in its shortest form, checks the range with constants written in, and stores into ``out``
    (a copy of the defaults). It returns False for anything else (another key order, unknown
    keys, longer forms, text, arrays, out-of-range values, trailing bytes, a wrong pair count),
    and the caller then asks the strict reader, which accepts what is valid and words the error.
    Generated at import because straight-line code with constants is what makes the gateway's
    hot path fast; the tests hold it to the strict reader on every vector and on random and
    mutated bytes.
    """
    if any(spec.kind in (_STR, _LIST) for spec in specs):
        return None
    lines = [
        f"def _canonical_{fport}(b, out):",
        "    n = len(b)",
        "    count = b[0] - 0xA0",
        "    pairs = 0",
        "    pos = 1",
    ]
    for spec in specs:
        required = spec.kind != _FLAGS and spec.default is _MISSING
        lo, hi = (0, 0xFFFF_FFFF) if spec.kind == _FLAGS else (spec.lo, spec.hi)
        lines.append(f"    # key {spec.key}: {spec.name or 'flags'}")
        if required:
            lines.append(f"    if b[pos] != {spec.key}:")
            lines.append("        return False")
            body = "    "
        else:
            lines.append(f"    if pos < n and b[pos] == {spec.key}:")
            body = "        "
        lines.append(f"{body}initial = b[pos + 1]")
        for index, (condition, value, size) in enumerate(_forms(lo, hi)):
            keyword = "if" if index == 0 else "elif"
            lines.append(f"{body}{keyword} {condition}:")
            lines.append(f"{body}    v = {value}")
            lines.append(f"{body}    pos += {size}")
        lines.append(f"{body}else:")
        lines.append(f"{body}    return False")
        if spec.kind == _FLAGS:
            for flag, bit in spec.extra:
                lines.append(f"{body}out[{flag!r}] = v >> {bit} & 1 == 1")
        else:
            checks = []
            if lo != 0:  # the forms above give no negative value when lo is 0
                checks.append(f"v < {lo}")
            checks.append(f"v > {hi}")
            lines.append(f"{body}if {' or '.join(checks)}:")
            lines.append(f"{body}    return False")
            if spec.kind == _ENUM:
                lines.append(f"{body}out[{spec.name!r}] = {spec.extra!r}[v]")
            elif spec.scale != 1:
                lines.append(f"{body}out[{spec.name!r}] = v * {spec.scale}")
            else:
                lines.append(f"{body}out[{spec.name!r}] = v")
        lines.append(f"{body}pairs += 1")
    lines.append("    return pos == n and pairs == count")
    return "\n".join(lines) + "\n"


def _canonical_decoder(fport: int, specs: tuple[_Spec, ...]) -> Callable[..., bool] | None:
    source = _canonical_source(fport, specs)
    if source is None:
        return None
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<protocol.codec canonical decoder, fPort {fport}>", "exec"), namespace)
    decoder: Callable[..., bool] = namespace[f"_canonical_{fport}"]
    return decoder


def _template(msg: Message) -> dict[str, Any]:
    """Every field in catalogue order with its default (required ones are always overwritten)."""
    return {f.name: (False if f.type == "bool" else f.default) for f in msg.fields}


_FAST: Final[dict[int, tuple[str, str, Callable[..., bool], dict[str, Any]]]] = {
    fport: (msg.name, msg.direction, decoder, _template(msg))
    for fport, (msg, specs) in _PLANS.items()
    if fport not in catalogue.COMPACT_FPORTS
    and (decoder := _canonical_decoder(fport, specs)) is not None
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

    Canonical flat payloads (every status uplink) take the generated straight-line decoder of
    their message; whatever it does not take goes to :func:`decode_strict`, which decides.
    """
    try:
        name, fast_direction, canonical, template = _FAST[fport]
    except (KeyError, TypeError):
        return decode_strict(fport, data, direction)
    if (
        type(data) is not bytes
        or type(fport) is not int  # 10.0 and True find their dict entry too
        or (direction != fast_direction and direction is not None)
        or len(data) > MAX_PAYLOAD
    ):
        return decode_strict(fport, data, direction)
    out = template.copy()
    try:
        taken = canonical(data, out)
    except IndexError:  # ran off the end: truncated, or empty
        taken = False
    if not taken:
        return decode_strict(fport, data, direction)
    result: Decoded = _new_decoded(Decoded)
    _set_message(result, name)
    _set_fields(result, out)
    return result


def decode_strict(fport: int, data: bytes, direction: str | None = "up") -> Decoded:
    """:func:`decode` through the pure-Python reader only (the reference the tests compare)."""
    msg, specs = _lookup(fport, data, direction)
    obj = _read_strict(bytes(data))
    if fport in catalogue.COMPACT_FPORTS:
        if type(obj) is not list:
            raise DecodeError(
                f"{msg.name}: compact form is not a CBOR array", fport=fport, message_name=msg.name
            )
        # key k at position k; extra trailing positions come from a newer sender: ignored
        obj = {i: v for i, v in enumerate(obj) if i < len(specs)}
    return _decoded(msg.name, _fields(msg, specs, obj))


def message_for(fport: int) -> Message:
    """The catalogue message on ``fport``; :class:`DecodeError` when the port is not ours."""
    try:
        return catalogue.by_fport(fport)
    except CatalogueError as exc:
        raise DecodeError(str(exc), fport=fport) from None
