"""The gateway's store: :class:`~gateway.store.base.Store` and its backends.

``sqlite:///path`` opens :class:`~gateway.store.sqlite.SqliteStore` (the default, embedded);
``postgresql://...`` opens :class:`~gateway.store.postgres.PostgresStore`, which several gateway
instances can share (ARCHITECTURE.md "Scale").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.errors import StoreError
from gateway.store.base import (
    ACTIVE_STATES,
    COMMAND_STATES,
    TERMINAL_STATES,
    CommandRecord,
    DeadLetter,
    Device,
    EventRecord,
    Store,
    UplinkRecord,
)
from gateway.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from gateway.store.postgres import PostgresStore, redacted_url

__all__ = [
    "ACTIVE_STATES",
    "COMMAND_STATES",
    "TERMINAL_STATES",
    "CommandRecord",
    "DeadLetter",
    "Device",
    "EventRecord",
    "PostgresStore",
    "SqliteStore",
    "Store",
    "UplinkRecord",
    "create_store",
    "redacted_url",
]


def __getattr__(name: str) -> Any:
    """``PostgresStore`` and ``redacted_url`` are imported when first asked for: psycopg and
    its pool take 8 MB of a SQLite gateway's memory that never uses them (issue 17)."""
    if name in ("PostgresStore", "redacted_url"):
        from gateway.store import postgres

        return getattr(postgres, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_store(url: str, *, synchronous: str = "normal", password_file: str = "") -> Store:
    """A store for ``url`` (not yet opened), chosen by its scheme."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url, synchronous=synchronous)
    from gateway.store.postgres import PostgresStore, redacted_url

    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, password_file=password_file)
    raise StoreError(f"store.url: unsupported store {redacted_url(url)!r}")
