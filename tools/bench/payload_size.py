"""Payload size and airtime per message (issue 2 "Numbers it must reach").

For each catalogue message at its typical example: our CBOR bytes, a hand-packed binary minimum
(every field in the fewest bits its range needs, no keys, no omission), the Cayenne LPP encoding of
the same fields, compact JSON, and the LoRa time on air at SF7 and SF12 / 125 kHz with the 13
bytes of LoRaWAN overhead (MHDR 1 + FHDR 7 + FPort 1 + MIC 4, L2 1.0.4 §4) from
:mod:`protocol.lorawan.airtime`. Goals: bin_status ≤ 11 bytes, every other periodic message
≤ 24 bytes, each periodic message smaller than its LPP encoding.

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
from protocol.lorawan.airtime import lora_time_on_air_s
from tools.bench.report import Figure

BENCH = "payload_size"
LORAWAN_OVERHEAD = 13
"""MHDR (1) + FHDR without FOpts (7) + FPort (1) + MIC (4), LoRaWAN L2 1.0.4 §4.1-4.4."""
GOAL_BIN_STATUS = 11
GOAL_PERIODIC = 24


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


def run() -> list[Figure]:
    figures: list[Figure] = []
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
