"""The gateway's store: :class:`~gateway.store.base.Store` and its backends.

``sqlite:///path`` opens :class:`~gateway.store.sqlite.SqliteStore` (the default, embedded).
``postgresql://...`` is reserved for the scale-out backend (ARCHITECTURE.md "Scale"); it is not
built yet, and :func:`open_store` says so instead of pretending.
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
from gateway.store.sqlite import SqliteStore

__all__ = [
    "ACTIVE_STATES",
    "COMMAND_STATES",
    "TERMINAL_STATES",
    "CommandRecord",
    "DeadLetter",
    "Device",
    "EventRecord",
    "SqliteStore",
    "Store",
    "UplinkRecord",
    "create_store",
]


def create_store(url: str, *, synchronous: str = "normal") -> Store:
    """A store for ``url`` (not yet opened)."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url, synchronous=synchronous)
    if url.startswith("postgresql://"):
        raise StoreError("store.url: the PostgreSQL backend is not built yet; use sqlite:///path")
    raise StoreError(f"store.url: unsupported store {url!r}")
