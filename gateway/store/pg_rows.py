"""Rows of the PostgreSQL store (gateway/store/postgres.py): the column lists and the conversions
between table rows and the store's records (one batch's staged writes, :class:`Staged`, is in
gateway/store/base.py: the SQLite store has the same)."""

from __future__ import annotations

from typing import Any

import psycopg

from gateway.store.base import (
    COMMAND_COLUMNS,
    CommandRecord,
    EventRecord,
    Staged,
    device_of,
    json_dumps,
    json_loads,
)

__all__ = [
    "COMMAND_COLUMNS",
    "DEVICE_SELECT",
    "UPLINK_COLUMNS",
    "Staged",
    "column_names",
    "command_of",
    "command_row",
    "device_of",
    "event_of",
]

UPLINK_COLUMNS = (
    "dev_eui, received_at, deduplication_id, time, dev_addr, f_cnt, f_port, dr, frequency,"
    " rssi, snr, gateways, message, fields, data"
)
DEVICE_SELECT = "SELECT dev_eui, kind, doc, twin, last_f_cnt, last_dev_addr, version FROM devices"


def column_names(cur: psycopg.AsyncCursor[Any]) -> list[str]:
    return [d.name for d in cur.description or ()]


def command_of(row: dict[str, Any]) -> CommandRecord:
    row = dict(row)
    row["data"] = bytes(row["data"])
    return CommandRecord.from_row(row)


def command_row(c: CommandRecord) -> tuple[Any, ...]:
    values = {s: getattr(c, s) for s in COMMAND_COLUMNS}
    values["fields"] = json_dumps(c.fields)
    return tuple(values[s] for s in COMMAND_COLUMNS)


def event_of(r: dict[str, Any]) -> EventRecord:
    return EventRecord(
        type=r["type"], dev_eui=r["dev_eui"], at=r["at"], data=json_loads(r["data"]), id=r["id"]
    )
