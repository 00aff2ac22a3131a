"""The API token file (issue 14): at least 32 characters, readable by its owner only, else
``citypack gateway run`` and ``check-config`` refuse with one line that never shows the token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.apitoken import MIN_TOKEN_CHARS, read_api_token
from gateway.errors import ConfigError
from tests.helpers.procs import ROOT, free_port


def _citypack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("CITYPACK_")},
        check=False,
    )


def _setup(tmp_path: Path, token: str, mode: int) -> Path:
    token_file = tmp_path / "api-token"
    token_file.write_text(token + "\n")
    token_file.chmod(mode)
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[mqtt]\nurl = "mqtt://127.0.0.1:1"\n'
        f'[store]\nurl = "sqlite:///{tmp_path}/g.db"\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\ntoken_file = "{token_file}"\n'
    )
    return config


@pytest.mark.parametrize(
    ("token", "mode", "words"),
    [
        ("x", 0o600, "has 1 characters, at least 32"),
        ("short-but-private-0123456789", 0o600, "at least 32"),
        ("long-enough-but-world-readable-0123456789", 0o644, "open to group or others"),
        ("long-enough-but-group-readable-0123456789", 0o640, "chmod 600"),
    ],
)
def test_run_and_check_config_refuse_a_weak_token_file(
    tmp_path: Path, token: str, mode: int, words: str
) -> None:
    config = _setup(tmp_path, token, mode)
    for argv in (
        ("gateway", "check-config", str(config)),
        ("gateway", "run", "--config", str(config)),
    ):
        result = _citypack(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert result.stderr.strip().count("\n") == 0 and "api.token_file" in result.stderr
        assert words in result.stderr
        assert token not in result.stderr + result.stdout  # invariant 8
        assert "Traceback" not in result.stderr


def test_a_good_token_file_is_read(tmp_path: Path) -> None:
    token = "g" * MIN_TOKEN_CHARS
    config = _setup(tmp_path, token, 0o600)
    assert read_api_token(str(tmp_path / "api-token")) == token
    result = _citypack("gateway", "check-config", str(config))
    assert result.returncode == 0 and result.stdout.startswith("ok:")
    with pytest.raises(ConfigError, match="cannot read"):
        read_api_token(str(tmp_path / "missing"))
