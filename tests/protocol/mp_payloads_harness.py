"""MicroPython harness: run JSON-lines payload cases through the generated citypack_payloads.

Usage: micropython mp_payloads_harness.py CASES.jsonl
Reads one case per line (small heap: never the whole file at once) and prints one JSON line:
{"checked": N, "failures": [...], "encode_alloc": bytes, "encode_into_alloc": bytes,
"decode_alloc": bytes}.
"""

import binascii
import gc
import json
import sys

import citypack_payloads as cp


def _hex(data):
    return binascii.hexlify(data).decode()


def _encode(case):
    try:
        got = cp.encode(case["message"], case["fields"])
    except cp.PayloadError:
        if case.get("error"):
            return None
        return "encode {} refused valid fields".format(case["message"])
    except Exception as exc:  # anything but PayloadError is a failure of the codec
        return "encode {} raised {!r}".format(case["message"], exc)
    if case.get("error"):
        return "encode accepted invalid fields: {}".format(case["reason"])
    if _hex(got) != case["hex"]:
        return "encode {}: {} != {}".format(case["message"], _hex(got), case["hex"])
    if cp.FPORT[case["message"]] != case["fport"]:
        return "FPORT[{}] != {}".format(case["message"], case["fport"])
    return None


def _encode_compact(case):
    buf = bytearray(cp.MAX_PAYLOAD)
    try:
        n = cp.encode_compact_into(buf, case["message"], case["fields"])
    except cp.PayloadError:
        if case.get("error"):
            return None
        return "encode_compact {} refused valid fields".format(case["message"])
    except Exception as exc:
        return "encode_compact {} raised {!r}".format(case["message"], exc)
    if case.get("error"):
        return "encode_compact accepted: {}".format(case["reason"])
    if _hex(buf[:n]) != case["hex"]:
        return "encode_compact {}: {} != {}".format(case["message"], _hex(buf[:n]), case["hex"])
    if cp.COMPACT_FPORT[case["message"]] != case["fport"]:
        return "COMPACT_FPORT[{}] != {}".format(case["message"], case["fport"])
    return None


def _decode(case):
    data = binascii.unhexlify(case["hex"])
    try:
        name, fields = cp.decode(case["fport"], data)
    except cp.PayloadError:
        if case.get("error"):
            return None
        return "decode refused fPort {} {}".format(case["fport"], case["hex"])
    except Exception as exc:
        return "decode fPort {} {} raised {!r}".format(case["fport"], case["hex"], exc)
    if case.get("error"):
        return "decode accepted fPort {} {} ({})".format(
            case["fport"],
            case["hex"],
            case.get("reason", "mutation"),
        )
    if name != case["message"] or fields != case["fields"]:
        return "decode fPort {} {} gave {} {!r}".format(case["fport"], case["hex"], name, fields)
    return None


def _allocated(func):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    func()
    after = gc.mem_alloc()
    gc.enable()
    return after - before


def main(path):
    checked = 0
    failures = []
    with open(path) as handle:
        for line in handle:
            if not line.strip():
                continue
            case = json.loads(line)
            checked += 1
            op = case["op"]
            if op == "encode":
                problem = _encode(case)
            elif op == "encode_compact":
                problem = _encode_compact(case)
            else:
                problem = _decode(case)
            if problem and len(failures) < 20:
                failures.append(problem)
    fields = {"fill_percent": 42, "temperature_c": 18, "battery_percent": 85, "config_version": 3}
    data = cp.encode("bin_status", fields)
    buf = bytearray(cp.MAX_PAYLOAD)
    cp.encode_into(buf, "bin_status", fields)  # warm-up
    result = {
        "checked": checked,
        "failures": failures,
        "payload_error_is_value_error": issubclass(cp.PayloadError, ValueError),
        "encode_alloc": _allocated(lambda: cp.encode("bin_status", fields)),
        "encode_into_alloc": _allocated(lambda: cp.encode_into(buf, "bin_status", fields)),
        "decode_alloc": _allocated(lambda: cp.decode(10, data)),
    }
    print(json.dumps(result))


main(sys.argv[1])
