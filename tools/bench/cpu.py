"""Who used the cores during a bench's window: CPU seconds per part and for the whole machine.

Read from ``/proc`` (Linux only; proc(5)): ``/proc/<pid>/stat`` fields 14-17 (utime, stime,
cutime, cstime, in clock ticks) for a part's processes, and the first line of ``/proc/stat``
for the machine (user, nice, system, idle, iowait, irq, softirq, steal). A throughput ratio
says how fast; this says whether the machine had a core left: a run whose parts keep every core
busy is bounded by CPU per uplink, one that leaves a core idle is bounded by something else
(a lock, a round trip, a queue). Steal is time the hypervisor gave to another guest: on a
shared VM it is CPU this run wanted and did not get.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CpuWindow", "Usage", "postgres_cpu_s", "process_cpu_s"]

_TICK = float(os.sysconf("SC_CLK_TCK"))


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone, or not ours to read
        return None
    # field 2 is "(comm)" and comm may hold spaces or parentheses: split after the last ")"
    return text[text.rindex(")") + 2 :].split()


def process_cpu_s(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (all its threads); 0 once it has exited.

    ``reaped_children`` adds the time of children it has waited for (cutime + cstime)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # fields[0] is proc(5)'s field 3 (state): utime is field 14, so index 11
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def _pids_named(name: str) -> Iterable[tuple[int, int]]:
    """``(pid, parent pid)`` of every process whose command name is ``name``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != name:
                continue
        except OSError:
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            yield int(entry.name), int(fields[1])


def postgres_cpu_s() -> float:
    """CPU seconds of every PostgreSQL process on this machine: the server's backends and
    workers, plus what the postmaster has reaped (a backend that ended counts there)."""
    procs = dict(_pids_named("postgres"))
    total = 0.0
    for pid, parent in procs.items():
        total += process_cpu_s(pid, reaped_children=parent not in procs)
    return total


def _machine() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all cores."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    values = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


@dataclass
class Usage:
    """One window: seconds of wall time, CPU seconds per part, and the machine's cores."""

    wall_s: float
    parts: dict[str, float]
    busy_s: float  # every process on the machine (this bench's parts and anything else)
    steal_s: float
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def busy_cores(self) -> float:
        """How many cores the whole machine kept busy on average during the window."""
        return self.busy_s / self.wall_s

    def per_item_us(self, items: int) -> dict[str, float]:
        return {name: seconds / items * 1e6 for name, seconds in self.parts.items()}

    def describe(self, items: int, what: str = "uplink") -> str:
        """``gateway 120 µs, mosquitto 30 µs … per uplink; machine 1.9 of 2 cores busy ...``."""
        each = ", ".join(f"{name} {us:.0f} µs" for name, us in self.per_item_us(items).items())
        return (
            f"CPU per {what}: {each}; machine {self.busy_s / items * 1e6:.0f} µs; "
            f"{self.busy_cores:.2f} of {self.cores} cores busy, "
            f"{self.steal_s / self.wall_s:.2f} stolen by the hypervisor"
        )


class CpuWindow:
    """``with CpuWindow({"gateway": lambda: process_cpu_s(pid)}) as w: ...``; then ``w.usage``.

    Each part is a function giving that part's CPU seconds so far (a counter that only
    grows); the window keeps the difference."""

    def __init__(self, parts: dict[str, Callable[[], float]]) -> None:
        self._parts = parts
        self._start: dict[str, float] = {}
        self._machine = (0.0, 0.0)
        self._wall = 0.0
        self.usage: Usage | None = None

    def __enter__(self) -> CpuWindow:
        self._start = {name: read() for name, read in self._parts.items()}
        self._machine = _machine()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        busy, steal = _machine()
        self.usage = Usage(
            wall_s=wall,
            parts={name: read() - self._start[name] for name, read in self._parts.items()},
            busy_s=busy - self._machine[0],
            steal_s=steal - self._machine[1],
        )
