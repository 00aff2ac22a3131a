"""A throw-away PostgreSQL database per test on the machine's server (127.0.0.1:5432, user
postgres, trust auth; CONVENTIONS.md habit 10). Unreachable: the test skips saying so, except
under ``CI=true``, where it fails (CI must run the PostgreSQL cases)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

HOST = os.environ.get("CITYPACK_TEST_PGHOST", "127.0.0.1")
PORT = int(os.environ.get("CITYPACK_TEST_PGPORT", "5432"))
USER = os.environ.get("CITYPACK_TEST_PGUSER", "postgres")
ADMIN = f"postgresql://{USER}@{HOST}:{PORT}/postgres"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(ADMIN, autocommit=True, connect_timeout=3)


def unreachable() -> str | None:
    """Why no PostgreSQL can be used here, or None."""
    try:
        with _admin() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {HOST}:{PORT} as {USER}: {str(exc).strip().splitlines()[0]}"
    return None


def require() -> None:
    reason = unreachable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the PostgreSQL cases must run)")
    pytest.skip(reason)


@contextmanager
def database() -> Iterator[str]:
    """A new database, dropped afterwards (also when its sessions are still connected)."""
    require()
    name = f"citypack_test_{uuid.uuid4().hex[:16]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield f"postgresql://{USER}@{HOST}:{PORT}/{name}"
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
