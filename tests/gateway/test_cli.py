"""`citypack gateway check-config` and `citypack gateway run` (a real process, SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.procs import ROOT, Broker, free_port, wait_port


def _citypack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_check_config_ok_and_errors(tmp_path: Path) -> None:
    example = str(ROOT / "deploy" / "gateway.example.toml")
    # on this machine neither /etc/citypack/api-token nor /var/lib/citypack exist: the
    # example's paths are moved by the environment, as a packager's unit file could
    token = tmp_path / "api-token"
    token.write_text("not-a-real-token-but-32-characters-long\n")
    token.chmod(0o600)  # gateway/apitoken.py: >= 32 characters, private
    moved = {
        "CITYPACK_API_TOKEN_FILE": str(token),
        "CITYPACK_STORE_URL": f"sqlite:///{tmp_path}/var/gateway.db",
    }
    ok = _citypack("gateway", "check-config", example, env=moved)
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stderr
    assert f"store sqlite {tmp_path}/var/gateway.db," in ok.stdout  # the absolute path
    assert "not-a-real-token-but-32-characters-long" not in ok.stdout
    as_is = _citypack("gateway", "check-config", example)
    assert as_is.returncode == 2 and "/etc/citypack/api-token" in as_is.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[mqtt]\nurl = "mqtt://h"\nqos = "one"\n')
    result = _citypack("gateway", "check-config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "mqtt.qos" in result.stderr
    assert "Traceback" not in result.stderr
    missing = _citypack("gateway", "check-config", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    env_bad = _citypack(
        "gateway",
        "check-config",
        str(bad),
        env={"CITYPACK_MQTT_QOS": "1", "CITYPACK_API_LISTEN": "x"},
    )
    assert env_bad.returncode == 2 and "api.listen" in env_bad.stderr


def test_run_refuses_what_check_config_refuses(tmp_path: Path) -> None:
    """One validation for both commands (issue 15.5): each config below passed check-config
    before, and `run` then failed (or ran with profiles every lamp would refuse)."""
    token = tmp_path / "token"
    token.write_text("t\n")
    cases = {
        "token": f'[api]\ntoken_file = "{tmp_path}/missing"\n',
        "directory": f'[store]\nurl = "sqlite:///{tmp_path}"\n',
        "listen": '[api]\nlisten = "gateway.invalid:8080"\n',
        "profile": "[lamps.profiles.default]\nconfig_version = 1\nbase_level = 500\n",
    }
    for name, body in cases.items():
        config = tmp_path / f"{name}.toml"
        config.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1"\n' + body)
        checked = _citypack("gateway", "check-config", str(config))
        run = _citypack("gateway", "run", "--config", str(config))
        assert checked.returncode == run.returncode == 2, (name, checked.stderr, run.stderr)
        assert checked.stderr == run.stderr and checked.stderr.count("\n") == 1, name
        assert "Traceback" not in run.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1"\n')
    env = {"CITYPACK_MQTT_URLL": "mqtt://x"}
    checked = _citypack("gateway", "check-config", str(typo), env=env)
    run = _citypack("gateway", "run", "--config", str(typo), env=env)
    assert checked.returncode == run.returncode == 2 and "CITYPACK_MQTT_URLL" in run.stderr


@pytest.mark.broker
def test_run_serves_and_stops_on_sigterm(mosquitto_broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789abcdefghijk\n")
    token.chmod(0o600)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[mqtt]\nurl = "{mosquitto_broker.url}"\nclient_id = "cli-{port}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path}/g.db"\n'
        f'[api]\nlisten = "127.0.0.1:{port}"\ntoken_file = "{token}"\n'
        f'[publish]\nbase_topic = "cli{port}"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "gateway", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(port, timeout_s=30)
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/stats",
            headers={"Authorization": "Bearer s3cret-token-0123456789abcdefghijk"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["uplinks_stored"] == 0
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [line["msg"] for line in lines]
    assert "mqtt connected" in messages and "gateway stopped" in messages
    assert "s3cret-token-0123456789abcdefghijk" not in stderr  # invariant 8
