"""The gateway's store: :class:`~gateway.store.base.Store` and its backends.

``sqlite:///path`` opens :class:`~gateway.store.sqlite.SqliteStore` (the default, embedded);
``postgresql://...`` opens :class:`~gateway.store.postgres.PostgresStore`, which several gateway
instances can share (ARCHITECTURE.md "Scale").
"""

from __future__ import annotations

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
from gateway.store.postgres import PostgresStore, redacted_url
from gateway.store.sqlite import SqliteStore

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
]


def create_store(url: str, *, synchronous: str = "normal", password_file: str = "") -> Store:
    """A store for ``url`` (not yet opened), chosen by its scheme."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url, synchronous=synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, password_file=password_file)
    raise StoreError(f"store.url: unsupported store {redacted_url(url)!r}")
