"""Payload size and airtime per message (issue 2 "Numbers it must reach").

For each catalogue message at its typical example: our CBOR bytes, a hand-packed binary minimum
(every field in the fewest bits its range needs, no keys, no omission), the Cayenne LPP encoding of
the same fields, compact JSON, and the LoRa time on air at SF7 and SF12 / 125 kHz with the 13
bytes of LoRaWAN overhead (MHDR 1 + FHDR 7 + FPort 1 + MIC 4, L2 1.0.4 §4) from
:mod:`protocol.lorawan.airtime`. Goals: bin_status ≤ 11 bytes, every other periodic message
≤ 24 bytes, each periodic message smaller than its LPP encoding.

Every value range, not only the typical example (issue 17): each message's size at every
catalogue example, at its typical values with each flag set (a tilted bin), and in the worst
case — every field at the value with the longest encoding (the range end whose CBOR argument is
longest, flags all set, the last enum choice, strings and lists full). The worst case is held
against US915 DR0, the smallest FRMPayload any region here allows (11 bytes, RP002-1.0.4 §5.2.6:
M = 19, N = M - 8): the goal for bin_status, information for the others. Sizes are as a node
sends them: bin_status in its compact form (fPort 12) where the values fit it, which the bin
app ensures by clamping pickups per report to its limit; the map form's worst case is shown too.

Cayenne LPP (myDevices LPP v1 and the common extended types): every value is channel (1 byte) +
type (1 byte) + data: digital input / percentage for bools, enums and values up to 255 (1 byte),
temperature (type 103, 2 bytes, 0.1 °C) for signed values, analog/power for values up to 65535
(2 bytes), generic sensor / energy / unix time (4 bytes) beyond. LPP has no bit fields and no
omission, so every field is always sent. It has no strings or lists either: those count as their
raw bytes (a generous assumption for LPP).

Run alone with ``python -m tools.bench.payload_size`` for the wide per-message table.
"""

from __future__ import annotations

import json
import math
from typing import Any

from protocol import catalogue, codec
from protocol.catalogue.model import Field, Message
from protocol.codegen.vectors import compact_worst_case
from protocol.errors import EncodeError
from protocol.lorawan.airtime import lora_time_on_air_s
from tools.bench.report import Figure

BENCH = "payload_size"
LORAWAN_OVERHEAD = 13
"""MHDR (1) + FHDR without FOpts (7) + FPort (1) + MIC (4), LoRaWAN L2 1.0.4 §4.1-4.4."""
GOAL_BIN_STATUS = 11
GOAL_PERIODIC = 24
US915_DR0 = 11
"""Largest FRMPayload at US915 DR0 (RP002-1.0.4 §5.2.6, N = M - 8 = 19 - 8)."""


def _cbor_len(raw: int) -> int:
    arg = raw if raw >= 0 else -1 - raw
    return 1 if arg < 24 else 2 if arg < 0x100 else 3 if arg < 0x10000 else 5


def _worst_value(f: Field) -> Any:
    if f.type in ("uint", "int"):
        ends = [v for v in (f.minimum, f.maximum) if v != f.default] or [f.minimum]
        return max(ends, key=lambda v: _cbor_len(v // f.scale))
    if f.type == "bool":
        return True
    if f.type == "enum":
        return next(c for c in reversed(f.choices) if c != f.default)
    if f.type == "str":
        return "~" * f.max_len
    item = {}
    for i in f.item:
        lo, hi = i.bounds
        item[i.name] = i.choices[-1] if i.type == "enum" else max(lo, hi, key=_cbor_len)
    return [dict(item) for _ in range(f.max_items)]


def worst_case(msg: Message) -> dict[str, Any]:
    """The fields of ``msg`` with the longest encoding: each field independently at its worst
    (a map's entries do not interact)."""
    return {f.name: _worst_value(f) for f in msg.fields}


def variants(msg: Message) -> dict[str, dict[str, Any]]:
    """Label -> fields: every example, typical with each flag set, and the worst case."""
    out = {f"{label} example": fields for label, fields in msg.examples.items()}
    typical = msg.examples["typical"]
    for f in msg.fields:
        if f.type == "bool" and not typical.get(f.name):
            out[f"typical with {f.name.replace('_', ' ')}"] = {**typical, f.name: True}
    out["worst case"] = worst_case(msg)
    return out


def _lpp_value_size(f: Field, value: Any) -> int:
    if f.type in ("bool", "enum"):
        return 1
    if f.type == "str":
        return len(value)
    if f.type == "list":
        return sum(len(f.item) for _ in value)
    if f.minimum < 0:
        return 2
    if f.maximum <= 0xFF:
        return 1
    if f.maximum <= 0xFFFF:
        return 2
    return 4


def lpp_size(msg: Message, fields: dict[str, Any]) -> int:
    """Bytes of the Cayenne LPP encoding of ``fields`` (every field, channel + type + data)."""
    return sum(2 + _lpp_value_size(f, fields[f.name]) for f in msg.fields)


def _bits(count: int) -> int:
    return max(1, math.ceil(math.log2(count))) if count > 1 else 0


def packed_size(msg: Message, fields: dict[str, Any]) -> int:
    """Bytes of a hand-packed bit stream: each field in the fewest bits its range needs."""
    bits = 0
    for f in msg.fields:
        if f.type == "bool":
            bits += 1
        elif f.type == "enum":
            bits += _bits(len(f.choices))
        elif f.type in ("uint", "int"):
            bits += _bits((f.maximum - f.minimum) // f.scale + 1)
        elif f.type == "str":
            bits += _bits(f.max_len + 1) + 7 * len(fields[f.name])
        else:
            bits += _bits(f.max_items + 1)
            for _ in fields[f.name]:
                for item in f.item:
                    lo, hi = item.bounds
                    bits += _bits(hi - lo + 1)
    return math.ceil(bits / 8)


def json_size(fields: dict[str, Any]) -> int:
    return len(json.dumps(fields, separators=(",", ":")).encode())


def airtime_ms(payload_len: int, spreading_factor: int) -> float:
    seconds = lora_time_on_air_s(
        payload_len + LORAWAN_OVERHEAD, spreading_factor=spreading_factor, bandwidth_hz=125_000
    )
    return seconds * 1000.0


def measure() -> list[dict[str, Any]]:
    rows = []
    for msg in catalogue.MESSAGES:
        fields = msg.examples["typical"]
        _, data = codec.encode(msg.name, fields)
        rows.append(
            {
                "message": msg.name,
                "periodic": msg.periodic,
                "ours": len(data),
                "packed": packed_size(msg, fields),
                "lpp": lpp_size(msg, fields),
                "json": json_size(fields),
                "sf7_ms": airtime_ms(len(data), 7),
                "sf12_ms": airtime_ms(len(data), 12),
            }
        )
    return rows


def sent_size(msg: Message, fields: dict[str, Any]) -> tuple[int, int]:
    """(bytes, fPort) of ``fields`` as a node sends them: the compact form where the message has
    one and the values fit it (firmware apps/node.py), else the map form."""
    if msg.compact_fport is not None:
        try:
            fport, data = codec.encode_compact(msg.name, fields)
            return len(data), fport
        except EncodeError:
            pass
    fport, data = codec.encode(msg.name, fields)
    return len(data), fport


def range_figures() -> list[Figure]:
    figures = []
    for msg in catalogue.MESSAGES:
        labelled = variants(msg)
        if msg.compact_fport is not None:
            # the node clamps to the compact limits (bin_node: pickups per report), so the worst
            # case it sends is the compact form's; the map form's is shown beside it
            map_worst = labelled.pop("worst case")
            labelled["worst case"] = compact_worst_case(msg)
            size = len(codec.encode(msg.name, map_worst)[1])
            figures.append(
                Figure(BENCH, f"{msg.name} bytes, worst case, map form", size, "B",
                       note=f"fPort {msg.fport}, the v1 form: sent only for values beyond the "
                       f"compact form's {msg.compact_limits}, which the bin app clamps to")
            )  # fmt: skip
        for label, fields in labelled.items():
            if label == "typical example":
                continue  # "<name> bytes" is the typical one (map form, as in issue 2)
            size, fport = sent_size(msg, fields)
            fits = "fits" if size <= US915_DR0 else "does not fit"
            goal = US915_DR0 if label == "worst case" and msg.name == "bin_status" else None
            figures.append(
                Figure(
                    BENCH,
                    f"{msg.name} bytes, {label}",
                    size,
                    "B",
                    goal=goal,
                    better="<=" if goal is not None else "info",
                    note=f"{fits} US915 DR0 ({US915_DR0} B)"
                    + (f"; as sent on fPort {fport}" if msg.compact_fport is not None else ""),
                )
            )
    return figures


def run() -> list[Figure]:
    figures: list[Figure] = range_figures()
    for row in measure():
        name = row["message"]
        goal = None
        if row["periodic"]:
            goal = GOAL_BIN_STATUS if name == "bin_status" else GOAL_PERIODIC
        figures.append(
            Figure(
                BENCH,
                f"{name} bytes",
                row["ours"],
                "B",
                goal=goal,
                better="<=" if goal is not None else "info",
                note=f"packed min {row['packed']} B, LPP {row['lpp']} B, JSON {row['json']} B",
            )
        )
        if row["periodic"]:
            figures.append(
                Figure(
                    BENCH,
                    f"{name} bytes under LPP",
                    row["lpp"] - row["ours"],
                    "B",
                    goal=1,
                    better=">=",
                    note=f"Cayenne LPP {row['lpp']} B",
                )
            )
        for sf in (7, 12):
            figures.append(
                Figure(
                    BENCH,
                    f"{name} airtime SF{sf}",
                    round(row[f"sf{sf}_ms"], 1),
                    "ms",
                    note=f"125 kHz, PHYPayload {row['ours'] + LORAWAN_OVERHEAD} B",
                )
            )
    return figures


def main() -> None:
    header = ("message", "ours B", "packed B", "LPP B", "JSON B", "SF7 ms", "SF12 ms", "goal")
    lines = [header]
    for row in measure():
        goal = ""
        if row["periodic"]:
            limit = GOAL_BIN_STATUS if row["message"] == "bin_status" else GOAL_PERIODIC
            ok = row["ours"] <= limit and row["ours"] < row["lpp"]
            goal = f"<= {limit}, < LPP: {'yes' if ok else 'NO'}"
        lines.append(
            (
                row["message"],
                str(row["ours"]),
                str(row["packed"]),
                str(row["lpp"]),
                str(row["json"]),
                f"{row['sf7_ms']:.1f}",
                f"{row['sf12_ms']:.1f}",
                goal,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())


if __name__ == "__main__":
    main()
