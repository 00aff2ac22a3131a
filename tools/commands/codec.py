"""`citypack codec list|example|encode|decode`: the application payload codec from a shell.

Shapes (issue 2 §5, kept stable for scripts):

- ``codec list --json``: ``[{"name", "fport", "direction": "up"|"down", "periodic", ...}]``
- ``codec example NAME``: the typical example's fields (what ``encode`` takes) as JSON
- ``codec encode --json NAME FIELDS_JSON``: ``{"fport": N, "hex": "..."}``
- ``codec decode --json --fport N HEX``: ``{"message": NAME, "fields": {...}}``

Bad input (bad hex or JSON, unknown message, a value out of range) is one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from protocol import catalogue, codec
from protocol.catalogue.model import Field, Message
from tools.errors import CliError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "codec",
        help="encode and decode citypack application payloads",
        description="Encode and decode the application payloads defined in protocol/catalogue.",
    )
    codec_sub = parser.add_subparsers(dest="codec_command", metavar="ACTION", required=True)

    p_list = codec_sub.add_parser("list", help="list every message with its fPort and fields")
    p_list.add_argument("--json", action="store_true", help="print a JSON array")
    p_list.set_defaults(func=cmd_list)

    p_example = codec_sub.add_parser("example", help="print a message's example fields as JSON")
    p_example.add_argument("name", metavar="NAME")
    p_example.add_argument(
        "--case",
        default="typical",
        help="which example: typical (default), minimum, maximum or an edge case",
    )
    p_example.set_defaults(func=cmd_example)

    p_encode = codec_sub.add_parser("encode", help="encode fields (JSON) into a payload")
    p_encode.add_argument("--json", action="store_true", help='print {"fport": N, "hex": ...}')
    p_encode.add_argument("name", metavar="NAME")
    p_encode.add_argument("fields", metavar="FIELDS_JSON", help="a JSON object, or - for stdin")
    p_encode.set_defaults(func=cmd_encode)

    p_decode = codec_sub.add_parser("decode", help="decode a payload (hex) received on an fPort")
    p_decode.add_argument("--json", action="store_true", help='print {"message", "fields"}')
    p_decode.add_argument("--fport", required=True, metavar="N", help="the frame's fPort")
    p_decode.add_argument(
        "--direction",
        choices=("up", "down"),
        default=None,
        help="up or down (default: from the catalogue; fPorts are unique)",
    )
    p_decode.add_argument("hex", metavar="HEX", help="payload bytes as hex (spaces allowed)")
    p_decode.set_defaults(func=cmd_decode)


def _field_json(f: Field) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "key": f.key, "type": f.type}
    if f.unit:
        out["unit"] = f.unit
    if f.type in ("uint", "int"):
        out.update(minimum=f.minimum, maximum=f.maximum, scale=f.scale)
    if f.choices:
        out["choices"] = list(f.choices)
    if f.bit is not None:
        out["bit"] = f.bit
    if f.type == "str":
        out["max_len"] = f.max_len
    if f.type == "list":
        out["max_items"] = f.max_items
        out["item"] = [
            {"name": i.name, "type": i.type, "minimum": i.bounds[0], "maximum": i.bounds[1]}
            | ({"choices": list(i.choices)} if i.choices else {})
            for i in f.item
        ]
    out["required"] = f.required
    if not f.required:
        out["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
    out["description"] = f.description
    return out


def message_json(msg: Message) -> dict[str, Any]:
    return {
        "name": msg.name,
        "fport": msg.fport,
        "direction": msg.direction,
        "periodic": msg.periodic,
        "device": msg.device,
        "description": msg.description,
        "fields": [_field_json(f) for f in msg.fields],
    }


def cmd_list(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([message_json(m) for m in catalogue.MESSAGES], ensure_ascii=False))
        return 0
    rows = [("message", "fport", "dir", "periodic", "fields")]
    for m in catalogue.MESSAGES:
        names = ", ".join(f.name for f in m.fields)
        fport = str(m.fport) if m.compact_fport is None else f"{m.fport}, {m.compact_fport} compact"
        rows.append((m.name, fport, m.direction, "yes" if m.periodic else "", names))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    return 0


def cmd_example(args: argparse.Namespace) -> int:
    msg = catalogue.message(args.name)
    if args.case not in msg.examples:
        raise CliError(
            f"{msg.name} has no example {args.case!r}; examples: {', '.join(msg.examples)}"
        )
    print(json.dumps(msg.examples[args.case]))
    return 0


def _read_fields(text: str) -> dict[str, Any]:
    if text == "-":
        text = sys.stdin.read()
    try:
        fields = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CliError(f"FIELDS_JSON is not valid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise CliError("FIELDS_JSON must be a JSON object of field names to values")
    return fields


def cmd_encode(args: argparse.Namespace) -> int:
    catalogue.message(args.name)  # unknown names fail before the JSON is looked at
    fport, data = codec.encode(args.name, _read_fields(args.fields))
    if args.json:
        print(json.dumps({"fport": fport, "hex": data.hex()}))
    else:
        print(f"{data.hex()}  (fPort {fport}, {len(data)} bytes)")
    return 0


def _parse_hex(text: str) -> bytes:
    cleaned = "".join(text.split()).replace(":", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise CliError(f"HEX is not hexadecimal bytes: {text!r}") from None


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        fport = int(args.fport, 10)
    except ValueError:
        raise CliError(f"--fport must be an integer, got {args.fport!r}") from None
    decoded = codec.decode(fport, _parse_hex(args.hex), args.direction)
    if args.json:
        print(json.dumps({"message": decoded.message, "fields": decoded.fields}))
        return 0
    msg = catalogue.message(decoded.message)
    print(f"{decoded.message} (fPort {fport}, {msg.direction}link)")
    for name, value in decoded.fields.items():
        unit = ""
        try:
            unit = msg.field(name).unit
        except Exception:  # a name not in the catalogue cannot come out of decode
            unit = ""
        print(f"  {name}: {json.dumps(value)}{' ' + unit if unit else ''}")
    return 0
