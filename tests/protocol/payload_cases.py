"""Shared data for the payload codec tests: the golden vectors and mutated byte strings."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from protocol import catalogue, codec
from protocol.errors import ProtocolError

ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = ROOT / "protocol" / "vectors" / "payloads.json"


def vectors() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return document


def mutations(count: int, seed: int = 2) -> list[tuple[int, bytes]]:
    """Deterministic near-miss inputs: the vectors with bytes flipped, cut, inserted, swapped."""
    rng = random.Random(seed)
    bases = [(c["fport"], bytes.fromhex(c["hex"])) for c in vectors()["cases"]]
    ports = [m.fport for m in catalogue.MESSAGES]
    out: list[tuple[int, bytes]] = []
    while len(out) < count:
        fport, data = rng.choice(bases)
        buf = bytearray(data)
        action = rng.randrange(6)
        if action == 0 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif action == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif action == 2:
            del buf[rng.randrange(len(buf) + 1) :]
        elif action == 3:
            buf.insert(rng.randrange(len(buf) + 1), rng.randrange(256))
        elif action == 4:
            fport = rng.choice(ports)
        else:
            buf = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
        out.append((fport, bytes(buf)))
    return out


def expected_decode(fport: int, data: bytes) -> dict[str, Any]:
    """What every implementation must answer for (fport, data), from the CPython codec."""
    message = catalogue.BY_FPORT.get(fport)
    direction = message.direction if message else "up"
    case: dict[str, Any] = {"fport": fport, "hex": data.hex(), "direction": direction}
    try:
        decoded = codec.decode(fport, data, None)
    except ProtocolError:
        case["error"] = True
    else:
        case["message"] = decoded.message
        case["fields"] = decoded.fields
    return case


def harness_cases(fuzz: int, encode_compact: bool = True) -> list[dict[str, Any]]:
    """One JSON object per case, for the MicroPython and node harnesses (JSON lines).

    ``encode_compact``: include the compact-form encodings (the firmware encodes them; the
    ChirpStack codec only decodes uplinks, so node gets the decodes alone)."""
    doc = vectors()
    lines: list[dict[str, Any]] = []
    for case in doc["compact"]:
        if encode_compact:
            lines.append({"op": "encode_compact", **case})
        lines.append({"op": "decode", **{k: v for k, v in case.items() if k != "case"}})
    if encode_compact:
        for case in doc["compact_refused"]:
            lines.append({"op": "encode_compact", **case, "error": True})
    for case in doc["cases"]:
        lines.append(
            {
                "op": "encode",
                "message": case["message"],
                "direction": case["direction"],
                "fields": case["fields"],
                "fport": case["fport"],
                "hex": case["hex"],
            }
        )
        lines.append(
            {
                "op": "decode",
                "fport": case["fport"],
                "direction": case["direction"],
                "hex": case["hex"],
                "message": case["message"],
                "fields": case["fields"],
            }
        )
    for case in doc["decode_only"]:
        lines.append(
            {
                "op": "decode",
                "fport": case["fport"],
                "direction": catalogue.by_fport(case["fport"]).direction,
                "hex": case["hex"],
                "message": case["message"],
                "fields": case["fields"],
            }
        )
    for case in doc["invalid"]:
        port = catalogue.BY_FPORT.get(case["fport"])
        lines.append(
            {
                "op": "decode",
                "fport": case["fport"],
                "direction": port.direction if port else "up",
                "hex": case["hex"],
                "error": True,
                "reason": case["reason"],
            }
        )
    for case in doc["invalid_fields"]:
        lines.append(
            {
                "op": "encode",
                "message": case["message"],
                "fields": case["fields"],
                "error": True,
                "reason": case["reason"],
            }
        )
    for fport, data in mutations(fuzz):
        lines.append({"op": "decode", **expected_decode(fport, data)})
    return lines


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


V1_PATH = ROOT / "protocol" / "vectors" / "payloads-v1.json"
FROZEN_PATHS = (V1_PATH, ROOT / "protocol" / "vectors" / "payloads-v2.json")
"""Every frozen vector set, one per protocol version (never regenerated)."""


def _added_default(message: str, name: str) -> Any:
    f = catalogue.message(message).field(name)
    if f.type == "bool":
        return False
    if f.type == "list":
        return []
    return f.default


def v1_decode_cases(path: Path = V1_PATH) -> list[dict[str, Any]]:
    """Decode cases of a frozen vector set against today's catalogue (JSON-lines shape).

    What firmware of that version sent must decode to what it meant: its fields with its values,
    plus any field added since at its default (schema evolution, protocol/catalogue/__init__.py).
    """
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    lines: list[dict[str, Any]] = []
    for case in doc["cases"] + doc["decode_only"] + doc.get("compact", []):
        message = catalogue.message(case["message"])
        fields = dict(case["fields"])
        for f in message.fields:
            if f.name not in fields:
                fields[f.name] = _added_default(message.name, f.name)
        lines.append(
            {
                "op": "decode",
                "fport": case["fport"],
                "direction": message.direction,
                "hex": case["hex"],
                "message": message.name,
                "fields": fields,
            }
        )
    return lines
