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
    token = tmp_path / "api-token"
    token.write_text("t" * 32 + "\n")
    token.chmod(0o600)
    example = (ROOT / "deploy" / "gateway.example.toml").read_text()
    assert '"/etc/citypack/api-token"' in example
    copy = tmp_path / "example.toml"
    copy.write_text(example.replace('"/etc/citypack/api-token"', f'"{token}"'))
    ok = _citypack("gateway", "check-config", str(copy))
    assert ok.returncode == 0 and ok.stdout.startswith("ok:")
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
