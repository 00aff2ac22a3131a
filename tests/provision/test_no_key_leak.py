"""No key in any output or log of any provision command (ARCHITECTURE.md invariant 8).

Runs every ``citypack provision`` subcommand, the good paths and the error paths, and scans stdout,
stderr, every log record (DEBUG and up) and every file a command wrote that is not meant to carry
keys, for each AppKey of the batch in lower and upper case and for the API tokens. The only
command allowed to print a key is ``new --show-keys``, and the scan is shown to catch that.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.provision.conftest import Batch, Run
from tests.provision.fake_chirpstack import FakeChirpStack
from tests.provision.fake_gateway import make_app, serve
from tools.provision.inventory import load_secrets

TENANT = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
APP = "0b8e3c2a-7d61-4f0e-9b8e-5c1d2a3f4e5d"
CS_TOKEN = "chirpstack-api-token-3f9a"
GW_TOKEN = "gateway-api-token-77b1"
PROFILES = ["--os2iot-profile", "bin=14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
            "--os2iot-profile", "lamp=24855bf7-d10d-4aee-b618-ebfcb64dc7ad"]  # fmt: skip


def _secrets_in(text: str, keys: list[bytes]) -> list[str]:
    found = []
    for key in keys:
        for form in (key.hex(), key.hex().upper()):
            if form in text:
                found.append(form[:4] + "…")
    for token in (CS_TOKEN, GW_TOKEN):
        if token in text:
            found.append("token")
    return found


def test_no_command_prints_or_logs_a_key(
    batch: Batch,
    cli: Callable[..., Run],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    codec_file: Path,
) -> None:
    inv = str(batch.path)
    cs_token = tmp_path / "cs.token"
    cs_token.write_text(CS_TOKEN)
    gw_token = tmp_path / "gw.token"
    gw_token.write_text(GW_TOKEN)
    bad_token = tmp_path / "bad.token"
    bad_token.write_text("wrong")
    runs: list[tuple[str, Run]] = []

    def run(*argv: str) -> Run:
        result = cli(*argv)
        runs.append((" ".join(argv[:1]), result))
        return result

    first = batch.inventory.nodes[0]
    # new (several ways), exports, labels, scan
    assert run("new", "--kind", "bin", "--inventory", inv, "--count", "2").code == 0
    assert run("new", "--kind", "lamp", "--inventory", inv, "--serial", "L-77").code == 0
    assert run("new", "--kind", "lamp", "--inventory", inv, "--serial", "L:77").code == 2
    for fmt in ("os2iot", "tts", "chirpstack"):
        assert run("export", "--format", fmt, "--inventory", inv, "--output",
                   str(tmp_path / f"x.{fmt}"), *PROFILES).code == 0  # fmt: skip
        assert run("export", "--format", fmt, "--inventory", inv, "--no-keys", *PROFILES).code == 0
        assert run("export", "--format", fmt, "--inventory", inv, *PROFILES).code == 2
    labels = tmp_path / "labels"
    assert run("label", "--inventory", inv, "--out", str(labels), "--sheet").code == 0
    qr = run("label", "--inventory", inv, "--out", str(labels), "--format", "svg").out
    assert run("scan", qr.split()[1], "--inventory", inv).code == 0
    # register: good, again, bad token, gateway registry
    app, _, _ = make_app(GW_TOKEN)
    with FakeChirpStack(CS_TOKEN) as cs, serve(app) as url:
        base = ["register", "--inventory", inv, "--chirpstack", cs.target, "--application-id", APP,
                "--tenant-id", TENANT, "--codec", str(codec_file)]  # fmt: skip
        gateway = ["--gateway-api", url, "--gateway-token-file", str(gw_token)]
        assert run(*base, "--api-token-file", str(cs_token), *gateway).code == 0
        assert run(*base, "--api-token-file", str(cs_token), *gateway).code == 0
        assert run(*base, "--api-token-file", str(bad_token)).code == 1
        cs.state.reject.add(first.dev_eui)
        cs.state.devices.pop(first.dev_eui)
        assert run(*base, "--api-token-file", str(cs_token)).code == 1
        # verify on the gateway API (the broker variant is scanned in test_verify's CLI test)
        verify = ["verify", first.dev_eui, "--gateway-api", url, "--timeout", "0.2"]
        assert run(*verify, "--gateway-token-file", str(gw_token)).code == 1
        assert run(*verify, "--gateway-token-file", str(bad_token)).code == 1
    # deploy to a directory, and with a bundle that is not there
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "main.py").write_text("print('citypack')\n")
    (bundle / "manifest.json").write_text(json.dumps({"files": {}}))
    target = tmp_path / "board"
    assert run("deploy", first.dev_eui, "--inventory", inv, "--target", str(target),
               "--bundle", str(bundle)).code == 0  # fmt: skip
    assert run("deploy", first.dev_eui, "--inventory", inv, "--target", str(target),
               "--bundle", str(tmp_path / "none")).code == 2  # fmt: skip
    # a broken secrets file: the error must not quote the key
    secrets_path = batch.secrets.path
    good_text = secrets_path.read_text()
    broken_value = next(iter(load_secrets(secrets_path).app_keys.values())).hex()[:-1] + "Z"
    lines = good_text.splitlines()
    lines[-1] = lines[-1].split("=")[0] + f'= "{broken_value}"'
    secrets_path.write_text("\n".join(lines) + "\n")
    assert run("export", "--format", "tts", "--inventory", inv, "--output",
               str(tmp_path / "y.csv")).code == 2  # fmt: skip
    assert broken_value not in runs[-1][1].err
    secrets_path.write_text(good_text)
    secrets_path.chmod(0o644)
    assert run("deploy", first.dev_eui, "--inventory", inv, "--target", str(target),
               "--bundle", str(bundle)).code == 2  # fmt: skip
    secrets_path.chmod(0o600)

    keys = list(load_secrets(secrets_path).app_keys.values())
    assert len(keys) == 7
    for name, result in runs:
        assert not _secrets_in(result.out + result.err, keys), (name, result)
    assert not _secrets_in(caplog.text, keys)
    for record in caplog.records:
        assert not _secrets_in(record.getMessage(), keys)
    # files that are not meant to hold keys
    assert not _secrets_in(batch.path.read_text(), keys)
    assert not _secrets_in((target / "config.json").read_text(), keys)
    for label in labels.iterdir():
        data = label.read_bytes()
        assert not _secrets_in(data.decode("latin-1"), keys), label.name
    # the scan is able to see a key: --show-keys prints the new one, nothing else does
    shown = cli("new", "--kind", "bin", "--inventory", inv, "--show-keys")
    new_key = load_secrets(secrets_path).app_keys[shown.out.split()[2]]
    assert _secrets_in(shown.out, [new_key])
