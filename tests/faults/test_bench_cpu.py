"""tools/bench/cpu.py: the CPU a bench attributes to a part is the CPU that part used, and the
machine's busy time covers it."""

from __future__ import annotations

import subprocess
import sys
import time

from tools.bench import cpu

BURN = (
    "import ctypes, time\n"
    # PR_SET_NAME (prctl(2)): a command name with a space and a ")" in it
    "ctypes.CDLL(None).prctl(15, b'burn (x) y', 0, 0, 0)\n"
    "end = time.process_time() + {s}\n"
    "while time.process_time() < end: pass\n"
    "import sys; sys.stdin.read()\n"  # then idle until the test lets it go
)


def test_a_child_that_burns_half_a_second_is_counted_as_half_a_second() -> None:
    # its command name has a space and a ")": the stat line is split after the last ")"
    child = subprocess.Popen([sys.executable, "-c", BURN.format(s=0.5)], stdin=subprocess.PIPE)
    try:
        with cpu.CpuWindow({"child": lambda: cpu.process_cpu_s(child.pid)}) as window:
            deadline = time.monotonic() + 60
            while cpu.process_cpu_s(child.pid) < 0.49 and time.monotonic() < deadline:
                time.sleep(0.01)
            with open(f"/proc/{child.pid}/comm") as comm:
                assert comm.read().strip() == "burn (x) y"
        # read after the window: the child may burn its last ticks after the loop above
        used = cpu.process_cpu_s(child.pid)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    usage = window.usage
    assert usage is not None
    # the window holds at most what the child used in all (not its start-up before it)
    assert usage.parts["child"] <= used
    assert 0.3 <= usage.parts["child"] <= 0.6
    # everything on the machine: at least the child's share, never more than every core's time
    assert usage.busy_s >= usage.parts["child"] - 0.05
    assert usage.busy_s <= usage.cores * usage.wall_s + 0.05
    assert "child" in usage.describe(10) and "cores busy" in usage.describe(10)


def test_a_process_that_is_gone_reads_as_zero() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    assert cpu.process_cpu_s(child.pid) == 0.0


def test_postgres_time_is_a_sum_that_only_grows() -> None:
    first = cpu.postgres_cpu_s()
    assert first >= 0.0
    assert cpu.postgres_cpu_s() >= first
