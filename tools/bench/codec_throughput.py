"""CPython decode throughput of the status messages, as a ratio to bare ``cbor2.loads``.

Issue 2 "Numbers": decoding a status uplink with protocol.codec (CBOR subset checks, schema,
ranges, defaults) must keep at least 0.3 of the throughput of ``cbor2.loads`` alone on the same
bytes, measured in the same run (the machines are shared and noisy, so only the ratio counts).
Each figure is the best of many short interleaved rounds. The payloads are every catalogue
example of the periodic status messages (typical, minimum, maximum, edge); the typical ones alone,
the strict pure-Python reader (what non-canonical or unusual bytes go through) and encoding
against ``cbor2.dumps`` are printed for information.
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
ITERATIONS = 200


def _payloads(typical_only: bool) -> list[tuple[int, bytes]]:
    """The periodic status messages: their typical examples (what the fleet sends all day), or
    every example including the extremes (all flags set, largest counters)."""
    out = []
    for msg in catalogue.MESSAGES:
        if msg.periodic:
            for label, fields in msg.examples.items():
                if label == "typical" or not typical_only:
                    out.append(codec.encode(msg.name, fields))
    return out


def _best_rate(run: Callable[[], None], operations: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return operations / best


def measure(
    rounds: int = ROUNDS, iterations: int = ITERATIONS, *, typical_only: bool = True
) -> dict[str, float]:
    payloads = _payloads(typical_only)
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
    # Pairs are interleaved round by round so a noisy neighbour hurts both sides alike; the
    # headline pair (loads, decode) gets the most rounds.
    few = (iterations // 4) * len(payloads)
    for pair, pair_rounds in (
        ((("loads", bare_loads, ops), ("decode", ours, ops)), rounds * 3),
        ((("loads_again", bare_loads, ops), ("strict", strict, few)), rounds // 2),
        ((("dumps", bare_dumps, ops), ("encode", ours_encode, few)), rounds // 2),
    ):
        for _ in range(pair_rounds):
            for label, func, count in pair:
                rates[label] = max(rates.get(label, 0.0), _best_rate(func, count, 1))
    rates["loads"] = max(rates["loads"], rates.pop("loads_again"))
    return rates


def run() -> list[Figure]:
    rates = measure(typical_only=False)
    typical = measure(rounds=ROUNDS // 2, typical_only=True)
    ratio = rates["decode"] / rates["loads"]
    return [
        Figure(
            BENCH,
            "status decode / cbor2.loads",
            round(ratio, 3),
            "ratio",
            goal=GOAL_RATIO,
            better=">=",
            note=f"decode {rates['decode']:,.0f}/s vs loads {rates['loads']:,.0f}/s (every "
            "example of bin_status, lamp_status, lamp_counters)",
        ),
        Figure(
            BENCH,
            "status decode / cbor2.loads, typical only",
            round(typical["decode"] / typical["loads"], 3),
            "ratio",
            note="the typical examples: what the fleet sends all day",
        ),
        Figure(
            BENCH,
            "status decode, strict reader / cbor2.loads",
            round(rates["strict"] / rates["loads"], 3),
            "ratio",
            note="the pure-Python reader for non-canonical or unusual bytes",
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
    for figure in run():  # python -m tools.bench.codec_throughput
        print(f"{figure.name}: {figure.value} {figure.unit}  ({figure.note})")
