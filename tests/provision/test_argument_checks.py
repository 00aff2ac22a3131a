"""Issue 20: bad arguments are refused before anything connects, in one line; --version;
the ChirpStack JSON export takes its device profile; deploy names the serial ports that exist."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import tools.cli
from tests.provision.conftest import Batch, Run

PROFILE = "0b6a2f1e-8d5c-4e2a-9f3b-7c1d2e3f4a5b"
LAMP_PROFILE = "1c7b3f2e-9e6d-4f3b-8a4c-8d2e3f4a5b6c"


def _argparse_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        tools.cli.main(list(argv))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        tools.cli.main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("citypack ") and out.split()[1][0].isdigit()


def test_ids_and_urls_are_checked_before_connecting(
    batch: Batch, capsys: pytest.CaptureFixture[str]
) -> None:
    register = ["provision", "register", "--inventory", str(batch.path)]
    # 127.0.0.1:9 (discard) would refuse a connection: the refusal here comes from the check
    line = _argparse_error(capsys, *register, "--chirpstack", "127.0.0.1:9", "--tenant-id", "t1")
    assert "--tenant-id: expected a UUID" in line and "'t1'" in line
    line = _argparse_error(capsys, *register, "--application-id", "app")
    assert "--application-id: expected a UUID" in line
    line = _argparse_error(capsys, *register, "--chirpstack", "chirpstack")
    assert "--chirpstack: expected HOST:PORT" in line
    line = _argparse_error(capsys, *register, "--no-chirpstack", "--gateway-api", "gw:8080")
    assert "--gateway-api: expected http://" in line
    verify = ["provision", "verify", "0011223344556677", "--mqtt", "mqtt://127.0.0.1:9"]
    line = _argparse_error(capsys, *verify, "--application-id", "x")
    assert "--application-id: expected a UUID" in line


def test_export_chirpstack_with_device_profile(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path
) -> None:
    run = cli(
        "export", "--format", "chirpstack", "--inventory", str(batch.path), "--no-keys",
        "--device-profile-id", PROFILE.upper(),
    )  # fmt: skip
    assert run.code == 0, run.err
    devices = json.loads(run.out)["devices"]
    assert {d["device"]["deviceProfileId"] for d in devices} == {PROFILE}
    per_kind = cli(
        "export", "--format", "chirpstack", "--inventory", str(batch.path), "--no-keys",
        "--device-profile-id", PROFILE, "--device-profile-id", f"lamp={LAMP_PROFILE}",
    )  # fmt: skip
    by_name = {
        d["device"]["name"]: d["device"]["deviceProfileId"]
        for d in json.loads(per_kind.out)["devices"]
    }
    kinds = {n.name: n.kind for n in batch.inventory.nodes}
    assert all(by_name[n] == (LAMP_PROFILE if k == "lamp" else PROFILE) for n, k in kinds.items())
    bad = cli(
        "export", "--format", "chirpstack", "--inventory", str(batch.path), "--no-keys",
        "--device-profile-id", "nope",
    )  # fmt: skip
    assert bad.code == 2 and "--device-profile-id" in bad.err and "expected a UUID" in bad.err
    wrong = cli(
        "export", "--format", "tts", "--inventory", str(batch.path), "--no-keys",
        "--device-profile-id", PROFILE,
    )  # fmt: skip
    assert wrong.code != 0 and "--format chirpstack" in wrong.err


def test_deploy_names_the_serial_ports_that_exist(
    batch: Batch, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    from serial.tools import list_ports

    class Port:
        def __init__(self, device: str) -> None:
            self.device = device

    monkeypatch.setattr(list_ports, "comports", lambda: [Port("/dev/ttyACM0"), Port("/dev/ttyS0")])
    node = batch.inventory.nodes[0]
    missing = "/dev/ttyUSB-citypack-absent"
    assert not Path(missing).exists()
    run = cli("deploy", node.dev_eui, "--inventory", str(batch.path), "--port", missing)
    assert run.code == 2
    assert run.err.strip() == (
        f"citypack: error: no such serial port {missing}; serial ports here: /dev/ttyACM0, "
        "/dev/ttyS0"
    )
    monkeypatch.setattr(list_ports, "comports", lambda: [])
    none = cli("deploy", node.dev_eui, "--inventory", str(batch.path), "--port", missing)
    assert none.err.strip().endswith("serial ports here: none")
