"""The MAC bench's heap figures do not depend on the name of the directory they run in (issue 17:
the MAC-only figure flipped with the temporary directory's path length). The uplink cycle runs in
a short- and a long-named directory; the heap the loaded code takes and the peak are the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools.bench import firmware_mac


@pytest.mark.micropython
def test_cycle_heap_is_the_same_in_short_and_long_directories(
    micropython: str, tmp_path: Path
) -> None:
    lib = tmp_path / "build"
    lib.mkdir()
    firmware_mac._compile_tree(lib)
    accept_hex, down_hex = firmware_mac._frames()
    results = []
    for name in ("a", "a-much-longer-directory-name-" + "x" * 120):
        work = tmp_path / name
        work.mkdir()
        shutil.copytree(lib, work / "lib")
        joined = firmware_mac._micropython(work, "join", "state.json", accept_hex)
        assert joined == {"join": "joined"}
        out = firmware_mac._micropython(work, "cycle", "state.json", down_hex, heap="128k")
        assert out is not None and out["send"] == "ok" and out["boot"] == "warm"
        results.append((out["heap_after_imports"], out["current_after_gc"]))
    assert results[0] == results[1]
