"""Write a node's firmware bundle, configuration and keys to a board or a directory, then verify.

The layout is fixed by docs/interfaces.md ("Node configuration on the board's filesystem"):

- the firmware bundle (``tools.firmware.build_bundle``: ``.mpy`` files + ``manifest.json``) at the
  filesystem root, as the bundle lays it out;
- ``/config.json`` with the node's identity and settings (never a key);
- the AppKey in ESP32 NVS namespace ``citypack``, blob ``app_key`` on a board, or
  ``/secrets.json`` ``{"app_key": hex}`` with mode 0600 for ``--target DIR`` (tests, factories).

``firmware/lib/nodeconfig.py`` reads exactly this back on the node.

Boards are reached with ``mpremote`` (and ``esptool`` to flash MicroPython itself). Every command
line is built by a function here so it can be checked without hardware. The key never goes on a
command line (where ``ps`` shows it): the NVS writer is a script in a 0600 temporary file that
``mpremote run`` executes, and the read-back compares SHA-256 digests, never the key itself.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tools.provision.errors import DeployError
from tools.provision.inventory import Node, write_atomic

CONFIG_NAME = "config.json"
SECRETS_NAME = "secrets.json"
NVS_NAMESPACE = "citypack"
NVS_KEY = "app_key"
# Where MicroPython's image goes (the bootloader offset): 0x1000 on the ESP32 (TTGO LoRa32),
# 0x0 on the ESP32-S3 (Heltec WiFi LoRa 32 V3). micropython.org/download/ESP32_GENERIC{,_S3}.
FLASH_LAYOUT = {"ttgo-lora32": ("esp32", "0x1000"), "heltec-v3": ("esp32s3", "0x0")}
RESERVED = (CONFIG_NAME, SECRETS_NAME)


def node_config(node: Node, app: dict[str, Any] | None = None) -> dict[str, Any]:
    """``/config.json`` for a node (docs/interfaces.md); keys are never in it."""
    return {
        "dev_eui": node.dev_eui,
        "join_eui": node.join_eui,
        "kind": node.kind,
        "name": node.name,
        "region": node.region,
        "board": node.board,
        "latitude": node.latitude,
        "longitude": node.longitude,
        "activation": "otaa",
        "app": dict(app or {}),
    }


def config_bytes(node: Node, app: dict[str, Any] | None = None) -> bytes:
    return (json.dumps(node_config(node, app), indent=1, sort_keys=True) + "\n").encode()


def secrets_bytes(app_key: bytes) -> bytes:
    return (json.dumps({"app_key": app_key.hex()}) + "\n").encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the firmware bundle ------------------------------------------------------------------------


def build_bundle(work_dir: Path) -> Path:
    """Build the firmware bundle with ``tools.firmware.build_bundle`` into ``work_dir``."""
    try:
        firmware: Any = importlib.import_module("tools.firmware")
    except ImportError:
        firmware = None
    builder = getattr(firmware, "build_bundle", None)
    if builder is None:
        raise DeployError(
            "the firmware bundle is missing: `citypack firmware build` "
            "(tools.firmware.build_bundle) is not in this checkout; pass --bundle DIR with a "
            "bundle built elsewhere",
            exit_code=2,
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    result = Path(builder(work_dir))
    return result.parent if result.is_file() else result


def bundle_files(bundle: Path) -> dict[str, Path]:
    """Files of a bundle by their path on the board (POSIX, relative to ``/``)."""
    if not bundle.is_dir():
        raise DeployError(
            f"the firmware bundle {bundle} is missing or not a directory", exit_code=2
        )
    files: dict[str, Path] = {}
    for path in sorted(bundle.rglob("*")):
        if path.is_symlink():
            raise DeployError(
                f"the firmware bundle has a symbolic link {path}; refusing", exit_code=2
            )
        if path.is_file():
            remote = PurePosixPath(*path.relative_to(bundle).parts).as_posix()
            if remote in RESERVED:
                raise DeployError(
                    f"the firmware bundle carries {remote}; node configuration comes from "
                    "provisioning only",
                    exit_code=2,
                )
            files[remote] = path
    if not files:
        raise DeployError(f"the firmware bundle {bundle} is empty", exit_code=2)
    _check_manifest(bundle, files)
    return files


def _check_manifest(bundle: Path, files: dict[str, Path]) -> None:
    """When ``manifest.json`` lists files with SHA-256 digests, the bundle must match it."""
    manifest = bundle / "manifest.json"
    if not manifest.exists():
        raise DeployError(f"the firmware bundle {bundle} has no manifest.json", exit_code=2)
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"{manifest} is not valid JSON: {exc}", exit_code=2) from exc
    listed = data.get("files") if isinstance(data, dict) else None
    entries: list[tuple[str, str]] = []
    if isinstance(listed, dict):
        entries = [(k, v) for k, v in listed.items() if isinstance(v, str)]
    elif isinstance(listed, list):
        entries = [
            (str(e.get("path")), str(e.get("sha256")))
            for e in listed
            if isinstance(e, dict) and e.get("sha256")
        ]
    for remote, digest in entries:
        remote = remote.lstrip("/")
        if remote not in files:
            raise DeployError(f"manifest.json lists {remote}, which the bundle lacks", exit_code=2)
        if len(digest) == 64 and sha256(files[remote].read_bytes()) != digest.lower():
            raise DeployError(f"{remote} does not match its SHA-256 in manifest.json", exit_code=2)


# --- --target DIR -------------------------------------------------------------------------------


@dataclass
class DeployResult:
    files: dict[str, str]  # board path -> sha256 of what was written
    target: str


def expected_tree(bundle: dict[str, Path], config: bytes, app_key: bytes) -> dict[str, str]:
    tree = {remote: sha256(path.read_bytes()) for remote, path in bundle.items()}
    tree[CONFIG_NAME] = sha256(config)
    tree[SECRETS_NAME] = sha256(secrets_bytes(app_key))
    return tree


def read_tree(root: Path) -> dict[str, str]:
    tree: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            tree[PurePosixPath(*path.relative_to(root).parts).as_posix()] = sha256(
                path.read_bytes()
            )
    return tree


def deploy_to_dir(
    node: Node,
    app_key: bytes,
    bundle: Path,
    target: Path,
    *,
    app: dict[str, Any] | None = None,
    clean: bool = False,
) -> DeployResult:
    """Lay out the board's filesystem in ``target`` and verify it file by file."""
    files = bundle_files(bundle)
    config = config_bytes(node, app)
    if clean and target.exists():
        for child in target.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    target.mkdir(parents=True, exist_ok=True)
    for remote, source in files.items():
        destination = target / remote
        destination.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(destination, source.read_bytes(), mode=0o644)
    write_atomic(target / CONFIG_NAME, config, mode=0o644)
    write_atomic(target / SECRETS_NAME, secrets_bytes(app_key), mode=0o600)
    expected = expected_tree(files, config, app_key)
    verify_tree(target, expected)
    return DeployResult(files=expected, target=str(target))


def verify_tree(target: Path, expected: dict[str, str]) -> None:
    actual = read_tree(target)
    extra = sorted(set(actual) - set(expected))
    missing = sorted(set(expected) - set(actual))
    differ = sorted(k for k in set(actual) & set(expected) if actual[k] != expected[k])
    if extra or missing or differ:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if differ:
            parts.append(f"differs {', '.join(differ[:5])}")
        if extra:
            parts.append(f"not part of this deployment {', '.join(extra[:5])} (use --clean)")
        raise DeployError(f"verification of {target} failed: {'; '.join(parts)}")
    mode = (target / SECRETS_NAME).stat().st_mode & 0o777
    if mode != 0o600:
        raise DeployError(f"{target / SECRETS_NAME} has mode {mode:04o}, expected 0600")


# --- a board over USB ---------------------------------------------------------------------------


def _mpremote() -> list[str]:
    return [sys.executable, "-m", "mpremote"]


def esptool_flash_commands(port: str, board: str, firmware: Path) -> list[list[str]]:
    """Erase the flash and write a MicroPython image at the board's bootloader offset."""
    chip, offset = FLASH_LAYOUT[board]
    base = [sys.executable, "-m", "esptool", "--chip", chip, "--port", port]
    return [
        [*base, "erase-flash"],
        [*base, "--baud", "460800", "write-flash", offset, str(firmware)],
    ]


def mpremote_mkdir_script(remote_files: Sequence[str]) -> str:
    dirs = sorted({str(PurePosixPath("/" + f).parent) for f in remote_files} - {"/"}, key=len)
    return (
        "import os\n"
        f"for d in {dirs!r}:\n"
        "    try:\n        os.mkdir(d)\n    except OSError:\n        pass\n"
    )


def mpremote_copy_command(
    port: str, files: Sequence[tuple[Path, str]], mkdir_script: str
) -> list[str]:
    """One ``mpremote`` run: make directories, then copy every file (chained with ``+``)."""
    cmd = [*_mpremote(), "connect", port, "exec", mkdir_script]
    for local, remote in files:
        cmd += ["+", "fs", "cp", str(local), ":/" + remote.lstrip("/")]
    return cmd


def nvs_write_script(app_key: bytes, *, root: str = "/") -> str:
    """MicroPython that stores the AppKey in NVS and removes any /secrets.json from the board."""
    return (
        "import esp32, os, binascii\n"
        f"n = esp32.NVS({NVS_NAMESPACE!r})\n"
        f"n.set_blob({NVS_KEY!r}, binascii.unhexlify({app_key.hex()!r}))\n"
        "n.commit()\n"
        "try:\n"
        f"    os.remove({_board_path(root, SECRETS_NAME)!r})\n"
        "except OSError:\n"
        "    pass\n"
    )


def _board_path(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name.lstrip("/")


def verify_script(remote_files: Sequence[str], *, root: str = "/") -> str:
    """MicroPython printing one JSON line: SHA-256 of each file and of the NVS key (not the key)."""
    return (
        "import esp32, hashlib, binascii, json\n"
        "def h(b):\n"
        "    return binascii.hexlify(hashlib.sha256(b).digest()).decode()\n"
        "out = {}\n"
        f"for p in {[f.lstrip('/') for f in remote_files]!r}:\n"
        "    try:\n"
        f"        with open({root.rstrip('/') + '/'!r} + p, 'rb') as f:\n"
        "            out[p] = h(f.read())\n"
        "    except OSError:\n"
        "        out[p] = None\n"
        "buf = bytearray(16)\n"
        "try:\n"
        f"    n = esp32.NVS({NVS_NAMESPACE!r}).get_blob({NVS_KEY!r}, buf)\n"
        "    out['nvs:app_key'] = h(bytes(buf[:n]))\n"
        "except OSError:\n"
        "    out['nvs:app_key'] = None\n"
        "print(json.dumps(out))\n"
    )


def run_script_command(port: str, script_path: Path) -> list[str]:
    return [*_mpremote(), "connect", port, "run", str(script_path)]


def exec_command(port: str, code: str) -> list[str]:
    return [*_mpremote(), "connect", port, "exec", code]


def _run(cmd: list[str], *, what: str, timeout_s: float = 300.0) -> str:  # pragma: no cover - hw
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"{what} failed: {type(exc).__name__}") from exc
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DeployError(f"{what} failed (exit {result.returncode}): {tail[0][:200]}")
    return result.stdout


def check_serial_port(port: str) -> None:
    """Refuse a serial device path that does not exist, naming the ones that do (mpremote's own
    message for it is "may be in use by another program"). mpremote's short names (``a0``,
    ``u0``, ``auto``, ``id:…``) are left to mpremote."""
    if not (port.startswith("/dev/") or port.upper().startswith("COM")):
        return
    from serial.tools import list_ports

    present = sorted(p.device for p in list_ports.comports())
    if port in present or (port.startswith("/dev/") and Path(port).exists()):
        return
    there = ", ".join(present) if present else "none"
    raise DeployError(f"no such serial port {port}; serial ports here: {there}", exit_code=2)


def deploy_to_board(  # pragma: no cover - needs a board on a serial port
    node: Node,
    app_key: bytes,
    bundle: Path,
    port: str,
    *,
    app: dict[str, Any] | None = None,
    micropython_image: Path | None = None,
) -> DeployResult:
    files = bundle_files(bundle)
    config = config_bytes(node, app)
    if micropython_image is not None:
        for cmd in esptool_flash_commands(port, node.board, micropython_image):
            _run(cmd, what=f"esptool on {port}")
    with tempfile.TemporaryDirectory(prefix="citypack-deploy-") as tmp:
        os.chmod(tmp, 0o700)
        config_path = Path(tmp) / CONFIG_NAME
        config_path.write_bytes(config)
        plan = [(path, remote) for remote, path in files.items()] + [(config_path, CONFIG_NAME)]
        remote_files = [remote for _, remote in plan]
        _run(
            mpremote_copy_command(port, plan, mpremote_mkdir_script(remote_files)),
            what=f"mpremote copy to {port}",
        )
        script = Path(tmp) / "nvs.py"
        write_atomic(script, nvs_write_script(app_key).encode(), mode=0o600)
        try:
            _run(run_script_command(port, script), what=f"writing the key to NVS on {port}")
        finally:
            script.unlink(missing_ok=True)
        output = _run(exec_command(port, verify_script(remote_files)), what=f"read-back on {port}")
    expected = {remote: sha256(path.read_bytes()) for remote, path in files.items()}
    expected[CONFIG_NAME] = sha256(config)
    expected["nvs:app_key"] = sha256(app_key)
    compare_readback(expected, output, port)
    return DeployResult(files=expected, target=port)


def compare_readback(expected: dict[str, str], output: str, where: str) -> None:
    """Compare the board's digests (last JSON line of the verify script) with what was sent."""
    lines = [line for line in output.splitlines() if line.strip().startswith("{")]
    try:
        actual = json.loads(lines[-1]) if lines else None
    except ValueError:
        actual = None
    if not isinstance(actual, dict):
        raise DeployError(f"read-back on {where} printed no digests")
    bad = sorted(k for k, digest in expected.items() if actual.get(k) != digest)
    if bad:
        raise DeployError(f"read-back on {where} differs for {', '.join(bad[:5])}")
