"""Fixtures of the provisioning tests: a batch on disk, the CLI, a codec file, a broker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import tools.cli
from tools.provision.chirpstack import DEFAULT_CODEC
from tools.provision.inventory import (
    Inventory,
    Secrets,
    add_nodes,
    default_secrets_path,
    save_inventory,
    save_secrets,
)


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Callable[..., Run]:
    """Run ``citypack provision …`` through the real ``tools.cli.main`` (one-line errors)."""
    # only our area: other areas' command modules may not be in the tree yet
    monkeypatch.setattr(tools.cli, "COMMAND_MODULES", ("provision",))
    caplog.set_level(logging.DEBUG)

    def run(*argv: str) -> Run:
        code = tools.cli.main(["provision", *argv])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@dataclass
class Batch:
    inventory: Inventory
    secrets: Secrets

    @property
    def path(self) -> Path:
        return self.inventory.path


@pytest.fixture
def batch(tmp_path: Path) -> Batch:
    """Two bins and two lamps, saved to ``batch.toml`` and ``batch.secrets.toml``."""
    inventory = Inventory(tmp_path / "batch.toml", [])
    secrets = Secrets(default_secrets_path(inventory.path))
    add_nodes(
        inventory,
        secrets,
        kind="bin",
        count=2,
        street="Vestergade",
        group="midtbyen",
        latitude=56.1572,
        longitude=10.2107,
    )
    add_nodes(inventory, secrets, kind="lamp", count=2, street="Vestergade", group="midtbyen")
    save_secrets(secrets)
    save_inventory(inventory)
    return Batch(inventory, secrets)


@pytest.fixture
def codec_file(tmp_path: Path) -> Path:
    """The generated ChirpStack codec when codegen has written it, else a minimal TS013 codec."""
    if DEFAULT_CODEC.exists():
        return DEFAULT_CODEC
    path = tmp_path / "codec.js"
    path.write_text(
        "function decodeUplink(input) { return {data: {bytes: input.bytes.length}}; }\n"
        "function encodeDownlink(input) { return {bytes: [], fPort: 1}; }\n"
    )
    return path
