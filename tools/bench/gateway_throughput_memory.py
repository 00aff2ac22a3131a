"""Where the gateway's memory goes at city scale (issue 17): RSS by phase and the largest
holders after every device reported, in bytes per device.

The same run as the RSS figure of :mod:`tools.bench.gateway_throughput` (a fresh interpreter,
``N`` registered bins in SQLite, the gateway connected to a private mosquitto, every device
reporting ``WARM_REPORTS`` times through its processing and commit: :func:`warm`), measured
three ways:

- **RSS by phase**: after the imports (the interpreter and its libraries), after
  ``Gateway.open`` (the registry loaded) and after the warm-up, each after a full collection;
- **tracemalloc** (``--trace``, started after the imports, so it sees only what the gateway
  allocates for its devices): the live blocks after the warm-up grouped by the line that
  allocated them (``--frames 1``) or by a traceback of ``--frames`` frames;
- **census** (``--census``): live objects the collector tracks plus the floats, strings and
  ints that hang off them, counted by type with ``sys.getsizeof``.

tracemalloc slows processing about threefold and its own bookkeeping inflates RSS: the RSS
figures of a ``--trace`` run are not the bench's; compare RSS on runs without it.

``python -m tools.bench.gateway_throughput_memory --devices 100000 [--trace] [--census]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import linecache
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from tools.bench.gateway_throughput import (
    WARM_REPORTS,
    _config,
    _register,
    _rss_kb,
    _start_mosquitto,
    _wait,
    warm,
)

_ROOT = str(Path(__file__).resolve().parents[2])


def _short(filename: str) -> str:
    if filename.startswith(_ROOT):
        return filename[len(_ROOT) + 1 :]
    index = filename.find("site-packages/")
    if index >= 0:
        return filename[index + len("site-packages/") :]
    return filename


def _census(devices: int, top: int) -> list[str]:
    """Objects reachable from the collector's list, by type: container objects and the
    untracked atoms (float, str, int, bytes) they refer to, each counted once."""
    gc.collect()
    tracked = gc.get_objects()
    seen: set[int] = set()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()

    def count(obj: object) -> None:
        key = id(obj)
        if key in seen:
            return
        seen.add(key)
        name = type(obj).__name__
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)

    for obj in tracked:
        count(obj)
    for obj in tracked:
        for ref in gc.get_referents(obj):
            if not gc.is_tracked(ref):
                count(ref)
    lines = [f"census of {len(seen):,} objects (getsizeof; dict/list include their tables)"]
    for name, size in sizes.most_common(top):
        lines.append(
            f"  {size / devices:9.1f} B/dev {counts[name] / devices:7.2f} obj/dev"
            f" {size / 1e6:8.1f} MB  {name}"
        )
    return lines


def _allocators(devices: int) -> list[str]:
    """What the two allocators hold against what is live in them: pymalloc (objects up to
    512 B; ``sys._debugmallocstats``) and glibc malloc (larger blocks, C libraries such as
    SQLite; ``mallinfo2``). The difference is free space RSS still counts (fragmentation)."""
    import ctypes
    import os
    import re

    lines = []
    with tempfile.TemporaryFile(mode="w+") as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read()

    def number(label: str) -> int:
        match = re.search(re.escape(label) + r"\s*=\s*([\d,]+)", text)
        return int(match.group(1).replace(",", "")) if match else 0

    arenas = number("# arenas allocated current") * (1 << 20)
    used = number("# bytes in allocated blocks")
    lines.append(
        f"pymalloc: arenas {arenas / 1e6:.1f} MB, live blocks {used / 1e6:.1f} MB "
        f"({used / devices:.0f} B/dev), free in arenas {(arenas - used) / 1e6:.1f} MB"
    )

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Mallinfo2
        info = libc.mallinfo2()
        lines.append(
            f"glibc malloc: heap {info.arena / 1e6:.1f} MB (in use {info.uordblks / 1e6:.1f},"
            f" free {info.fordblks / 1e6:.1f}), mmapped {info.hblkhd / 1e6:.1f} MB"
        )
    except (OSError, AttributeError):
        lines.append("glibc malloc: mallinfo2 not available")
    return lines


def _trace_report(snapshot: Any, devices: int, frames: int, top: int) -> list[str]:
    import tracemalloc

    snapshot = snapshot.filter_traces(
        (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        )
    )
    key = "lineno" if frames == 1 else "traceback"
    stats = snapshot.statistics(key)
    total = sum(s.size for s in stats)
    lines = [f"tracemalloc: {total / 1e6:.1f} MB live = {total / devices:.0f} B/device, by {key}"]
    for stat in stats[:top]:
        lines.append(
            f"  {stat.size / devices:8.1f} B/dev {stat.count / devices:6.2f} blk/dev"
            f" {stat.size / 1e6:7.1f} MB"
        )
        for frame in reversed(stat.traceback):  # innermost last
            code = linecache.getline(frame.filename, frame.lineno).strip()
            lines.append(f"      {_short(frame.filename)}:{frame.lineno}  {code[:90]}")
    return lines


def child(port: int, db: str, devices: int, trace: int, census: bool, top: int) -> None:
    """In a fresh interpreter: the phases above, printed as text, then one JSON line."""
    from gateway.service import Gateway

    gc.collect()
    rss_imports = _rss_kb()
    if trace:
        import tracemalloc

        tracemalloc.start(trace)

    async def main() -> dict[str, Any]:
        app = str(uuid.uuid4())
        gateway = Gateway(_config(port, app, Path(db), f"mem-{uuid.uuid4().hex[:8]}"))
        await gateway.open()
        gc.collect()
        rss_open = _rss_kb()
        task = asyncio.create_task(gateway.run())
        await _wait(gateway.bridge.connected.is_set, "gateway connect", 30)
        started = time.monotonic()
        await warm(gateway, app, devices)
        warm_s = time.monotonic() - started
        rss_warm = _rss_kb()
        lines: list[str] = []
        if trace:
            import tracemalloc

            lines += _trace_report(tracemalloc.take_snapshot(), devices, trace, top)
        if census:
            lines += _census(devices, top)
        lines += _allocators(devices)
        print("\n".join(lines), flush=True)
        gateway.stop()
        await asyncio.wait_for(task, 30)
        await gateway.close()
        return {
            "devices": len(gateway.devices),
            "warm_s": round(warm_s, 1),
            "rss_imports_mb": round(rss_imports / 1024, 1),
            "rss_open_mb": round(rss_open / 1024, 1),
            "rss_warm_mb": round(rss_warm / 1024, 1),
            "bytes_per_device_total": round(rss_warm * 1024 / devices),
            "bytes_per_device_above_imports": round((rss_warm - rss_imports) * 1024 / devices),
            "bytes_per_device_warm_only": round((rss_warm - rss_open) * 1024 / devices),
        }

    print(json.dumps(asyncio.run(main())))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--trace", type=int, default=0, metavar="FRAMES", help="tracemalloc")
    parser.add_argument("--census", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(f"{args.devices:,} devices, each reporting {WARM_REPORTS} times", flush=True)
    with tempfile.TemporaryDirectory(prefix="citypack-gwmem-") as tmp:
        directory = Path(tmp)
        broker, port = _start_mosquitto(directory)
        try:
            db = directory / "mem.db"
            asyncio.run(_register(db, args.devices))
            code = (
                "import sys; from tools.bench.gateway_throughput_memory import child; "
                "a = sys.argv; child(int(a[1]), a[2], int(a[3]), int(a[4]), a[5] == '1', "
                "int(a[6]))"
            )
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    code,
                    str(port),
                    str(db),
                    str(args.devices),
                    str(args.trace),
                    "1" if args.census else "0",
                    str(args.top),
                ],
                cwd=_ROOT,
                check=True,
                timeout=3600,
            )
        finally:
            broker.terminate()
            broker.wait(timeout=10)
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
