"""SQLite store: WAL, batched commits, versioned schema migrations.

Sources: SQLite "Write-Ahead Logging" (https://sqlite.org/wal.html: readers do not block the
writer; ``synchronous=NORMAL`` in WAL mode is durable across application crashes, and loses at
most the last transactions on power loss) and "PRAGMA user_version"-style migrations, done here
with an explicit ``schema_version`` table so a half-applied migration is visible.

:meth:`SqliteStore.commit` takes the staged batch and builds its rows on the event loop (a
snapshot of the live device objects). With ``synchronous = "full"`` (an fsync per commit) it
hands them to one writer thread (issue 17), which waits out the disk while the loop goes on
receiving and staging the next batch; with "normal" (the default) it writes them on the loop,
which measured twice as fast (:attr:`SqliteStore.writes_off_loop` says why). One transaction is
in flight at a time and its batch stays readable (:meth:`seen`, :meth:`f_cnt_payload`) until it
is committed; a failed one is put back in front of what was staged meanwhile, as in the
PostgreSQL store. Reads on the loop use a second connection, which in WAL mode sees the last
committed transaction and never waits for the writer. ``:memory:`` (one connection per
database) writes on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import StoreError, StoreGone
from gateway.store import groups
from gateway.store.base import (
    ACTIVE_STATES,
    COMMAND_COLUMNS,
    NOT_CANCELLED,
    CommandRecord,
    DeadLetter,
    Device,
    EventRecord,
    Staged,
    Staging,
    device_of,
    json_dumps,
    json_loads,
    upsert_commands,
)

__all__ = ["MIGRATIONS", "SqliteStore"]

# Each entry migrates from version i to i+1; never edit an applied one, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE devices (
        dev_eui TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        doc TEXT NOT NULL,              -- the Device record as JSON (registry + twin)
        street TEXT NOT NULL DEFAULT '',
        grp TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL
    );
    CREATE TABLE uplinks (
        id INTEGER PRIMARY KEY,
        dev_eui TEXT NOT NULL,
        received_at REAL NOT NULL,
        deduplication_id TEXT NOT NULL,
        time TEXT NOT NULL,
        dev_addr TEXT NOT NULL,
        f_cnt INTEGER NOT NULL,
        f_port INTEGER NOT NULL,
        dr INTEGER NOT NULL,
        frequency INTEGER,
        rssi INTEGER,
        snr REAL,
        gateways INTEGER NOT NULL,
        message TEXT NOT NULL,
        fields TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX uplinks_by_device ON uplinks (dev_eui, f_cnt);
    CREATE INDEX uplinks_by_time ON uplinks (received_at);
    CREATE TABLE processed (
        key TEXT PRIMARY KEY,           -- up:<deduplicationId>, join:<...>, status:<...>
        at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX processed_by_time ON processed (at);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        received_at REAL NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        reason TEXT NOT NULL,
        dev_eui TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        type TEXT NOT NULL,
        dev_eui TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_by_type ON events (type, at);
    CREATE INDEX events_by_time ON events (at);
    CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        dev_eui TEXT NOT NULL,
        message TEXT NOT NULL,
        fields TEXT NOT NULL,
        command_id INTEGER NOT NULL,
        f_port INTEGER NOT NULL,
        data BLOB NOT NULL,
        confirmed INTEGER NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        published_at REAL,
        sent_at REAL,
        acknowledged_at REAL,
        applied_at REAL,
        finished_at REAL,
        expires_at REAL,
        f_cnt_down INTEGER,
        error TEXT NOT NULL,
        replaced_by TEXT NOT NULL,
        source TEXT NOT NULL
    );
    CREATE INDEX commands_by_state ON commands (state);
    CREATE INDEX commands_by_device ON commands (dev_eui, created_at);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    """,
    # v2: the twin is stored as the JSON the gateway publishes (encoded once per batch); `doc`
    # keeps only the registry and session fields (a v1 row has everything in `doc`: still read)
    """
    ALTER TABLE devices ADD COLUMN twin TEXT;
    """,
    # v3: retention deletes dead letters by time too
    """
    CREATE INDEX dead_letters_by_time ON dead_letters (received_at);
    """,
    # v4: the session (last fCnt, devAddr) changes with every uplink; in columns, the registry
    # document is rewritten only when the registry changes
    """
    ALTER TABLE devices ADD COLUMN last_f_cnt INTEGER;
    ALTER TABLE devices ADD COLUMN last_dev_addr TEXT;
    """,
    # v5: group commands and their members (gateway/store/groups.py)
    groups.MIGRATION,
    # v6: FUOTA campaigns (issue 18), one JSON document each plus the bundle they send, so a
    # campaign resumes after a restart (gateway/fuota_campaign.py)
    """
    CREATE TABLE fuota_campaigns (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        doc TEXT NOT NULL,
        bundle BLOB NOT NULL
    );
    """,
)

_PRUNE_CHUNK = 5000
_T = TypeVar("_T")


class SqliteStore(Staging):
    """The embedded store. ``url`` is ``sqlite:///relative/path``, ``sqlite:////abs/path`` or
    ``sqlite:///:memory:``. One gateway process owns the file (``shared = False``)."""

    shared = False

    @property
    def writes_off_loop(self) -> bool:
        """Whether a commit runs on the writer thread, so the loop may go on meanwhile.

        Only when each commit waits on the disk: ``synchronous = "full"`` makes every commit
        an fsync, which the thread waits out without the GIL. With "normal" (the default; WAL
        mode), a commit is this process's own CPU work, which a second thread cannot overlap
        under the GIL, and handing the GIL back and forth between the loop and the thread for
        every row cost more than the commit: on 2 cores, 20,000 queued uplinks of 20,000 of
        100,000 devices took 211 µs of CPU each with the thread and 104 µs on the loop
        (5,029 against 9,311 /s), with the same figures at 1,000 devices (97-102 µs); p99 at
        1,000/s fell from 31-33 to 16-17 ms. Maintenance (retention) still runs on the thread.
        """
        return self.path != ":memory:" and self.synchronous == "full"

    def __init__(self, url: str, *, synchronous: str = "normal") -> None:
        if not url.startswith("sqlite:///"):
            raise StoreError(f"not a sqlite URL: {url!r}")
        self.path = url[len("sqlite:///") :]
        self.synchronous = synchronous
        self._db: sqlite3.Connection | None = None  # the writer's (the loop's for :memory:)
        self._rdb: sqlite3.Connection | None = None  # reads on the event loop
        self._writer: ThreadPoolExecutor | None = None
        self._s = Staged()  # what the next commit writes
        self._writing: Staged | None = None  # what the commit under way writes
        self._commit_lock = asyncio.Lock()  # one transaction in flight, in order
        # hash of the registry document last committed per device (skip rewriting it)
        self._registry_written: dict[str, int] = {}
        self._registry_pending: dict[str, int] = {}
        # (st_dev, st_ino) of the file the connection has open: a deleted or replaced file is
        # noticed before anything is acknowledged (issue 14)
        self._identity: tuple[int, int] | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        """The writing connection (the writer thread's while a commit is under way)."""
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    @property
    def rdb(self) -> sqlite3.Connection:
        """The connection for reads on the event loop."""
        if self._rdb is None:
            raise StoreError("the store is not open")
        return self._rdb

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=5000")
        return db

    async def open(self) -> None:
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            self._db = db
            self._migrate()
            self._identity = self._file_identity()
            if self.path == ":memory:":
                self._rdb = db
            else:
                self._rdb = self._connect()
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc

    def _file_identity(self) -> tuple[int, int] | None:
        if self.path == ":memory:":
            return None
        st = os.stat(self.path)
        return (st.st_dev, st.st_ino)

    def _check_file(self) -> None:
        """:class:`StoreGone` unless the file at the path is the one the connection has open.

        SQLite keeps writing to an open file after it was unlinked (POSIX keeps the inode while
        a descriptor is open), so commits "succeed" into a file nobody will ever read again:
        1,000 uplinks were acknowledged and lost that way."""
        if self._identity is None:
            return
        try:
            now = self._file_identity()
        except OSError:
            raise StoreGone(f"{self.path}: the database file is gone") from None
        if now != self._identity:
            raise StoreGone(f"{self.path}: the database file was replaced")

    async def reopen(self) -> None:
        async with self._commit_lock:  # not under a transaction the writer still runs
            await self._reopen()

    async def _reopen(self) -> None:
        old, self._db = self._db, None
        reader, self._rdb = self._rdb, None
        if reader is not None and reader is not old:
            with contextlib.suppress(sqlite3.Error):
                reader.close()
        if old is not None:
            with contextlib.suppress(sqlite3.Error):
                old.close()  # checkpoints into the old file and removes its -wal by name
        self._registry_written = {}  # a new file holds no registry rows: write them in full
        self._registry_pending = {}
        await self.open()

    def _migrate(self) -> None:
        db = self.db
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        version = int(row[0] or 0)
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this gateway "
                f"({len(MIGRATIONS)})"
            )
        for index in range(version, len(MIGRATIONS)):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[index].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (index + 1,))
                db.execute("COMMIT")
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        return int(self.rdb.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    @property
    def committing(self) -> bool:
        """A transaction is under way on the writer thread."""
        return self._writing is not None

    async def close(self) -> None:
        if self._db is not None:
            try:
                await self.commit()  # also waits for one under way
                async with self._commit_lock:  # (a prune chunk)
                    pass
            finally:
                if self._rdb is not None and self._rdb is not self._db:
                    self._rdb.close()
                self._rdb = None
                self._db.close()
                self._db = None
                if self._writer is not None:
                    self._writer.shutdown(wait=True)
                    self._writer = None

    async def ping(self) -> bool:
        try:
            self._check_file()
            if self._identity is not None and not os.access(self.path, os.W_OK):
                return False  # read-only: the next start could not write (root passes this)
            self.rdb.execute("SELECT 1").fetchone()
            return True
        except (sqlite3.Error, StoreError):
            return False

    # --- staging ---------------------------------------------------------------------------------

    async def load_devices(self) -> list[Device]:
        out = []
        query = "SELECT dev_eui, kind, doc, twin, last_f_cnt, last_dev_addr FROM devices"
        for row in self.rdb.execute(query):
            device = device_of(row)
            self._registry_written[device.dev_eui] = device.registry_digest()
            out.append(device)
        return out

    async def seen(self, key: str) -> bool:
        if key in self._s.seen or (self._writing is not None and key in self._writing.seen):
            return True
        row = self.rdb.execute("SELECT 1 FROM processed WHERE key = ?", (key,)).fetchone()
        return row is not None

    async def f_cnt_payload(self, dev_eui: str, dev_addr: str, f_cnt: int) -> bytes | None:
        for batch in (self._s, self._writing):
            staged = batch.frames.get((dev_eui, dev_addr, f_cnt)) if batch is not None else None
            if staged is not None:
                return staged
        row = self.rdb.execute(
            "SELECT data FROM uplinks WHERE dev_eui = ? AND f_cnt = ? AND dev_addr = ?"
            " ORDER BY id LIMIT 1",
            (dev_eui, f_cnt, dev_addr),
        ).fetchone()
        return None if row is None else bytes(row[0])

    async def group_commands(
        self,
        *,
        group: str | None = None,
        command: str | None = None,
        active_at: float | None = None,
        limit: int = 100,
    ) -> list[tuple[groups.GroupHead, list[groups.GroupMember]]]:
        query, params = groups.select_heads(
            "?", group=group, command=command, active_at=active_at, limit=limit
        )
        heads = [groups.head_of(r) for r in self.rdb.execute(query, params)]
        if not heads:
            return []
        members = [
            groups.member_of(r)
            for r in self.rdb.execute(groups.select_members("?", len(heads)), [h.id for h in heads])
        ]
        return groups.assemble(heads, members)

    def discard(self) -> None:
        self._registry_pending = {}
        self._s = Staged()

    async def claim_device(self, dev_eui: str, *, wait: bool = False) -> bool:
        return False  # one process owns the file: nobody else changes a device

    async def load_device(self, dev_eui: str) -> tuple[Device | None, list[CommandRecord]]:
        row = self.rdb.execute(
            "SELECT dev_eui, kind, doc, twin, last_f_cnt, last_dev_addr FROM devices"
            " WHERE dev_eui = ?",
            (dev_eui,),
        ).fetchone()
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        commands = [
            CommandRecord.from_row(dict(r))
            for r in self.rdb.execute(
                f"SELECT * FROM commands WHERE dev_eui = ? AND state IN ({marks})"
                " ORDER BY created_at",
                (dev_eui, *ACTIVE_STATES),
            )
        ]
        if row is None:
            return None, commands
        device = device_of(row)
        self._registry_written[device.dev_eui] = device.registry_digest()
        return device, commands

    async def commit(self) -> None:
        """Write everything staged in one transaction (the batch), on the writer thread when
        :attr:`writes_off_loop`, else on the loop. Returns
        once everything staged before the call is committed, also what a commit already under
        way (from another caller) holds."""
        if not self.staged() and not self._commit_lock.locked():
            return
        async with self._commit_lock:
            if not self.staged():
                return
            db = self.db
            batch, self._s = self._s, Staged()
            rows = self._rows(batch)  # on the loop: the device objects change under it
            self._writing = batch
            try:
                if self.writes_off_loop:
                    _, cancelled = await self._in_writer(self._write, db, rows)
                else:  # on the loop: see writes_off_loop
                    self._write(db, rows)
                    cancelled = False
            except BaseException:
                # not committed (or into a file that is gone): written again by the next
                # commit, before what was staged meanwhile (after reopen() if the file went)
                self._writing = None
                self._s = batch.merged(self._s)
                self._registry_pending = {}
                raise
            self._writing = None
            self._registry_written.update(self._registry_pending)
            self._registry_pending = {}
        if cancelled:  # committed: the cancel goes on from here
            raise asyncio.CancelledError

    async def _in_writer(self, job: Callable[..., _T], *args: Any) -> tuple[_T, bool]:
        """``job(*args)`` on the writer thread (on the loop for ``:memory:``), and whether a
        cancel came meanwhile: a cancel waits for the thread's outcome, so the caller's
        bookkeeping matches the file, and the caller raises it after that bookkeeping."""
        if self._writer is None:
            return job(*args), False
        future = asyncio.get_running_loop().run_in_executor(self._writer, job, *args)
        cancelled = False
        while True:
            try:
                result = await asyncio.shield(future)
                break
            except asyncio.CancelledError:
                if future.done():
                    if future.cancelled():
                        raise
                    result = future.result()
                    break
                cancelled = True
        return result, cancelled

    def _rows(self, batch: Staged) -> dict[str, list[tuple[Any, ...]]]:
        """The batch's rows, built on the event loop (a snapshot of the live objects)."""
        full, light = self._device_rows(batch)
        return {
            "seen": [(key,) for key in batch.seen],
            "uplinks": [u.row() for u in batch.uplinks],
            "dead": [(d.received_at, d.topic, d.payload, d.reason, d.dev_eui) for d in batch.dead],
            "events": [(e.at, e.type, e.dev_eui, json_dumps(e.data)) for e in batch.events],
            "full": full,
            "light": light,
            "commands": [self._command_row(c) for c in batch.commands.values()],
            "group_heads": batch.groups.head_rows(),
            "group_members": batch.groups.member_rows(),
        }

    def _write(self, db: sqlite3.Connection, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        """One transaction (on the writer thread, or the loop for ``:memory:``)."""
        now = time.time()
        self._check_file()  # not into a deleted or replaced file
        try:
            db.execute("BEGIN")
            if rows["seen"]:
                db.executemany(
                    "INSERT OR IGNORE INTO processed (key, at) VALUES (?, ?)",
                    [(key, now) for (key,) in rows["seen"]],
                )
            if rows["uplinks"]:
                db.executemany(
                    "INSERT INTO uplinks (dev_eui, received_at, deduplication_id, time, dev_addr,"
                    " f_cnt, f_port, dr, frequency, rssi, snr, gateways, message, fields, data)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows["uplinks"],
                )
                self._count(db, "uplinks_stored", len(rows["uplinks"]))
            if rows["dead"]:
                db.executemany(
                    "INSERT INTO dead_letters (received_at, topic, payload, reason, dev_eui)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows["dead"],
                )
                self._count(db, "dead_letters", len(rows["dead"]))
            if rows["events"]:
                db.executemany(
                    "INSERT INTO events (at, type, dev_eui, data) VALUES (?, ?, ?, ?)",
                    rows["events"],
                )
            if rows["full"]:
                db.executemany(
                    "INSERT INTO devices (dev_eui, kind, doc, twin, street, grp, updated_at,"
                    " last_f_cnt, last_dev_addr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (dev_eui) DO UPDATE SET kind = excluded.kind,"
                    " doc = excluded.doc, twin = excluded.twin, street = excluded.street,"
                    " grp = excluded.grp, updated_at = excluded.updated_at,"
                    " last_f_cnt = excluded.last_f_cnt, last_dev_addr = excluded.last_dev_addr",
                    rows["full"],
                )
            if rows["light"]:
                db.executemany(
                    "UPDATE devices SET kind = ?, twin = ?, last_f_cnt = ?, last_dev_addr = ?"
                    " WHERE dev_eui = ?",
                    rows["light"],
                )
            if rows["commands"]:
                db.executemany(upsert_commands("?"), rows["commands"])
            if rows["group_heads"]:
                db.executemany(groups.upsert_heads("?"), rows["group_heads"])
            if rows["group_members"]:
                db.executemany(groups.upsert_members("?"), rows["group_members"])
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"commit failed: {exc}") from exc
        # gone while committing: the transaction is in a file no one will open again; the
        # caller keeps the batch staged for the next commit, after reopen()
        self._check_file()

    def _device_rows(self, batch: Staged) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Rows for staged devices: a full upsert when the registry document changed since it
        was last written, else a light update of the twin and session columns only."""
        full: list[tuple[Any, ...]] = []
        light: list[tuple[Any, ...]] = []
        pending: dict[str, int] = {}
        for device, twin in batch.devices.values():
            twin_json = twin if twin is not None else device.twin_json().decode()
            digest = device.registry_digest()
            if self._registry_written.get(device.dev_eui) == digest:
                light.append(
                    (
                        device.kind,
                        twin_json,
                        device.last_f_cnt,
                        device.last_dev_addr,
                        device.dev_eui,
                    )
                )
            else:
                pending[device.dev_eui] = digest
                full.append(
                    (
                        device.dev_eui,
                        device.kind,
                        json_dumps(device.registry_doc()),
                        twin_json,
                        device.street,
                        device.group,
                        device.updated_at,
                        device.last_f_cnt,
                        device.last_dev_addr,
                    )
                )
        self._registry_pending = pending
        return full, light

    @staticmethod
    def _count(db: sqlite3.Connection, name: str, value: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, value),
        )

    @staticmethod
    def _command_row(c: CommandRecord) -> tuple[Any, ...]:
        values = {s: getattr(c, s) for s in COMMAND_COLUMNS}
        values["fields"] = json_dumps(c.fields)
        values["confirmed"] = int(c.confirmed)
        return tuple(values[s] for s in COMMAND_COLUMNS)

    # --- reads -----------------------------------------------------------------------------------

    async def get_command(self, command_id: str) -> CommandRecord | None:
        for batch in (self._s, self._writing):
            staged = batch.commands.get(command_id) if batch is not None else None
            if staged is not None:
                return staged
        row = self.rdb.execute("SELECT * FROM commands WHERE id = ?", (command_id,)).fetchone()
        return None if row is None else CommandRecord.from_row(dict(row))

    async def active_commands(self) -> list[CommandRecord]:
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        rows = self.rdb.execute(
            f"SELECT * FROM commands WHERE state IN ({marks}) ORDER BY created_at", ACTIVE_STATES
        ).fetchall()
        return [CommandRecord.from_row(dict(r)) for r in rows]

    async def recent_commands(
        self, *, states: tuple[str, ...] | None = None, dev_eui: str | None = None, limit: int
    ) -> list[CommandRecord]:
        query = "SELECT * FROM commands WHERE 1 = 1"
        params: list[Any] = []
        if states:
            query += f" AND state IN ({', '.join('?' for _ in states)})"
            params.extend(states)
        if dev_eui is not None:
            query += " AND dev_eui = ?"
            params.append(dev_eui)
        query += " ORDER BY created_at DESC LIMIT ?"
        params.append(limit)
        rows = self.rdb.execute(query, params).fetchall()
        return [CommandRecord.from_row(dict(r)) for r in rows]

    async def uplinks(
        self, dev_eui: str, *, limit: int, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        query = "SELECT * FROM uplinks WHERE dev_eui = ?"
        params: list[Any] = [dev_eui]
        if before_id is not None:
            query += " AND id < ?"
            params.append(before_id)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        out = []
        for row in self.rdb.execute(query, params):
            doc = dict(row)
            doc["fields"] = json.loads(doc["fields"])
            doc["data"] = bytes(doc["data"]).hex()
            out.append(doc)
        return out

    async def events(
        self,
        *,
        type: str | None = None,
        dev_eui: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[EventRecord]:
        query = "SELECT * FROM events WHERE 1 = 1"
        params: list[Any] = []
        if type:
            query += " AND type = ?"
            params.append(type)
        if dev_eui:
            query += " AND dev_eui = ?"
            params.append(dev_eui)
        if since is not None:
            query += " AND at >= ?"
            params.append(since)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [
            EventRecord(
                type=r["type"],
                dev_eui=r["dev_eui"],
                at=r["at"],
                data=json_loads(r["data"]),
                id=r["id"],
            )
            for r in self.rdb.execute(query, params)
        ]

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        rows = self.rdb.execute(
            "SELECT * FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [
            DeadLetter(
                received_at=r["received_at"],
                topic=r["topic"],
                payload=bytes(r["payload"]),
                reason=r["reason"],
                dev_eui=r["dev_eui"],
                id=r["id"],
            )
            for r in rows
        ]

    async def counts(self) -> dict[str, Any]:
        counters = {r[0]: r[1] for r in self.rdb.execute("SELECT name, value FROM counters")}
        by_state = {
            r[0]: r[1]
            for r in self.rdb.execute("SELECT state, count(*) FROM commands GROUP BY state")
        }
        return {
            "uplinks_stored": int(counters.get("uplinks_stored", 0)),
            "dead_letters": int(counters.get("dead_letters", 0)),
            "commands_by_state": by_state,
        }

    def _delete(self, statement: str, limit: float) -> int:
        try:
            return int(self.db.execute(statement, (limit, _PRUNE_CHUNK)).rowcount)
        except sqlite3.Error as exc:
            raise StoreError(f"retention failed: {exc}") from exc

    async def prune(self, older_than: float, keys_older_than: float | None = None) -> int:
        """Retention: drop history, events and dead letters older than ``older_than``, and dedup
        keys older than ``keys_older_than`` (default: the same).

        ``uplinks_stored`` and ``dead_letters`` count what was ever stored (monotonic counters).
        A redelivery comes within minutes or hours, so the service keeps dedup keys for at most
        a week; (devEui, devAddr, fCnt) in the history still catches anything older.
        """
        await self.commit()
        removed = 0
        keys_limit = older_than if keys_older_than is None else keys_older_than
        for table, key, column, limit in (
            ("uplinks", "id", "received_at", older_than),
            ("events", "id", "at", older_than),
            ("dead_letters", "id", "received_at", older_than),
            ("processed", "key", "at", keys_limit),
        ):
            while True:  # small transactions, so the event loop keeps serving uplinks
                statement = (
                    f"DELETE FROM {table} WHERE {key} IN"
                    f" (SELECT {key} FROM {table} WHERE {column} < ? LIMIT ?)"
                )
                async with self._commit_lock:  # on the writer thread, between two commits
                    count, cancelled = await self._in_writer(self._delete, statement, limit)
                if cancelled:
                    raise asyncio.CancelledError
                removed += count
                if count < _PRUNE_CHUNK:
                    break
                await asyncio.sleep(0)
        return removed

    async def save_campaign(
        self, campaign_id: str, state: str, created_at: float, doc: str, bundle: bytes | None
    ) -> None:
        # the writer's connection belongs to the writer thread: between two commits, there
        async with self._commit_lock:
            _, cancelled = await self._in_writer(
                self._save_campaign, campaign_id, state, created_at, doc, bundle
            )
        if cancelled:
            raise asyncio.CancelledError

    def _save_campaign(
        self, campaign_id: str, state: str, created_at: float, doc: str, bundle: bytes | None
    ) -> None:
        try:
            if bundle is not None:
                self.db.execute(
                    "INSERT INTO fuota_campaigns (id, state, created_at, doc, bundle)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                    " doc = excluded.doc" + NOT_CANCELLED,
                    (campaign_id, state, created_at, doc, bundle),
                )
            else:
                self.db.execute(
                    "UPDATE fuota_campaigns SET state = ?, doc = ? WHERE id = ?"
                    " AND (fuota_campaigns.state <> 'cancelled' OR ? = 'cancelled')",
                    (state, doc, campaign_id, state),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save campaign {campaign_id}: {exc}") from exc

    async def load_campaigns(self) -> list[tuple[str, bytes]]:
        rows = self.rdb.execute(
            "SELECT doc, bundle FROM fuota_campaigns ORDER BY created_at"
        ).fetchall()
        return [(str(r[0]), bytes(r[1])) for r in rows]

    async def campaign_states(self) -> list[tuple[str, str]]:
        rows = self.rdb.execute("SELECT id, state FROM fuota_campaigns ORDER BY created_at")
        return [(str(r[0]), str(r[1])) for r in rows.fetchall()]
