"""FUOTA on the firmware: a 32 KB bundle through a whole campaign on the MicroPython unix port.

One lamp node runs the real MAC and fuota agent in virtual time (tests/firmware/mpy/
fuota_campaign.py): clock sync, TS004 group setup and class C session, TS005 session, then the
bundle's fragments as multicast frames with 10 % and with 30 % of them lost on the air, the
redundancy chosen for each, then a status request. The plan (every downlink payload, the group's
keys, the signed bundle) is built here with protocol.fuota and tools.fuota, as a server would.

Figures: whether each campaign ended with the bundle verified and applied; the peak live heap
during the campaign above what was live once the code was loaded and the plan read (gc.collect()
then gc.mem_alloc() at every frame sent; it holds the MAC, the agent, the fragment bitmaps and
the elimination matrix, and also the harness's simulated air and virtual clock; the fragments
themselves are in a flash file); the fragments on the air; and,
for information, the unix port's wall time for the run at 30 % against the same run with nothing
lost (the decoder's extra work, as a ratio). The unix port is 64-bit: pointers and small-object
headers are twice an ESP32's, so the heap figure is an upper bound for a board.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.fuota import bundle as fb
from protocol.fuota import clocksync, fec, fragmentation, keys, mcsetup
from protocol.fuota._command import PackageVersionReq, encode_commands
from tools.bench.report import Figure
from tools.fuota import public_key_hex

_BENCH = "fuota_firmware"
_ROOT = Path(__file__).resolve().parents[2]
_HARNESS = _ROOT / "tests" / "firmware" / "mpy"
BUNDLE_BYTES = 32 * 1024
FRAG_SIZE = 48  # + 3 bytes of DataFragment header: 51, the EU868 DR0-DR2 FRMPayload limit
HEAP_GOAL_KB = 48.0
APP_KEY = bytes(range(0x20, 0x30))
NWK = bytes(range(0x50, 0x60))
APP = bytes(range(0x60, 0x70))
DEV_ADDR = 0x26012345
MC_ADDR = 0x01AB0001
MC_KEY = bytes(range(0xA0, 0xB0))
NET_EPOCH = 1_400_000_000  # network GPS seconds at virtual t = 0
SESSION_START_S = 200
SESSION_TIMEOUT = 12  # 2^12 s: long enough for ~1,300 fragments one second apart


def redundancy_for(m: int, loss: float) -> int:
    """Coded fragments to send so that M survive w.h.p.: M / (1 - loss) plus a margin, minus M."""
    return int(m / (1.0 - loss) * 1.1) + 10 - m


def plan(
    root: Path,
    bundle: bytes,
    public_key: str,
    loss: float,
    redundancy: int,
    *,
    seed: str = "air",
    running_version: str = "0.1.0",
) -> dict[str, Any]:
    """The campaign as the harness runs it: every payload built with the CPython codec."""
    padded, padding = fec.pad(bundle, FRAG_SIZE)
    m = len(padded) // FRAG_SIZE
    frags = fec.encode(padded, FRAG_SIZE, redundancy)
    rng = random.Random(f"{seed}-{loss}")
    drop = sorted(i for i in range(len(frags)) if rng.random() < loss)
    kek = keys.mc_kekey(keys.mc_root_key_1_0(APP_KEY))
    setup = [
        (clocksync.FPORT, encode_commands([PackageVersionReq()])),
        (mcsetup.FPORT, encode_commands([PackageVersionReq(), mcsetup.McGroupStatusReq(0x0F)])),
        (
            mcsetup.FPORT,
            mcsetup.McGroupSetupReq(
                0, MC_ADDR, keys.mc_key_encrypt(kek, MC_KEY), 0, 0xFFFF
            ).to_bytes(),
        ),
        (
            mcsetup.FPORT,
            mcsetup.McClassCSessionReq(
                0, NET_EPOCH + SESSION_START_S, SESSION_TIMEOUT, 869525000, 5
            ).to_bytes(),
        ),
        (
            fragmentation.FPORT,
            fragmentation.FragSessionSetupReq(0, 0x01, m, FRAG_SIZE, padding).to_bytes(),
        ),
    ]
    after = [(fragmentation.FPORT, fragmentation.FragSessionStatusReq(0, True).to_bytes())]
    return {
        "app_key": APP_KEY.hex(),
        "nwk_s_key": NWK.hex(),
        "app_s_key": APP.hex(),
        "dev_addr": DEV_ADDR,
        "public_key": public_key,
        "root": str(root) + "/",
        "running_version": running_version,
        "net_epoch": NET_EPOCH,
        "setup": [{"fport": p, "hex": h.hex()} for p, h in setup],
        "after": [{"fport": p, "hex": h.hex()} for p, h in after],
        "mc": {
            "addr": MC_ADDR,
            # the group's keys as the server derives them, independently of the node
            "nwk": keys.mc_nwk_s_key(MC_KEY, MC_ADDR).hex(),
            "app": keys.mc_app_s_key(MC_KEY, MC_ADDR).hex(),
            "freq": 869525000,
            "dr": 5,
            "fcnt0": 0,
        },
        "session_start_s": SESSION_START_S,
        "session_timeout": SESSION_TIMEOUT,
        "fragments": [
            fragmentation.DataFragment(0, n + 1, f).to_bytes().hex() for n, f in enumerate(frags)
        ],
        "drop": drop,
        "fragment_gap_ms": 1000,
        "expect_update": True,
        "m": m,
    }


def _micropython() -> str:
    candidate = Path(sys.executable).parent / "micropython"
    found = str(candidate) if candidate.exists() else shutil.which("micropython")
    if found is None:
        raise RuntimeError("micropython is not installed (make venv installs it)")
    return found


def run_campaign(plan_: dict[str, Any], workdir: Path, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run the harness on the unix port; its JSON result (RuntimeError when it fails)."""
    path = workdir / "plan.json"
    path.write_text(json.dumps(plan_))
    search = [str(_HARNESS), str(_ROOT / "firmware" / "lib"), str(_ROOT / "firmware")]
    result = subprocess.run(
        [_micropython(), str(_HARNESS / "fuota_campaign.py"), str(path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "MICROPYPATH": ":".join([".frozen", *search])},
        cwd=_ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"fuota_campaign.py failed: {(result.stderr or result.stdout)[-400:]}")
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def _bundle(key: Ed25519PrivateKey) -> bytes:
    # a module of BUNDLE_BYTES minus the header: the node only hashes and copies it
    body = hashlib.shake_256(b"citypack fuota bench").digest(BUNDLE_BYTES - 400)
    data = fb.build("0.2.0", "0.1.0", [fb.Module("apps/big.mpy", body)], [], key.sign)
    return data


def _campaign(tmp: Path, data: bytes, public: str, loss: float) -> tuple[dict[str, Any], float]:
    root = tmp / f"node-{int(loss * 100)}"
    (root / "lib" / "apps").mkdir(parents=True)
    (root / "lib" / "apps" / "old.mpy").write_bytes(b"M\x06old")
    m = -(-len(data) // FRAG_SIZE)
    p = plan(root, data, public, loss, redundancy_for(m, loss) if loss else 10)
    t0 = time.perf_counter()
    out = run_campaign(p, tmp)
    wall = time.perf_counter() - t0
    out["plan_fragments"] = len(p["fragments"])
    out["plan_lost"] = len(p["drop"])
    out["m"] = p["m"]
    return out, wall


def run() -> list[Figure]:
    key = Ed25519PrivateKey.generate()
    data = _bundle(key)
    public = public_key_hex(key)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        clean, clean_wall = _campaign(tmp, data, public, 0.0)
        results = {}
        for loss in (0.10, 0.30):
            results[loss] = _campaign(tmp, data, public, loss)
    peak = max(
        (r[0]["heap"]["peak"] - r[0]["heap"]["base"]) for r in [*results.values(), (clean, 0.0)]
    )
    for loss, (out, _wall) in results.items():
        ok = out.get("raised") is None and out["report"]["update"] == [True, "applied", "0.2.0"]
        pct = int(loss * 100)
        figures.append(
            Figure(
                _BENCH,
                f"32 KB bundle applied with {pct} % fragment loss",
                1.0 if ok else 0.0,
                "yes=1",
                goal=1.0,
                better=">=",
                note=(
                    f"M={out['m']}, {out['plan_fragments']} fragments sent "
                    f"({out['plan_fragments'] - out['m']} coded), {out['plan_lost']} lost"
                ),
            )
        )
    figures.append(
        Figure(
            _BENCH,
            "peak live heap during a campaign, above the code",
            round(peak / 1024, 1),
            "KB",
            goal=HEAP_GOAL_KB,
            better="<=",
            note=(
                "MAC, agent, decoder, plus the harness's simulated air and virtual clock; "
                "sampled after gc.collect(); 64-bit unix port"
            ),
        )
    )
    figures.append(
        Figure(
            _BENCH,
            "unix-port run time, 30 % loss vs none",
            round(results[0.30][1] / clean_wall, 2),
            "x",
            note=f"no loss: {clean_wall:.1f} s wall (virtual-time campaign incl. setup)",
        )
    )
    return figures
