"""`citypack fuota keygen|bundle`: keys never printed, a signed delta, clear one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.fuota import bundle
from tools.cli import main


def _build(d: Path, files: dict[str, bytes]) -> None:
    entries = []
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
        entries.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    (d / "manifest.json").write_text(json.dumps({"files": entries}))


def test_keygen_and_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "fuota.pem"
    assert main(["fuota", "keygen", "--key", str(key)]) == 0
    out = capsys.readouterr().out
    pem = key.read_text()
    body = "".join(pem.splitlines()[1:-1])
    assert body not in out and "PRIVATE" not in out  # the private key is never printed
    assert key.stat().st_mode & 0o777 == 0o600
    public = out.split("fuota_public_key: ")[1].split()[0]
    assert main(["fuota", "keygen", "--key", str(key)]) == 2  # never overwritten
    assert "exists" in capsys.readouterr().err
    old, new = tmp_path / "old", tmp_path / "new"
    _build(
        old,
        {"lib/apps/a.mpy": b"A1", "lib/apps/b.mpy": b"B1", "lib/gone.mpy": b"G", "boot.py": b"x"},
    )
    _build(new, {"lib/apps/a.mpy": b"A2", "lib/apps/b.mpy": b"B1", "boot.py": b"x"})
    out_file = tmp_path / "u.bin"
    args = ["fuota", "bundle", "--from", str(old), "--to", str(new), "--from-version", "0.1.0",
            "--version", "0.2.0", "--key", str(key), "--out", str(out_file)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "+ lib/apps/a.mpy" in printed and "- lib/gone.mpy" in printed and body not in printed
    b = bundle.parse(out_file.read_bytes())
    assert [m.path for m in b.modules] == ["apps/a.mpy"] and b.delete == ("gone.mpy",)
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(b.signature, b.signed)
    # the boot path cannot be updated over the air: one clear line, non-zero exit
    _build(new, {"lib/apps/a.mpy": b"A2", "boot.py": b"y"})
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("citypack: error: boot.py changed") and len(err.splitlines()) == 1
    assert main([*args[:-4], "--key", str(tmp_path / "missing.pem"), "--out", str(out_file)]) == 2
