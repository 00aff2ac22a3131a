"""`citypack firmware build`: a bundle of .mpy that the MicroPython unix port can import, a
manifest that lists every file with its size and hash and the micropython-lib packages, no
host-only modules, and the size goal of issue 5."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.helpers import procs
from tools.cli import main as cli_main
from tools.firmware import SIZE_GOAL_BYTES, build_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("fw") / "bundle")


def test_manifest_lists_every_file_with_size_and_hash(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert {"boot.py", "main.py", "lib/apps/bin_node.mpy", "lib/apps/lamp_node.mpy"} <= paths
    assert {"lib/lorawan/mac.mpy", "lib/citypack_payloads.mpy", "lib/boards/heltec_v3.mpy"} <= paths
    for f in manifest["files"]:
        data = (bundle / f["path"]).read_bytes()
        assert len(data) == f["size"]
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        if f["path"].endswith(".mpy"):
            assert data[:2] == b"M\x06"  # .mpy header: magic 'M', version 6
    assert not any("/sim_" in p or p.endswith("vclock.mpy") for p in paths)
    assert manifest["packages"] == ["lora-sx126x", "lora-sx127x", "lora-async"]
    assert manifest["mpy_bytes"] == sum(
        f["size"] for f in manifest["files"] if f["path"].endswith(".mpy")
    )
    assert manifest["mpy_bytes"] < SIZE_GOAL_BYTES


@pytest.mark.micropython
def test_the_compiled_apps_import_on_micropython(bundle: Path, tmp_path: Path) -> None:
    script = tmp_path / "imp.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:] = ['.frozen', {str(bundle / 'lib')!r}]\n"
        "import json, apps.bin_node, apps.lamp_node, apps.maclink, lorawan.mac, drivers.sun\n"
        "print(json.dumps({'ok': apps.bin_node.__file__.endswith('.mpy')}))\n"
    )
    assert procs.run_micropython_json(script) == {"ok": True}


def test_cli_rebuilds_prints_the_size_table_and_drops_stale_files(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"].append({"path": "lib/apps/gone.mpy", "size": 1, "sha256": "", "source": ""})
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    stale = bundle / "lib" / "apps" / "gone.mpy"
    stale.write_bytes(b"x")
    keep = bundle / "notes.txt"
    keep.write_text("not ours")
    assert cli_main(["firmware", "build", "--out", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "lib/apps" in out and ".mpy total" in out and "lora-sx126x" in out
    assert not stale.exists()  # listed by the previous build, not produced by this one
    assert keep.exists()  # not ours: left alone
    assert json.loads((bundle / "manifest.json").read_text())["mpy_bytes"] > 0
