"""Writer of ``protocol/vectors/payloads.json``, the golden payload vectors.

Run ``python -m protocol.codegen.vectors`` after a deliberate change to the catalogue's examples
or encoding; the tests then hold the CPython codec, the generated MicroPython module (on the unix
port) and the generated JavaScript codec (on node) to the same bytes. Unlike the generated codecs
this file is not rewritten by ``citypack codegen``: a change of bytes on the air must be a
reviewed change of this file.

Sections:

- ``cases``: every example of every message (at least typical, minimum, maximum): ``message``,
  ``case``, ``fport``, ``direction``, ``fields``, ``hex`` (canonical bytes).
- ``decode_only``: bytes that are not what an encoder writes but must decode to ``fields``
  (unknown keys, explicit defaults, longer integer forms, unknown flag bits, key order, extra
  list-item positions): the schema-evolution rule in action.
- ``invalid``: ``fport`` + ``hex`` that every decoder must refuse, with the ``reason``.
- ``invalid_fields``: ``message`` + ``fields`` that every encoder must refuse.
- ``compact``: the compact forms (``Message.compact_fport``, a CBOR array by key) of every example
  that fits them, and the worst case that does: ``message``, ``case``, ``fport``, ``fields``,
  ``hex``; ``compact_refused``: fields the compact encoders must refuse (the map form is sent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol import catalogue, codec
from protocol.catalogue.model import Message
from protocol.codegen import ROOT
from protocol.errors import EncodeError

PATH = ROOT / "protocol" / "vectors" / "payloads.json"

SOURCE = (
    "citypack protocol/catalogue examples, encoded by protocol.codec (cbor2, RFC 8949 §4.2.1 "
    "deterministic); hand-written decode_only/invalid cases; written by "
    "`python -m protocol.codegen.vectors`"
)

# bin_status typical: a4 00 18 2a 01 12 02 11 05 03 (fill 42, 18 °C, battery 17*5 %, config 3)
_BIN = "a400182a011202110503"
_BIN_FIELDS = {
    "fill_percent": 42,
    "temperature_c": 18,
    "battery_percent": 85,
    "tilt": False,
    "fire": False,
    "sensor_fault": False,
    "pickup_count": 0,
    "config_version": 3,
}


def _decode_only() -> list[dict[str, Any]]:
    steps = [{"anchor": "sunset", "offset_min": 0, "dim_level": 80}]
    profile = {
        "command_id": 3,
        "config_version": 5,
        "base_level": 30,
        "boost_level": 100,
        "hold_time_s": 60,
        "steps": steps,
    }
    return [
        {
            "reason": "compact form: an extra trailing position (a newer sender) is ignored",
            "fport": 12,
            "hex": "87182a121100000305",
            "message": "bin_status",
            "fields": _BIN_FIELDS,
        },
        {
            "reason": "compact form: values at their default sent anyway decode the same",
            "fport": 12,
            "hex": "86182a1211000003",
            "message": "bin_status",
            "fields": _BIN_FIELDS,
        },
        {
            "reason": "unknown key 23 (text) and 22 (nested array, bytes) are ignored",
            "fport": 10,
            "hex": "a600182a011202110503" + "176568656c6c6f" + "1682018243abcdef80",
            "message": "bin_status",
            "fields": _BIN_FIELDS,
        },
        {
            "reason": "a field sent at its default (pickup_count 0) decodes the same",
            "fport": 10,
            "hex": "a500182a0112021104000503",
            "message": "bin_status",
            "fields": _BIN_FIELDS,
        },
        {
            "reason": "longer integer forms than the shortest are accepted",
            "fport": 10,
            "hex": "a40019002a011a000000120218110503",
            "message": "bin_status",
            "fields": _BIN_FIELDS,
        },
        {
            "reason": "keys in any order",
            "fport": 10,
            "hex": "a405030211011200182a",
            "message": "bin_status",
            "fields": _BIN_FIELDS,
        },
        {
            "reason": "unknown flag bits (bit 7) are ignored",
            "fport": 10,
            "hex": "a500182a011202110318800503",
            "message": "bin_status",
            "fields": _BIN_FIELDS,
        },
        {
            "reason": "known flag bits with an unknown one",
            "fport": 20,
            "hex": "a300184601182903190111",
            "message": "lamp_status",
            "fields": {
                "dim_level": 70,
                "active_power_w": 41,
                "mode": "schedule",
                "lamp_failure": True,
                "dimming_failure": False,
                "relay_failure": False,
                "supply_loss": False,
                "day_burner": True,
                "road_users": 0,
                "config_version": 0,
            },
        },
        {
            "reason": "a list item with an extra trailing position (newer sender) is accepted",
            "fport": 121,
            "hex": "a50003010502181e0318640581840000185063616263",
            "message": "lamp_profile",
            "fields": profile,
        },
        {
            "reason": "a downlink with every default omitted",
            "fport": 110,
            "hex": "a200070104",
            "message": "bin_config",
            "fields": {
                "command_id": 7,
                "config_version": 4,
                "container_height_cm": 100,
                "sensor_offset_cm": 0,
                "full_threshold_percent": 80,
                "fire_threshold_c": 70,
                "report_interval_s": 3600,
                "fill_step_percent": 10,
            },
        },
    ]


def _invalid() -> list[dict[str, Any]]:
    nested = "81" * 12 + "00"
    cases = [
        ("empty payload", 10, ""),
        ("fPort 99 carries no citypack message", 99, "a0"),
        ("fPort 0 is MAC commands, not ours", 0, "a0"),
        ("not a map: an unsigned integer", 10, "00"),
        ("not a map: an array", 10, "80"),
        ("truncated in the middle of the map", 10, "a400182a01"),
        ("truncated inside a 1-byte argument", 102, "a10018"),
        ("trailing byte after the map", 10, _BIN + "00"),
        ("trailing pair with a repeated key after a 1-pair map", 102, "a1 0005 0005"),
        ("map header counts more pairs than there are", 102, "a2 0005"),
        ("indefinite-length map", 10, "bf00182a011202110503ff"),
        ("indefinite-length array in an unknown key", 10, "a500182a011202110503179f01ff"),
        ("indefinite-length text string", 1, "a40000017f6131ff0261780301"),
        ("tag (bignum) instead of an integer", 10, "a400c2412a011202110503"),
        ("half float instead of an integer", 10, "a400f95140011202110503"),
        ("simple value true instead of an integer", 10, "a400f5011202110503"),
        ("simple value null in an unknown key", 10, "a500182a01120211050317f6"),
        ("8-byte integer", 10, "a4001b000000000000002a011202110503"),
        ("reserved additional information 28", 10, "a4001c011202110503"),
        ("fill_percent 101 out of range 0..100", 10, "a4001865011202110503"),
        ("battery_percent 105 (raw 21) out of range", 10, "a400182a011202150503"),
        ("temperature_c -41 out of range", 10, "a400182a013828021105 03"),
        ("negative fill_percent", 10, "a40020011202110503"),
        ("required fill_percent missing", 10, "a3011202110503"),
        ("text where an integer belongs", 10, "a400623432011202110503"),
        ("byte string where an integer belongs", 10, "a400412a011202110503"),
        ("duplicate key 0", 10, "a500182a00182b011202110503"),
        ("text map key", 10, "a5617800 00182a011202110503"),
        ("negative map key", 10, "a5200000182a011202110503"),
        ("negative flags word", 10, "a500182a011202110320 0503"),
        ("flags word as text", 10, "a500182a01120211036178 0503"),
        ("array claims 2^32-1 items", 10, "a500182a011202110503179affffffff"),
        ("map claims 2^32-1 pairs", 10, "a500182a011202110503 17 baffffffff"),
        ("text claims 2^32-1 bytes", 10, "a500182a011202110503177affffffff"),
        ("byte string longer than the payload", 10, "a500182a011202110503 17 5810 00"),
        ("nested 13 deep (nesting bomb)", 10, "a500182a01120211050317" + nested),
        ("alarm enum index 4 out of range", 11, "a10004"),
        ("alarm enum index negative", 11, "a10020"),
        ("mode enum index 4 out of range", 20, "a300184601182a0204"),
        ("required alarm missing", 11, "a1011848"),
        (
            "firmware_version of 17 characters",
            1,
            "a4 0000 01 71 3132333435363738393031323334353637 02 6178 0301",
        ),
        ("non-ASCII text (UTF-8 é)", 1, "a400000162c3a90261780301"),
        ("control character in text", 1, "a4 0000 01 6101 02 6178 0301"),
        ("an integer where a text field belongs", 1, "a4 0000 01 01 02 6178 0301"),
        (
            "lamp_profile with 5 steps (max 4)",
            121,
            "a5 0003 0105 02181e 031864 05 85" + "8300001850" * 5,
        ),
        ("profile step with 2 positions", 121, "a50003010502181e031864 05 81 820000"),
        ("profile step anchor index 3", 121, "a50003010502181e03186405818303001850"),
        ("profile step offset_min 1440", 121, "a50003010502181e031864 05 81 83 02 1905a0 1850"),
        ("profile steps not an array", 121, "a50003010502181e0318640500"),
        ("profile step not an array", 121, "a50003010502181e031864058100"),
        ("command_id 256", 102, "a100190100"),
        ("unix_time negative", 101, "a200000120"),
        ("report_interval_s 59 below the minimum", 100, "a3 0000 0100 02183b"),
        ("payload longer than 242 bytes", 10, "a500182a011202110503175900ed" + "00" * 237),
        ("a map on bin_status's compact fPort", 12, "a400182a011202110503"),
        ("compact bin_status with text for fill_percent", 12, "866234321211000003"),
        ("compact bin_status with fill_percent 101", 12, "83186512 11".replace(" ", "")),
        ("compact bin_status without its required temperature", 12, "81182a"),
    ]
    return [{"reason": r, "fport": p, "hex": h.replace(" ", "")} for r, p, h in cases]


def _invalid_fields() -> list[dict[str, Any]]:
    bin_typical = dict(_BIN_FIELDS)
    profile = catalogue.message("lamp_profile").examples["typical"]
    too_many = dict(profile)
    too_many["steps"] = [*profile["steps"], profile["steps"][0]]
    info = dict(catalogue.message("device_info").examples["typical"])

    def step(anchor: str, offset_min: int, dim_level: int) -> dict[str, Any]:
        return {"steps": [{"anchor": anchor, "offset_min": offset_min, "dim_level": dim_level}]}

    return [
        {"reason": r, "message": m, "fields": f}
        for r, m, f in [
            ("fill_percent 101 out of range", "bin_status", bin_typical | {"fill_percent": 101}),
            ("temperature_c -41", "bin_status", bin_typical | {"temperature_c": -41}),
            ("required fill_percent missing", "bin_status", {"temperature_c": 18}),
            ("unknown field", "bin_status", bin_typical | {"colour": 1}),
            ("bool for an integer", "bin_status", bin_typical | {"fill_percent": True}),
            ("text for an integer", "bin_status", bin_typical | {"fill_percent": "42"}),
            ("fraction for an integer", "bin_status", bin_typical | {"fill_percent": 42.5}),
            ("integer where a bool belongs", "bin_status", bin_typical | {"fire": 1}),
            ("unknown enum value", "bin_alarm", {"alarm": "flood", "value": 1, "fill_percent": 2}),
            ("firmware_version too long", "device_info", info | {"firmware_version": "1" * 17}),
            ("non-ASCII text", "device_info", info | {"firmware_version": "1.0é"}),
            ("control character in text", "device_info", info | {"hardware": "a\tb"}),
            ("five profile steps", "lamp_profile", too_many),
            ("step with an unknown anchor", "lamp_profile", profile | step("noon", 0, 1)),
            ("step offset_min 1440", "lamp_profile", profile | step("clock", 1440, 1)),
            ("step dim_level 101", "lamp_profile", profile | step("clock", 0, 101)),
            (
                "step missing dim_level",
                "lamp_profile",
                profile | {"steps": [{"anchor": "clock", "offset_min": 0}]},
            ),
            ("command_id 256", "reboot", {"command_id": 256}),
            ("unknown message", "bin_statu", {}),
        ]
    ]


def _cbor_len(raw: int) -> int:
    arg = raw if raw >= 0 else -1 - raw
    return 1 if arg < 24 else 2 if arg < 0x100 else 3 if arg < 0x10000 else 5


def compact_worst_case(msg: Message) -> dict[str, Any]:
    """Fields of ``msg`` whose compact form is longest: flags set, the last enum choice, and each
    integer at the end of its range (within the compact limits) with the longest CBOR form."""
    limits = {name: (lo, hi) for name, lo, hi in msg.compact_limits}
    out: dict[str, Any] = {}
    for f in msg.fields:
        if f.type == "bool":
            out[f.name] = True
        elif f.type == "enum":
            out[f.name] = f.choices[-1]
        else:
            lo, hi = limits.get(f.name, (f.minimum, f.maximum))
            out[f.name] = max((hi, lo), key=lambda v: _cbor_len(v // f.scale))
    return out


def _compact() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cases = []
    refused = []
    for msg in catalogue.MESSAGES:
        if msg.compact_fport is None:
            continue
        examples = dict(msg.examples)
        worst = compact_worst_case(msg)
        for name, lo, hi in msg.compact_limits:
            refused.append(
                {
                    "reason": f"{name} beyond the compact form's {lo}..{hi}",
                    "message": msg.name,
                    "fields": worst | {name: hi + msg.field(name).scale},
                }
            )
        examples["compact worst case"] = worst
        for label, fields in examples.items():
            try:
                fport, data = codec.encode_compact(msg.name, fields)
            except EncodeError:
                continue
            cases.append(
                {
                    "message": msg.name,
                    "case": label,
                    "fport": fport,
                    "direction": msg.direction,
                    "fields": fields,
                    "hex": data.hex(),
                }
            )
    return cases, refused


def render() -> str:
    compact, compact_refused = _compact()
    cases = []
    for msg in catalogue.MESSAGES:
        for label, fields in msg.examples.items():
            fport, data = codec.encode(msg.name, fields)
            cases.append(
                {
                    "message": msg.name,
                    "case": label,
                    "fport": fport,
                    "direction": msg.direction,
                    "fields": fields,
                    "hex": data.hex(),
                }
            )
    document = {
        "source": SOURCE,
        "protocol_version": catalogue.PROTOCOL_VERSION,
        "cases": cases,
        "decode_only": _decode_only(),
        "invalid": _invalid(),
        "invalid_fields": _invalid_fields(),
        "compact": compact,
        "compact_refused": compact_refused,
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def main(path: Path = PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
