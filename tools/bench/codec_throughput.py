"""CPython decode throughput of the status messages, as a ratio to bare ``cbor2.loads``.

Issue 2 "Numbers": decoding a status uplink with protocol.codec (CBOR subset checks, schema,
ranges, defaults) must keep at least 0.3 of the throughput of ``cbor2.loads`` alone on the same
bytes, measured in the same run (the machines are shared and noisy, so only the ratio counts).
Each figure is the best of many short interleaved rounds. The strict pure-Python reader (what the
fast path falls back to for unusual bytes) and encoding against ``cbor2.dumps`` are printed for
information.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cbor2

from protocol import catalogue, codec
from tools.bench.report import Figure

BENCH = "codec_throughput"
GOAL_RATIO = 0.3
ROUNDS = 40
ITERATIONS = 400


def _payloads() -> list[tuple[int, bytes]]:
    out = []
    for msg in catalogue.MESSAGES:
        if msg.periodic:
            for fields in msg.examples.values():
                out.append(codec.encode(msg.name, fields))
    return out


def _best_rate(run: Callable[[], None], operations: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return operations / best


def measure(rounds: int = ROUNDS, iterations: int = ITERATIONS) -> dict[str, float]:
    payloads = _payloads()
    blobs = [data for _, data in payloads]
    objects = [cbor2.loads(b) for b in blobs]
    fields = [codec.decode(p, d).fields for p, d in payloads]
    names = [codec.decode(p, d).message for p, d in payloads]
    decode, decode_strict, loads, dumps, encode = (
        codec.decode,
        codec.decode_strict,
        cbor2.loads,
        cbor2.dumps,
        codec.encode,
    )
    ops = iterations * len(payloads)

    # Both loops have the same shape (unpack fPort and bytes, one call), so the ratio compares
    # the calls alone.
    def bare_loads() -> None:
        for _ in range(iterations):
            for _fport, data in payloads:
                loads(data)

    def ours() -> None:
        for _ in range(iterations):
            for fport, data in payloads:
                decode(fport, data, "up")

    def strict() -> None:
        for _ in range(iterations // 4):
            for fport, data in payloads:
                decode_strict(fport, data, "up")

    def bare_dumps() -> None:
        for _ in range(iterations):
            for obj in objects:
                dumps(obj, canonical=True)

    def ours_encode() -> None:
        for _ in range(iterations // 4):
            for name, f in zip(names, fields, strict=True):
                encode(name, f)

    rates: dict[str, float] = {}
    # Interleave the rounds so a noisy neighbour hurts both sides alike.
    for _ in range(rounds):
        for label, func, count in (
            ("loads", bare_loads, ops),
            ("decode", ours, ops),
            ("strict", strict, (iterations // 4) * len(payloads)),
            ("dumps", bare_dumps, ops),
            ("encode", ours_encode, (iterations // 4) * len(payloads)),
        ):
            rates[label] = max(rates.get(label, 0.0), _best_rate(func, count, 1))
    return rates


def run() -> list[Figure]:
    rates = measure()
    ratio = rates["decode"] / rates["loads"]
    return [
        Figure(
            BENCH,
            "status decode / cbor2.loads",
            round(ratio, 3),
            "ratio",
            goal=GOAL_RATIO,
            better=">=",
            note=f"decode {rates['decode']:,.0f}/s vs loads {rates['loads']:,.0f}/s "
            "(bin_status, lamp_status, lamp_counters examples)",
        ),
        Figure(
            BENCH,
            "status decode, strict reader / cbor2.loads",
            round(rates["strict"] / rates["loads"], 3),
            "ratio",
            note="the pure-Python fallback for unusual bytes",
        ),
        Figure(
            BENCH,
            "status encode / cbor2.dumps",
            round(rates["encode"] / rates["dumps"], 3),
            "ratio",
            note=f"encode {rates['encode']:,.0f}/s vs dumps {rates['dumps']:,.0f}/s",
        ),
    ]


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.value} {figure.unit}  ({figure.note})")
