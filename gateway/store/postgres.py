"""PostgreSQL store: the same :class:`~gateway.store.base.Store` as SQLite, shared by several
gateway instances (ARCHITECTURE.md "Scale", gateway/README.md "Running several instances").

Driver: psycopg 3 with psycopg_pool (README.md dependency table): typed (mypy strict), libpq
URLs and environment (``PGPASSWORD``, ``.pgpass``) exactly as ``psql`` reads them, pipelined
``executemany`` and ``COPY`` for batched writes, ``LISTEN``/``NOTIFY`` on an async connection.

The unit of work is the same batch as SQLite's: one transaction per :meth:`PostgresStore.commit`
(one statement per kind of row, its columns as arrays through ``unnest``; history through
``COPY``), the MQTT messages behind it acknowledged only after it commits (gateway/service.py).
The transaction holding a batch's claims leaves with its commit, so the service processes the
next batch, on a transaction of its own, while one commits (``writes_off_loop``); a claim of a
device the commit in flight holds waits for it.

**Exactly once across instances.** Dedup keys are the primary key of ``processed`` and go in
with ``INSERT ... ON CONFLICT DO NOTHING``. Every key belongs to one device (``up:``, ``join:``,
``status:`` events carry a devEUI), and a device is processed by one instance at a time (next
point), so the ``seen`` read inside the batch transaction sees every key another instance
committed for that device.

**Per-device serialisation: a transaction-level advisory lock per device, plus a version
check.** Before processing a device's message the service calls :meth:`claim_device`:
``pg_try_advisory_xact_lock(ns, hashtext(devEUI))`` in the batch transaction (PostgreSQL 15
manual §9.27.10), held until the batch commits. Why a lock and not only a version check: two
instances receiving two uplinks of one device at once would each apply one to a stale twin, and
a version check could only refuse one batch *after* the work (a refused batch means a broker
redelivery); the lock makes the second instance wait a few milliseconds and apply its uplink on
top of the first. Why ``try`` and not a blocking lock: a batch holds several devices, so two
instances blocking on each other's devices would deadlock; on :class:`~gateway.errors.DeviceBusy`
the service commits its own batch first (holding nothing) and then waits with
``pg_advisory_xact_lock``, so a waiter never holds a lock and no cycle can form. After the lock,
``devices.version`` tells whether another instance changed the device since this one read it
(then the service reloads it, :meth:`load_device`). Every commit writes devices with ``WHERE
version = <read>``: a batch whose locks were lost (the connection dropped while PostgreSQL
restarted) commits only when nobody changed its devices meanwhile, and is refused with
:class:`~gateway.errors.StoreConflict` otherwise.

Passwords: from ``[store] password_file``, else libpq's own ``PGPASSWORD``/``.pgpass``; never in
the URL that is logged (:func:`redacted_url`).
"""

from __future__ import annotations

import asyncio
import select
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, nullcontext
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection, AsyncPipeline
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.errors import DeviceBusy, StoreConflict, StoreError
from gateway.store import groups
from gateway.store.base import (
    ACTIVE_STATES,
    CommandRecord,
    Device,
    Staging,
    json_dumps,
    upsert_commands,
)
from gateway.store.pg_coordination import SESSION_SETTINGS
from gateway.store.pg_reads import PostgresReads
from gateway.store.pg_rows import (
    DEVICE_SELECT,
    UPLINK_COLUMNS,
    Staged,
    column_names,
    command_of,
    command_row,
    device_of,
)
from gateway.store.pg_schema import LOCK_NAMESPACE, MIGRATION_LOCK, MIGRATIONS

__all__ = ["PostgresStore", "connect_kwargs", "redacted_url"]


#: rows each counter is spread over (PostgresStore._count)
COUNTER_SHARDS = 16
#: how long a starting instance waits for another one's schema migration (:meth:`_migrate`)
MIGRATION_WAIT_S = 120


def redacted_url(url: str) -> str:
    """``url`` without its password (for logs and errors): the one in the user part and a
    libpq ``password=`` query parameter alike."""
    parts = urlsplit(url)
    query = (
        "&".join(
            "password=***" if item.split("=", 1)[0].lower() == "password" else item
            for item in parts.query.split("&")
        )
        if parts.query
        else ""
    )
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}"
        if parts.port is not None:
            netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def connect_kwargs(password_file: str = "") -> dict[str, Any]:
    """libpq connection parameters beside the URL: the password from ``password_file`` (libpq
    reads ``PGPASSWORD`` and ``.pgpass`` itself when there is none) and a connect timeout."""
    kwargs: dict[str, Any] = {"connect_timeout": 5}
    if password_file:
        from gateway.config import read_secret

        kwargs["password"] = read_secret(password_file)
    return kwargs


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresStore(PostgresReads, Staging):
    """The shared store. ``url`` is a libpq URL, ``postgresql://user@host:port/db``."""

    shared = True  # several instances may use one database (gateway/service.py asks)
    # the service may process the next batch while one commits (commit's docstring): the
    # commit is awaited without the flush lock, as SQLite's writer thread is
    writes_off_loop = True

    def __init__(self, url: str, *, password_file: str = "", pool_size: int = 8) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise StoreError(f"not a postgresql URL: {redacted_url(url)!r}")
        self.url = url
        self.safe_url = redacted_url(url)
        self.password_file = password_file
        self.pool_size = pool_size
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._tx: AsyncConnection[Any] | None = None  # the batch transaction's connection
        self._tx_use = asyncio.Lock()  # one task at a time on it (_using_batch)
        self._claimed: set[str] = set()
        self._versions: dict[str, int] = {}  # devices.version as this instance last read/wrote
        self._s = Staged()  # what the next commit writes
        self._writing: Staged | None = None  # what the commit under way writes
        self._registry_written: dict[str, int] = {}
        # known while their devices are claimed (claim_devices): dedup keys absent from
        # `processed`, and devices with no uplink stored; both forgotten with the claims
        self._unseen: set[str] = set()
        self._no_history: set[str] = set()
        # the devices the commit in flight holds or writes, and its end (commit)
        self._committing: set[str] = set()
        self._committed = asyncio.Event()
        self.migrated_from: int | None = None  # schema version found at open, when older
        self._own_xids: deque[int] = deque(maxlen=4096)  # our commits (the feed skips them)
        self._relayed: deque[int] = deque(maxlen=8192)  # event ids the feed returned already
        self.notify_tag = uuid.uuid4().hex  # the payload of this store's change notifications

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    def _error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"{self.safe_url}: {what}: {_one_line(exc)}")

    async def open(self) -> None:
        if self._pool is not None:
            return
        kwargs = connect_kwargs(self.password_file)
        try:  # one direct connection first: a wrong URL or password fails here, in one line
            conn = await AsyncConnection.connect(self.url, **kwargs)
        except psycopg.Error as exc:
            raise self._error("cannot connect", exc) from exc
        try:
            await self._migrate(conn)
        finally:
            await conn.close()
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            self.url,
            kwargs=kwargs,
            min_size=2,
            max_size=self.pool_size,
            open=False,
            timeout=10,
            # a connection broken while idle (PostgreSQL restarted) is replaced, not handed out
            check=_check_idle,
        )
        try:
            await pool.open(wait=True, timeout=10)
        except (psycopg.Error, PoolTimeout) as exc:
            await pool.close()
            raise self._error("cannot open the connection pool", exc) from exc
        self._pool = pool

    async def check(self) -> str:
        """Connect and read the schema version without changing anything (``check-config``):
        a status line, or :class:`StoreError` in one line (wrong URL, refused password, a
        schema newer than this gateway)."""
        try:
            conn = await AsyncConnection.connect(self.url, **connect_kwargs(self.password_file))
        except psycopg.Error as exc:
            raise self._error("cannot connect", exc) from exc
        try:
            cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
            row = await cur.fetchone()
            version = 0
            if row and row[0]:
                cur = await conn.execute("SELECT max(version) FROM schema_version")
                row = await cur.fetchone()
                version = int(row[0] or 0) if row else 0
        except psycopg.Error as exc:
            raise self._error("cannot read the schema version", exc) from exc
        finally:
            await conn.close()
        latest = len(MIGRATIONS)
        if version > latest:
            raise StoreError(
                f"{self.safe_url}: schema version {version} is newer than this gateway ({latest})"
            )
        if version < latest:
            return f"schema v{version}, migrated to v{latest} when the gateway starts"
        return f"schema v{version}"

    async def _migrate(self, conn: AsyncConnection[Any]) -> None:
        """Apply the missing migrations under :data:`MIGRATION_LOCK`. The only wait of the
        start-up on another instance: the lock is held while one migrates, so an instance
        started meanwhile waits for it, at most :data:`MIGRATION_WAIT_S`. A holder that dies
        frees it at once (its backend sees the socket close); one that vanishes with its host,
        or is killed in the middle of a long statement, within seconds (the session settings
        of gateway/store/pg_coordination.py, applied here before the lock is taken)."""
        try:
            async with conn.transaction():
                # inside the transaction: on this non-autocommit connection a statement before
                # it would open an implicit one that close() rolls back, migrations and all
                for statement in SESSION_SETTINGS:
                    await conn.execute(statement)  # type: ignore[arg-type]
                # another instance migrating now: wait for it, bounded (SET LOCAL lock_timeout,
                # as the function that takes a parameter; manual §20.11.1, §9.27.1)
                wait = f"{MIGRATION_WAIT_S}s"
                await conn.execute("SELECT set_config('lock_timeout', %s, true)", (wait,))
                await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", MIGRATION_LOCK)
                await conn.execute("SELECT set_config('lock_timeout', '0', true)")
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                )
                cur = await conn.execute("SELECT max(version) FROM schema_version")
                row = await cur.fetchone()
                version = int(row[0] or 0) if row else 0
                if version > len(MIGRATIONS):
                    raise StoreError(
                        f"{self.safe_url}: schema version {version} is newer than this gateway "
                        f"({len(MIGRATIONS)}); run the newer gateway or restore a backup"
                    )
                self.migrated_from = version if version < len(MIGRATIONS) else None
                for index in range(version, len(MIGRATIONS)):
                    await conn.execute(MIGRATIONS[index])
                    await conn.execute(
                        "INSERT INTO schema_version (version) VALUES (%s)", (index + 1,)
                    )
        except psycopg.errors.LockNotAvailable as exc:
            raise StoreError(
                f"{self.safe_url}: another session held the schema migration lock for over "
                f"{MIGRATION_WAIT_S} s (an instance migrating a large database? pg_locks shows "
                "it); start again once it is done"
            ) from exc
        except psycopg.Error as exc:
            raise self._error("migration failed", exc) from exc

    async def schema_version(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT max(version) FROM schema_version")
            row = await cur.fetchone()
            return int(row[0]) if row and row[0] is not None else 0

    async def close(self) -> None:
        if self._pool is None:
            return
        try:
            await self._after_commit()
            if self.staged():
                await self.commit()
        finally:
            await self._release_tx(rollback=True)
            await self._pool.close()
            self._pool = None

    async def reopen(self) -> None:
        """The pool replaces lost connections itself (a server restart is a StoreError, never
        StoreGone, here); open it again only when it was closed."""
        if self._pool is None:
            await self.open()

    async def ping(self) -> bool:
        try:
            async with self.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            return True
        except (psycopg.Error, PoolTimeout, StoreError):
            return False

    # --- the batch transaction -------------------------------------------------------------------

    async def _batch(self) -> AsyncConnection[Any]:
        """The connection holding this batch's transaction (opened on first use)."""
        if self._tx is not None and not self._tx.closed:
            return self._tx
        self._forget_claims()  # locks of a lost connection are gone with it
        try:
            self._tx = await self.pool.getconn(timeout=5)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error("no connection", exc) from exc
        return self._tx

    @asynccontextmanager
    async def _using_batch(self) -> AsyncIterator[AsyncConnection[Any]]:
        """The batch connection (:meth:`_batch`), for one task at a time. claim_devices reads
        in pipeline mode; a statement another task sent on the connection meanwhile (the
        dispatch job's takeover asks :meth:`seen`) joined that pipeline and lost its result
        when the pipeline ended: psycopg 3.2 raised ``AttributeError`` from ``fetchone``.
        Every statement on the batch connection is sent through here."""
        async with self._tx_use:
            yield await self._batch()

    async def _release_tx(self, *, rollback: bool) -> None:
        conn, self._tx = self._tx, None
        self._forget_claims()
        if conn is None or self._pool is None:
            return
        if rollback and not conn.closed:
            try:
                await conn.rollback()
            except psycopg.Error:
                await conn.close()
        await self._pool.putconn(conn)

    async def claim_device(self, dev_eui: str, *, wait: bool = False) -> bool:
        """Hold ``dev_eui`` until the next commit; True when another instance changed its row
        since this store last read or wrote it (the caller reloads it, :meth:`load_device`).

        Raises :class:`DeviceBusy` when another instance holds it; with ``wait`` it blocks, which
        is allowed only with nothing else claimed (module docstring: no deadlock)."""
        if dev_eui in self._claimed:
            return False
        await self._after_commit((dev_eui,))
        key = (LOCK_NAMESPACE, dev_eui)
        async with self._using_batch() as conn:
            try:
                if wait:
                    if self._claimed:
                        raise StoreError("claim_device(wait=True) with other devices held")
                    # bounded: a holder that never commits makes this a StoreError, not a hang
                    await conn.execute("SET LOCAL lock_timeout = '10s'")
                    await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", key)
                    await conn.execute("SET LOCAL lock_timeout = 0")
                cur = await conn.execute("SELECT citypack_claim(%s, %s)", key)  # one round trip
                row = await cur.fetchone()
            except psycopg.Error as exc:
                await self._release_tx(rollback=True)
                raise self._error("claim failed", exc) from exc
        version = int(row[0]) if row else -1
        if version < 0:
            raise DeviceBusy(f"device {dev_eui} is held by another instance")
        self._claimed.add(dev_eui)
        return (version or None) != self._versions.get(dev_eui)

    def _forget_claims(self) -> None:
        """The claims ended (committed, rolled back, connection lost): so did what was known
        under them."""
        self._claimed.clear()
        self._unseen.clear()
        self._no_history.clear()

    async def claim_devices(
        self,
        dev_euis: list[str],
        *,
        unheard: Iterable[str] = (),
        keys: Iterable[tuple[str, str]] = (),
    ) -> tuple[list[str], list[str]]:
        """:meth:`claim_device` for several devices in one round trip, never waiting:
        ``(changed, busy)``, the devices another instance changed since this store last read
        or wrote them (the caller reloads them, :meth:`load_devices_claimed`) and those another
        instance holds (left unclaimed: the caller's own :meth:`claim_device` of each, when its
        message comes, commits and waits as the module docstring says). Try-locks only, so
        taking them in any order cannot deadlock.

        In the same round trip, for the devices it claims: which of ``unheard`` have no uplink
        stored and which dedup keys of ``keys`` (devEUI, key) are not in ``processed``, so
        :meth:`f_cnt_payload` and :meth:`seen` answer those without a query of their own
        while the claim lasts (a device's first uplink cannot be proven new by its frame
        counter: the redelivery checks of gateway/service.py ``_on_up`` read both)."""
        need = [d for d in dict.fromkeys(dev_euis) if d not in self._claimed]
        if not need:
            return [], []
        await self._after_commit(need)
        wanted = set(need)
        unheard = sorted(wanted.intersection(unheard))
        keys = [(d, k) for d, k in keys if d in wanted]
        async with self._using_batch() as conn:
            try:
                # one round trip (pipeline mode), and in order: each statement reads with its own
                # snapshot, the history ones after the locks (PostgreSQL 15 manual §13.2.1)
                # a libpq without pipeline mode (before 14): the same statements, one trip each
                pipeline = conn.pipeline() if AsyncPipeline.is_supported() else nullcontext()
                async with pipeline:
                    # each citypack_claim call reads the version after its own lock (migration v3)
                    claim = await conn.execute(
                        "SELECT d, citypack_claim(%s, d) FROM unnest(%s::text[]) WITH ORDINALITY"
                        " AS t(d, n) ORDER BY n",
                        (LOCK_NAMESPACE, need),
                    )
                    history = known = None
                    if unheard:
                        history = await conn.execute(
                            "SELECT DISTINCT dev_eui FROM uplinks WHERE dev_eui = ANY(%s)",
                            (unheard,),
                        )
                    if keys:
                        known = await conn.execute(
                            "SELECT key FROM processed WHERE key = ANY(%s)", ([k for _, k in keys],)
                        )
                rows = await claim.fetchall()
                with_history = {r[0] for r in await history.fetchall()} if history else set()
                stored = {r[0] for r in await known.fetchall()} if known else set()
            except psycopg.Error as exc:
                await self._release_tx(rollback=True)
                raise self._error("claim failed", exc) from exc
        changed: list[str] = []
        busy: list[str] = []
        for dev_eui, version in rows:
            if version < 0:
                busy.append(dev_eui)
                continue
            self._claimed.add(dev_eui)
            if (version or None) != self._versions.get(dev_eui):
                changed.append(dev_eui)
        # Only a device's own events write its uplinks and dedup keys (module docstring), and
        # only while it is claimed: what was absent after the lock stays absent until the
        # claim ends, except what this instance stages itself, which seen() and
        # f_cnt_payload() look up first.
        self._no_history.update(d for d in unheard if d in self._claimed and d not in with_history)
        self._unseen.update(k for d, k in keys if d in self._claimed and k not in stored)
        return changed, busy

    async def load_devices_claimed(
        self, dev_euis: list[str]
    ) -> tuple[list[Device], dict[str, list[CommandRecord]]]:
        """:meth:`load_device` for several devices (read in the batch transaction, versions
        recorded): the stored ones, and the active commands of each by devEUI."""
        async with self._using_batch() as conn:
            try:
                cur = await conn.execute(DEVICE_SELECT + " WHERE dev_eui = ANY(%s)", (dev_euis,))
                rows = await cur.fetchall()
                cur = await conn.execute(
                    "SELECT * FROM commands WHERE dev_eui = ANY(%s) AND state = ANY(%s)"
                    " ORDER BY created_at",
                    (dev_euis, list(ACTIVE_STATES)),
                )
                names = column_names(cur)
                commands: dict[str, list[CommandRecord]] = {d: [] for d in dev_euis}
                for r in await cur.fetchall():
                    command = command_of(dict(zip(names, r, strict=True)))
                    commands.setdefault(command.dev_eui, []).append(command)
            except psycopg.Error as exc:
                await self._release_tx(rollback=True)
                raise self._error("read failed", exc) from exc
        devices = [self._device(row) for row in rows]
        for missing in set(dev_euis) - {d.dev_eui for d in devices}:
            self._versions.pop(missing, None)
        return devices, commands

    async def load_device(self, dev_eui: str) -> tuple[Device | None, list[CommandRecord]]:
        """The stored device and its active commands, read in the batch transaction
        (:meth:`load_devices_claimed` for one devEUI)."""
        devices, commands = await self.load_devices_claimed([dev_eui])
        return (devices[0] if devices else None), commands[dev_eui]

    def _device(self, row: Any) -> Device:
        device = device_of(row)
        self.note_version(device, int(row[6]))
        return device

    def note_version(self, device: Device, version: int) -> None:
        """``device`` as stored at ``version`` is what this instance now holds."""
        self._registry_written[device.dev_eui] = device.registry_digest()
        self._versions[device.dev_eui] = version

    def version_of(self, dev_eui: str) -> int | None:
        return self._versions.get(dev_eui)

    def busy(self, dev_eui: str) -> bool:
        """Whether this instance's open batch holds or writes the device (the change feed
        leaves it alone: the claim's version check covers it)."""
        return (
            dev_eui in self._claimed
            or dev_eui in self._committing
            or any(b.touches(dev_eui) for b in (self._s, self._writing) if b is not None)
        )

    async def reload(
        self, dev_euis: list[str]
    ) -> tuple[list[tuple[Device, int]], list[CommandRecord]]:
        """Devices (with their versions) and their active commands, read outside the batch
        (the change feed); versions are recorded only by :meth:`note_version`."""
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(DEVICE_SELECT + " WHERE dev_eui = ANY(%s)", (dev_euis,))
                devices = [(device_of(r), int(r[6])) for r in await cur.fetchall()]
                cur = await conn.execute(
                    "SELECT * FROM commands WHERE dev_eui = ANY(%s) AND state = ANY(%s)"
                    " ORDER BY created_at",
                    (dev_euis, list(ACTIVE_STATES)),
                )
                names = column_names(cur)
                commands = [
                    command_of(dict(zip(names, r, strict=True))) for r in await cur.fetchall()
                ]
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error("read failed", exc) from exc
        return devices, commands

    # --- staging ---------------------------------------------------------------------------------

    async def load_devices(self) -> list[Device]:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(DEVICE_SELECT)
                return [self._device(row) for row in await cur.fetchall()]
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error("cannot read devices", exc) from exc

    async def _fetch(self, query: str, params: tuple[Any, ...]) -> Any:
        async with self._using_batch() as conn:
            try:
                cur = await conn.execute(query, params)
                return await cur.fetchone()
            except psycopg.Error as exc:
                await self._release_tx(rollback=True)
                raise self._error("read failed", exc) from exc

    async def seen(self, key: str) -> bool:
        if key in self._s.seen or (self._writing is not None and key in self._writing.seen):
            return True
        if key in self._unseen:
            return False  # read with the claim of its device (claim_devices)
        return await self._fetch("SELECT 1 FROM processed WHERE key = %s", (key,)) is not None

    async def f_cnt_payload(self, dev_eui: str, dev_addr: str, f_cnt: int) -> bytes | None:
        for batch in (self._s, self._writing):
            staged = batch.frames.get((dev_eui, dev_addr, f_cnt)) if batch is not None else None
            if staged is not None:
                return staged
        if dev_eui in self._no_history:
            return None  # read with its claim (claim_devices)
        row = await self._fetch(
            "SELECT data FROM uplinks WHERE dev_eui = %s AND f_cnt = %s AND dev_addr = %s"
            " ORDER BY id LIMIT 1",
            (dev_eui, f_cnt, dev_addr),
        )
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
            "%s", group=group, command=command, active_at=active_at, limit=limit
        )
        heads = [groups.head_of(list(r.values())) for r in await self._rows(query, params)]
        if not heads:
            return []
        rows = await self._rows(groups.select_members("%s", len(heads)), [h.id for h in heads])
        return groups.assemble(heads, [groups.member_of(list(r.values())) for r in rows])

    def discard(self) -> None:
        """Drop everything staged (after :class:`StoreConflict`); the transaction is rolled back
        at the next use of the store."""
        self._s = Staged()

    async def commit(self) -> None:
        """Write everything staged in one transaction (the batch), then release its devices.

        The batch leaves with the connection that holds its claims: from the first line on,
        claims, reads and staging belong to the next batch, on a transaction of its own, so
        the service can process messages while this one commits (gateway/service.py
        ``flush``). A device of this batch is claimed again only after it committed
        (:meth:`_after_commit`): its advisory lock is this transaction's until then."""
        await self._after_commit()  # one commit in flight at a time, in order
        async with self._tx_use:  # no other task is reading on it (_using_batch)
            conn, self._tx = self._tx, None
        claimed, self._claimed = self._claimed, set()
        self._forget_claims()
        if not self.staged():
            if conn is not None:
                await self._put(conn, rollback=True)  # reads and claims only
            return
        # what is staged while this commit awaits the database (processing, the API, a
        # timer) goes into the next batch, not lost with this one
        batch, self._s = self._s, Staged()
        self._writing = batch
        touched = set(batch.devices) | {c.dev_eui for c in batch.commands.values()}
        self._committing = claimed | touched
        done = self._committed = asyncio.Event()
        try:
            if conn is None or conn.closed:
                try:
                    conn = await self.pool.getconn(timeout=5)
                except PoolTimeout as exc:
                    raise psycopg.OperationalError(str(exc)) from exc
                claimed = set()  # locks of a lost connection are gone with it
            async with conn.cursor() as cur:
                await self._claim_at_commit(cur, touched, claimed)
                pending = await self._write_devices(cur, batch, touched)
                await self._write_rest(cur, batch)
                await cur.execute(  # tagged: this instance's own feed skips it
                    "SELECT pg_notify('citypack_changes', %s), pg_current_xact_id()::text::bigint",
                    (self.notify_tag,),
                )
                row = await cur.fetchone()
            await conn.commit()
        except (StoreConflict, psycopg.Error) as exc:
            self._writing = None
            self._s = batch.merged(self._s)
            self._committing = set()
            done.set()
            if conn is not None:
                await self._put(conn, rollback=True)
            if isinstance(exc, StoreConflict):
                raise
            raise self._error("commit failed", exc) from exc
        self._writing = None
        if row is not None:
            self._own_xids.append(int(row[1]))
        for dev_eui in touched:
            if dev_eui in batch.devices or dev_eui in self._versions:
                self._versions[dev_eui] = self._versions.get(dev_eui, 0) + 1
        self._registry_written.update(pending)
        self._committing = set()
        done.set()
        await self._put(conn, rollback=False)

    async def _after_commit(self, dev_euis: Iterable[str] | None = None) -> None:
        """Wait for the commit in flight (when it holds one of ``dev_euis``; any when None)."""
        while self._committing and (dev_euis is None or not self._committing.isdisjoint(dev_euis)):
            await self._committed.wait()

    async def _put(self, conn: AsyncConnection[Any], *, rollback: bool) -> None:
        """Hand a batch connection back to the pool (rolled back first when asked)."""
        if rollback and not conn.closed:
            try:
                await conn.rollback()
            except psycopg.Error:
                await conn.close()
        if self._pool is not None:
            await self._pool.putconn(conn)
        elif not conn.closed:
            await conn.close()

    async def _claim_at_commit(
        self, cur: psycopg.AsyncCursor[Any], touched: set[str], claimed: set[str]
    ) -> None:
        """Devices staged without a claim (API and maintenance paths) are locked now; one held
        by another instance refuses the batch instead of waiting while holding others."""
        need = sorted(touched - claimed)
        if not need:
            return
        await cur.execute(
            "SELECT d FROM unnest(%s::text[]) AS d"
            " WHERE NOT pg_try_advisory_xact_lock(%s, hashtext(d))",
            (need, LOCK_NAMESPACE),
        )
        busy = [r[0] for r in await cur.fetchall()]
        if busy:
            raise StoreConflict(f"devices held by another instance: {', '.join(busy[:5])}")

    async def _write_devices(
        self, cur: psycopg.AsyncCursor[Any], batch: Staged, touched: set[str]
    ) -> dict[str, int]:
        """Write the batch's devices; the registry digests written (noted once committed)."""
        inserts: list[tuple[Any, ...]] = []
        full: list[tuple[Any, ...]] = []
        light: list[tuple[Any, ...]] = []
        pending: dict[str, int] = {}
        for device, twin in batch.devices.values():
            twin_json = twin if twin is not None else device.twin_json().decode()
            expected = self._versions.get(device.dev_eui)
            digest = device.registry_digest()
            if expected is not None and self._registry_written.get(device.dev_eui) == digest:
                light.append(
                    (
                        device.kind,
                        twin_json,
                        device.last_f_cnt,
                        device.last_dev_addr,
                        device.dev_eui,
                        expected,
                    )
                )
                continue
            pending[device.dev_eui] = digest
            row = (
                device.kind,
                json_dumps(device.registry_doc()),
                twin_json,
                device.street,
                device.group,
                device.updated_at,
                device.last_f_cnt,
                device.last_dev_addr,
                device.dev_eui,
            )
            if expected is None:
                inserts.append(row)
            else:
                full.append((*row, expected))
        versions = self._versions
        bumps = [(d, versions[d]) for d in touched if d not in batch.devices and d in versions]
        bump = "version = d.version + 1, xid = pg_current_xact_id()"
        # One statement per kind of row, its columns as arrays (unnest), not one statement per
        # device (executemany): a statement costs the loop ~0.1 ms of libpq and psycopg work
        # whatever its size, and a batch holds hundreds of devices. rowcount is what the
        # statement changed: fewer than its rows means another instance got there first.
        # Binary parameters (%b): a text array in text format escapes every element through
        # a regular expression in Python, which for the twins' JSON cost more than it saved.
        for query, rows in (
            (
                "INSERT INTO devices (kind, doc, twin, street, grp, updated_at, last_f_cnt,"
                " last_dev_addr, dev_eui) SELECT * FROM unnest(%b::text[], %b::text[],"
                " %b::text[], %b::text[], %b::text[], %b::float8[], %b::bigint[], %b::text[],"
                " %b::text[]) ON CONFLICT (dev_eui) DO NOTHING",
                inserts,
            ),
            (
                "UPDATE devices AS d SET kind = v.kind, doc = v.doc, twin = v.twin,"
                " street = v.street, grp = v.grp, updated_at = v.updated_at,"
                f" last_f_cnt = v.f_cnt, last_dev_addr = v.dev_addr, {bump}"
                " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
                " %b::float8[], %b::bigint[], %b::text[], %b::text[], %b::bigint[])"
                " AS v(kind, doc, twin, street, grp, updated_at, f_cnt, dev_addr, dev, version)"
                " WHERE d.dev_eui = v.dev AND d.version = v.version",
                full,
            ),
            (
                "UPDATE devices AS d SET kind = v.kind, twin = v.twin, last_f_cnt = v.f_cnt,"
                f" last_dev_addr = v.dev_addr, {bump} FROM unnest(%b::text[], %b::text[],"
                " %b::bigint[], %b::text[], %b::text[], %b::bigint[])"
                " AS v(kind, twin, f_cnt, dev_addr, dev, version)"
                " WHERE d.dev_eui = v.dev AND d.version = v.version",
                light,
            ),
            (
                f"UPDATE devices AS d SET {bump} FROM unnest(%b::text[], %b::bigint[])"
                " AS v(dev, version) WHERE d.dev_eui = v.dev AND d.version = v.version",
                bumps,
            ),
        ):
            if not rows:
                continue
            await cur.execute(query, [list(column) for column in zip(*rows, strict=True)])
            if cur.rowcount != len(rows):
                raise StoreConflict(
                    f"{len(rows) - max(cur.rowcount, 0)} device(s) changed by another instance"
                )
        return pending

    async def _write_rest(self, cur: psycopg.AsyncCursor[Any], batch: Staged) -> None:
        now = time.time()
        if batch.seen:
            # a key another instance committed stays its; ours is then a no-op (module docstring)
            await cur.execute(
                "INSERT INTO processed (key, at) SELECT k, %s FROM unnest(%b::text[]) AS k"
                " ON CONFLICT (key) DO NOTHING",
                (now, list(batch.seen)),
            )
        if batch.uplinks:
            async with cur.copy(f"COPY uplinks ({UPLINK_COLUMNS}) FROM STDIN") as copy:
                for u in batch.uplinks:
                    await copy.write_row(u.row())
            await self._count(cur, "uplinks_stored", len(batch.uplinks))
        if batch.dead:
            await cur.executemany(
                "INSERT INTO dead_letters (received_at, topic, payload, reason, dev_eui)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(d.received_at, d.topic, d.payload, d.reason, d.dev_eui) for d in batch.dead],
            )
            await self._count(cur, "dead_letters", len(batch.dead))
        if batch.events:
            events = batch.events  # one statement, as _write_devices does
            await cur.execute(
                "INSERT INTO events (at, type, dev_eui, data)"
                " SELECT * FROM unnest(%b::float8[], %b::text[], %b::text[], %b::text[])",
                (
                    [e.at for e in events],
                    [e.type for e in events],
                    [e.dev_eui for e in events],
                    [json_dumps(e.data) for e in events],
                ),
            )
        if batch.commands:
            await cur.executemany(
                upsert_commands("%s"),
                [command_row(c) for c in batch.commands.values()],
            )
        if batch.groups.heads:
            await cur.executemany(groups.upsert_heads("%s"), batch.groups.head_rows())
        if batch.groups.members:
            await cur.executemany(groups.upsert_members("%s"), batch.groups.member_rows())

    @staticmethod
    async def _count(cur: psycopg.AsyncCursor[Any], name: str, value: int) -> None:
        """Add ``value`` to counter ``name`` in one of :data:`COUNTER_SHARDS` rows
        (``name@<n>``, by backend; pg_reads.py ``counts`` sums them): one row for every
        instance would make each commit wait for the row lock of every other instance's
        commit in flight, fsync included (PostgreSQL 15 manual §13.3.2)."""
        await cur.execute(
            "INSERT INTO counters (name, value) VALUES (%s || '@' || pg_backend_pid() %% %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
            (name, COUNTER_SHARDS, value),
        )


async def _check_idle(conn: AsyncConnection[Any]) -> None:
    """The pool's check of a connection before it hands it out. A pool connection never
    listens, so between queries the server sends it nothing unless it ends the session
    (PostgreSQL restarting or a backend terminated sends an error and closes, a proxy closes):
    only a connection with something to read gets the pool's round trip
    (``check_connection``, which fails for such a one, and the pool replaces it). The round
    trip on every hand-out was one more query per batch, claim and read: 2 % of an
    instance's CPU under load (py-spy, two instances, issue 16), and PostgreSQL's for each."""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    # poll, not select: with thousands of API connections (the service raises its file limit,
    # tools/commands/gateway.py) a pool connection's descriptor can be past select's 1024
    waiting = select.poll()
    waiting.register(conn.fileno(), select.POLLIN)
    if waiting.poll(0):
        await AsyncConnectionPool.check_connection(conn)
