"""Store fixtures: the same test body runs on SQLite and on PostgreSQL (issue 16 item 5)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import postgres


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL of each backend: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/gateway.db"
        return
    with postgres.database() as url:
        yield url


@pytest.fixture
def each_store(store_url: str) -> Iterator[None]:
    """The gateways a test starts through tests/gateway/harness.py use ``store_url``: with
    ``@pytest.mark.usefixtures("each_store")`` the same test body runs on SQLite and PostgreSQL."""
    from tests.gateway import harness

    harness.STORE_URL.append(store_url)
    yield
    harness.STORE_URL.remove(store_url)
