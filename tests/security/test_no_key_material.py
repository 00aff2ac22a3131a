"""No key material in any output or log (ARCHITECTURE.md invariant 8, issue 8).

1. Every ``citypack`` command, walked from :func:`tools.cli.build_parser`, answers ``--help``.
2. Every command that can run here without hardware or a long run is run with safe inputs (good
   and failing paths), in-process at DEBUG log level; the servers (gateway, emulator, simulator)
   run inside ``citypack demo --duration 10 --workdir DIR``. stdout, stderr, every log record and
   every file written that is not meant to hold keys are scanned for the AppKeys of the secrets
   files, the session keys and API tokens given on the command line, the gateway's API token and
   MQTT password, in hex (both cases) and base64, and for any other 32-hex-digit key-shaped text.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.procs import ROOT, find_program
from tools.cli import build_parser, main
from tools.provision.inventory import load_secrets

pytestmark = pytest.mark.timeout(240)

KEY_SHAPED = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])")
VECTORS = json.loads((ROOT / "protocol" / "vectors" / "lorawan.json").read_text())


def _leaves(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
    out = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _leaves(sub, [*prefix, name])
    return out


def _forms(secret: bytes | str) -> list[str]:
    if isinstance(secret, str):
        return [secret]
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode()]


def _leaks(text: str, secrets: list[bytes | str], where: str) -> list[str]:
    found = [f"{where}: {form[:4]}…" for s in secrets for form in _forms(s) if form in text]
    found += [f"{where}: key-shaped {m[:4]}…" for m in KEY_SHAPED.findall(text)]
    return found


def test_every_command_answers_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _leaves(build_parser(), [])
    assert len(commands) > 20
    for argv in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--help"])
        assert exit_info.value.code == 0, argv
        out, err = capsys.readouterr()
        assert out.startswith("usage: citypack"), argv
        assert err == "", argv


def test_commands_print_and_log_no_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    inv = tmp_path / "batch.toml"
    outputs: list[tuple[str, str]] = []

    def run(*argv: str, ok: bool | None = True) -> int:
        code = main(list(argv))
        out, err = capsys.readouterr()
        outputs.append((" ".join(argv[:2]), out + err))
        if ok is True:
            assert code == 0, (argv, err)
        elif ok is False:
            assert code != 0, argv
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        return code

    run("provision", "new", "--kind", "bin", "--inventory", str(inv), "--count", "2")
    run("provision", "new", "--kind", "lamp", "--inventory", str(inv), "--count", "2")
    app_keys = list(load_secrets(tmp_path / "batch.secrets.toml").app_keys.values())
    assert len(app_keys) == 4
    dev = sorted(load_secrets(tmp_path / "batch.secrets.toml").app_keys)[0]
    token = "gw-api-token-0d5e11c9-6b2f4a81c03e57d9"
    password = "mqtt-password-6a3f"
    (tmp_path / "token").write_text(token)
    (tmp_path / "token").chmod(0o600)  # gateway/apitoken.py refuses a token others can read
    (tmp_path / "password").write_text(password)
    data = VECTORS["data"][0]
    accept = VECTORS["join_accept"][0]
    session = [bytes.fromhex(data["nwk_s_key"]), bytes.fromhex(data["app_s_key"])]
    root = bytes.fromhex(accept["app_key"])
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[mqtt]\nurl = "mqtt://127.0.0.1:1"\nusername = "gw"\n'
        f'password_file = "{tmp_path}/password"\n'
        f'[api]\ntoken_file = "{tmp_path}/token"\n'
    )

    run("codec", "list")
    run("codec", "example", "bin_status")
    run("codec", "encode", "bin_status", '{"fill_percent": 5, "temperature_c": 1}', ok=None)
    case = json.loads((ROOT / "protocol" / "vectors" / "payloads.json").read_text())["cases"][0]
    run("codec", "decode", "--fport", str(case["fport"]), case["hex"])
    run("codec", "decode", "--fport", "10", "zz", ok=False)
    run("frame", "decode", data["phy"], "--nwkskey", data["nwk_s_key"], "--appskey",
        data["app_s_key"], "--json")  # fmt: skip
    run("frame", "decode", data["phy"], "--nwkskey", "00" * 16, ok=None)  # wrong key: MIC fails
    run("frame", "decode", accept["phy"], "--appkey", accept["app_key"])
    run("frame", "decode", "zz", ok=False)
    run("gateway", "check-config", str(config))
    run("gateway", "check-config", str(tmp_path / "missing.toml"), ok=False)
    run("provision", "export", "--format", "chirpstack", "--inventory", str(inv), "--no-keys")
    run("provision", "export", "--format", "tts", "--inventory", str(inv),
        "--output", str(tmp_path / "tts-with-keys.csv"))  # fmt: skip
    run("provision", "label", "--inventory", str(inv), "--out", str(tmp_path / "labels"),
        "--format", "svg", "--sheet")  # fmt: skip
    run("provision", "scan", f"LW:D0:0000000000000000:{dev.upper()}:FFFF0001", "--inventory",
        str(inv))  # fmt: skip
    run("provision", "scan", "LW:D0:nonsense", ok=False)
    run("provision", "register", "--inventory", str(inv), "--no-chirpstack", "--gateway-api",
        "http://127.0.0.1:1", "--gateway-token-file", str(tmp_path / "token"), "--timeout", "2",
        ok=False)  # fmt: skip
    run("provision", "verify", dev, "--gateway-api", "http://127.0.0.1:1",
        "--gateway-token-file", str(tmp_path / "token"), "--timeout", "1", ok=False)  # fmt: skip
    run("provision", "new", "--kind", "bin", "--inventory", str(inv), "--show-keys")

    secrets: list[bytes | str] = [*app_keys, *session, root, token, password]
    leaks: list[str] = []
    shown = len(outputs) - 1  # the last run: new --show-keys
    for index, (where, text) in enumerate(outputs):
        found = _leaks(text, secrets, where)
        if index == shown:  # --show-keys is the one command that prints keys: the scan sees it
            assert found, "the scan did not see the keys --show-keys printed"
            continue
        leaks += found
    leaks += _leaks("\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records),
                    secrets, "log records")  # fmt: skip
    meant_for_keys = {"batch.secrets.toml", "tts-with-keys.csv", "token", "password"}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name not in meant_for_keys:
            leaks += _leaks(path.read_text(errors="replace"), secrets, path.name)
    assert leaks == []


@pytest.mark.broker
def test_demo_prints_and_logs_no_key(tmp_path: Path) -> None:
    citypack = find_program("citypack")
    assert citypack is not None
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [citypack, "demo", "--duration", "10", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    secret_files = list(workdir.rglob("*.secrets.toml"))
    assert secret_files, sorted(str(p) for p in workdir.rglob("*"))
    keys: list[bytes | str] = []
    for path in secret_files:
        keys += list(load_secrets(path).app_keys.values())
    assert keys
    tokens = [p.read_text().strip() for p in workdir.rglob("*token*") if p.is_file()]
    secrets: list[bytes | str] = [*keys, *[t for t in tokens if t]]
    leaks = _leaks(result.stdout + result.stderr, secrets, "demo output")
    for path in workdir.rglob("*"):
        if not path.is_file() or path in secret_files or "token" in path.name:
            continue
        raw = path.read_bytes()
        leaks += [f"{path.name}: raw key bytes" for k in keys if isinstance(k, bytes) and k in raw]
        if path.suffix != ".db":
            leaks += _leaks(raw.decode(errors="replace"), secrets, path.name)
        else:
            leaks += [f"{path.name}: {f[:4]}…" for s in secrets for f in _forms(s)
                      if f.encode() in raw]  # fmt: skip
    assert leaks == []
