"""Move a city from SQLite to PostgreSQL: ``citypack gateway migrate-store --from sqlite:///…
--to postgresql://…`` (issue 16 item 4, gateway/README.md "Running several instances").

Copies devices (registry and twin), uplink history, dedup keys, derived events, commands, group
commands and their members, FUOTA campaigns, dead letters and the monotonic counters, table by
table in chunks of :data:`CHUNK` rows, one transaction per chunk.

**Idempotent.** Every row is matched on what identifies it, not on the source's row ids:
devices by devEUI, commands by their UUID, dedup keys by key, uplinks by (devEUI, fCnt,
received_at, deduplicationId), events by (type, devEUI, at, data), dead letters by (received_at,
topic, reason, payload). A row already in the target is left as it is, so running the same copy
again (say after an interruption) adds nothing twice; the counters grow by what was inserted.

**A non-empty target is refused** unless it holds an earlier run from the same source (the
``store_imports`` table names it) or ``into_nonempty`` is given (``--into-nonempty``: merge into
a database that already serves instances; a device present on both sides keeps the target's
row).

The source is opened with :class:`~gateway.store.sqlite.SqliteStore`, which first brings its
schema up to date as the gateway would. Stop the gateway that writes it first.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection

from gateway.errors import StoreError
from gateway.store.postgres import PostgresStore, connect_kwargs, redacted_url
from gateway.store.sqlite import SqliteStore

__all__ = ["CHUNK", "TABLES", "MigrationReport", "migrate_store"]

CHUNK = 2000
# (table, source columns in order, target INSERT for a temp table `src` of the same columns)
_UPLINK = (
    "dev_eui, received_at, deduplication_id, time, dev_addr, f_cnt, f_port, dr, frequency, rssi,"
    " snr, gateways, message, fields, data"
)
_COMMAND = (
    "id, dev_eui, message, fields, command_id, f_port, data, confirmed, state, created_at,"
    " published_at, sent_at, acknowledged_at, applied_at, finished_at, expires_at, f_cnt_down,"
    " error, replaced_by, source"
)
TABLES: tuple[tuple[str, str, str], ...] = (
    (
        "devices",
        "dev_eui, kind, doc, twin, street, grp, updated_at, last_f_cnt, last_dev_addr",
        "ON CONFLICT (dev_eui) DO NOTHING",
    ),
    ("commands", _COMMAND, "ON CONFLICT (id) DO NOTHING"),
    ("group_commands", "id, grp, created_at, expires_at, doc", "ON CONFLICT (id) DO NOTHING"),
    (
        "group_members",
        "command, dev_eui, state, error, updated_at",
        "ON CONFLICT (command, dev_eui) DO NOTHING",
    ),
    ("fuota_campaigns", "id, state, created_at, doc, bundle", "ON CONFLICT (id) DO NOTHING"),
    ("processed", "key, at", "ON CONFLICT (key) DO NOTHING"),
    (
        "uplinks",
        _UPLINK,
        "WHERE NOT EXISTS (SELECT 1 FROM uplinks t WHERE t.dev_eui = src.dev_eui"
        " AND t.f_cnt = src.f_cnt AND t.received_at = src.received_at"
        " AND t.deduplication_id = src.deduplication_id)",
    ),
    (
        "events",
        "at, type, dev_eui, data",
        "WHERE NOT EXISTS (SELECT 1 FROM events t WHERE t.type = src.type"
        " AND t.dev_eui = src.dev_eui AND t.at = src.at AND t.data = src.data)",
    ),
    (
        "dead_letters",
        "received_at, topic, payload, reason, dev_eui",
        "WHERE NOT EXISTS (SELECT 1 FROM dead_letters t WHERE t.received_at = src.received_at"
        " AND t.topic = src.topic AND t.reason = src.reason AND t.payload = src.payload)",
    ),
)
_COUNTED = {"uplinks": "uplinks_stored", "dead_letters": "dead_letters"}

Progress = Callable[[str, int, int], None]  # (table, rows done, rows in the table)


@dataclass
class MigrationReport:
    copied: dict[str, int] = field(default_factory=dict)  # rows inserted per table
    already: dict[str, int] = field(default_factory=dict)  # rows the target had already
    resumed: bool = False  # the target held an earlier run from this source


def _source_name(url: str) -> str:
    path = url[len("sqlite:///") :]
    return "sqlite:///" + (path if path == ":memory:" else os.path.abspath(path))


def _check_source(url: str) -> None:
    path = url[len("sqlite:///") :]
    if path == ":memory:" or not os.path.isfile(path):  # opening would create an empty one
        raise StoreError(f"--from: no such SQLite file: {path}")


def _chunks(db: sqlite3.Connection, table: str, columns: str) -> Iterator[list[tuple[Any, ...]]]:
    order = "key" if table == "processed" else ("dev_eui" if table == "devices" else "rowid")
    if table in ("commands", "group_commands", "fuota_campaigns"):
        order = "created_at, id"
    elif table == "group_members":
        order = "command, dev_eui"
    cursor = db.execute(f"SELECT {columns} FROM {table} ORDER BY {order}")
    while rows := cursor.fetchmany(CHUNK):
        yield [tuple(row) for row in rows]


def _convert(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    if table == "commands":  # SQLite keeps booleans as 0/1
        values = list(row)
        values[7] = bool(values[7])
        return tuple(values)
    if table == "devices" and row[3] is None:  # a v1 row: the twin lives in `doc`
        json.loads(row[2])  # refuse a row that is not JSON here, not in the gateway later
    return row


async def _target_state(conn: AsyncConnection[Any], source: str) -> tuple[bool, bool]:
    """(target holds any fleet data, target holds an earlier run from ``source``)."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM devices) OR EXISTS (SELECT 1 FROM uplinks)"
        " OR EXISTS (SELECT 1 FROM commands) OR EXISTS (SELECT 1 FROM events)"
        " OR EXISTS (SELECT 1 FROM processed) OR EXISTS (SELECT 1 FROM dead_letters),"
        " EXISTS (SELECT 1 FROM store_imports WHERE source = %s)",
        (source,),
    )
    row = await cur.fetchone()
    return (bool(row[0]), bool(row[1])) if row else (False, False)


async def migrate_store(
    source_url: str,
    target_url: str,
    *,
    into_nonempty: bool = False,
    password_file: str = "",
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy a SQLite store into a PostgreSQL one; see the module docstring."""
    if not source_url.startswith("sqlite:///"):
        raise StoreError(f"--from: expected sqlite:///path, got {redacted_url(source_url)!r}")
    if not target_url.startswith(("postgresql://", "postgres://")):
        raise StoreError(f"--to: expected postgresql://..., got {redacted_url(target_url)!r}")
    _check_source(source_url)
    source = SqliteStore(source_url)
    await source.open()  # brings the source's schema up to date
    target = PostgresStore(target_url, password_file=password_file)
    await target.open()  # creates or migrates the target's schema
    await target.close()
    report = MigrationReport()
    name = _source_name(source_url)
    try:
        conn = await AsyncConnection.connect(target_url, **connect_kwargs(password_file))
    except psycopg.Error as exc:
        await source.close()
        raise StoreError(f"{redacted_url(target_url)}: cannot connect: {exc}") from exc
    try:
        nonempty, resumed = await _target_state(conn, name)
        if nonempty and not resumed and not into_nonempty:
            raise StoreError(
                f"{redacted_url(target_url)} already holds fleet data (not from {name}); "
                "use --into-nonempty to merge into it"
            )
        report.resumed = resumed
        await conn.execute(
            "INSERT INTO store_imports (source, started_at) VALUES (%s, %s)"
            " ON CONFLICT (source) DO NOTHING",
            (name, time.time()),
        )
        await conn.commit()
        for table, columns, clause in TABLES:
            await _copy_table(conn, source.db, table, columns, clause, report, progress)
        await conn.execute(
            "UPDATE store_imports SET finished_at = %s WHERE source = %s", (time.time(), name)
        )
        await conn.commit()
    except psycopg.Error as exc:
        raise StoreError(f"{redacted_url(target_url)}: copy failed: {exc}") from exc
    finally:
        await conn.close()
        await source.close()
    return report


async def _copy_table(
    conn: AsyncConnection[Any],
    db: sqlite3.Connection,
    table: str,
    columns: str,
    clause: str,
    report: MigrationReport,
    progress: Progress | None,
) -> None:
    total = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    done = inserted = 0
    if progress is not None:
        progress(table, 0, total)
    for rows in _chunks(db, table, columns):
        async with conn.transaction():
            await conn.execute(
                f"CREATE TEMP TABLE src ON COMMIT DROP AS SELECT {columns} FROM {table}"  # type: ignore[arg-type]
                " WITH NO DATA"
            )
            async with conn.cursor().copy(f"COPY src ({columns}) FROM STDIN") as copy:  # type: ignore[arg-type]
                for row in rows:
                    await copy.write_row(_convert(table, row))
            # source order (ctid of the freshly filled temp table) keeps history ids in order
            cur = await conn.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM src"  # type: ignore[arg-type]
                + (f" {clause}" if clause.startswith("ON") else f" {clause} ORDER BY src.ctid")
            )
            count = max(cur.rowcount, 0)
            counter = _COUNTED.get(table)
            if counter and count:
                await conn.execute(
                    "INSERT INTO counters (name, value) VALUES (%s, %s) ON CONFLICT (name)"
                    " DO UPDATE SET value = counters.value + excluded.value",
                    (counter, count),
                )
        inserted += count
        done += len(rows)
        if progress is not None:
            progress(table, done, total)
    report.copied[table] = inserted
    report.already[table] = done - inserted
