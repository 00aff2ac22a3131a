"""Reads of the PostgreSQL store (gateway/store/postgres.py): history, events, dead letters,
commands, counters, the change feed, retention and the instances' heartbeats. Each runs on a
connection of the pool, outside the batch transaction."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.errors import StoreError
from gateway.store.base import (
    ACTIVE_STATES,
    NOT_CANCELLED,
    CommandRecord,
    DeadLetter,
    EventRecord,
)
from gateway.store.pg_rows import Staged, column_names, command_of, event_of

__all__ = ["PostgresReads"]

_PRUNE_CHUNK = 5000


class PostgresReads:
    """The read half of :class:`gateway.store.postgres.PostgresStore` (which sets these)."""

    _s: Staged
    _writing: Staged | None
    _own_xids: deque[int]
    _relayed: deque[int]

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        raise NotImplementedError

    def _error(self, what: str, exc: BaseException) -> StoreError:
        raise NotImplementedError

    async def _rows(self, query: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(query, tuple(params))
                names = column_names(cur)
                return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error("read failed", exc) from exc

    async def save_campaign(
        self, campaign_id: str, state: str, created_at: float, doc: str, bundle: bytes | None
    ) -> None:
        """A FUOTA campaign, written now in its own transaction (gateway/store/base.py)."""
        try:
            async with self.pool.connection() as conn:
                if bundle is not None:
                    await conn.execute(
                        "INSERT INTO fuota_campaigns (id, state, created_at, doc, bundle)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE"
                        " SET state = excluded.state, doc = excluded.doc" + NOT_CANCELLED,
                        (campaign_id, state, created_at, doc, bundle),
                    )
                else:
                    await conn.execute(
                        "UPDATE fuota_campaigns SET state = %s, doc = %s WHERE id = %s"
                        " AND (fuota_campaigns.state <> 'cancelled' OR %s = 'cancelled')",
                        (state, doc, campaign_id, state),
                    )
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error("campaign write failed", exc) from exc

    async def load_campaigns(self) -> list[tuple[str, bytes]]:
        rows = await self._rows("SELECT doc, bundle FROM fuota_campaigns ORDER BY created_at")
        return [(str(r["doc"]), bytes(r["bundle"])) for r in rows]

    async def campaign_states(self) -> list[tuple[str, str]]:
        rows = await self._rows("SELECT id, state FROM fuota_campaigns ORDER BY created_at")
        return [(str(r["id"]), str(r["state"])) for r in rows]

    async def get_command(self, command_id: str) -> CommandRecord | None:
        for batch in (self._s, self._writing):
            staged = batch.commands.get(command_id) if batch is not None else None
            if staged is not None:
                return staged
        rows = await self._rows("SELECT * FROM commands WHERE id = %s", (command_id,))
        return command_of(rows[0]) if rows else None

    async def active_commands(self) -> list[CommandRecord]:
        rows = await self._rows(
            "SELECT * FROM commands WHERE state = ANY(%s) ORDER BY created_at",
            (list(ACTIVE_STATES),),
        )
        return [command_of(r) for r in rows]

    async def recent_commands(
        self, *, states: tuple[str, ...] | None = None, dev_eui: str | None = None, limit: int
    ) -> list[CommandRecord]:
        query = "SELECT * FROM commands WHERE true"
        params: list[Any] = []
        if states:
            query += " AND state = ANY(%s)"
            params.append(list(states))
        if dev_eui is not None:
            query += " AND dev_eui = %s"
            params.append(dev_eui)
        query += " ORDER BY created_at DESC LIMIT %s"
        params.append(limit)
        return [command_of(r) for r in await self._rows(query, params)]

    async def uplinks(
        self, dev_eui: str, *, limit: int, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        query = "SELECT * FROM uplinks WHERE dev_eui = %s"
        params: list[Any] = [dev_eui]
        if before_id is not None:
            query += " AND id < %s"
            params.append(before_id)
        query += " ORDER BY id DESC LIMIT %s"
        params.append(limit)
        out = await self._rows(query, params)
        for doc in out:
            doc["fields"] = json.loads(doc["fields"])
            doc["data"] = bytes(doc["data"]).hex()
        return out

    async def events(
        self,
        *,
        type: str | None = None,
        dev_eui: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[EventRecord]:
        query = "SELECT id, at, type, dev_eui, data FROM events WHERE true"
        params: list[Any] = []
        if type:
            query += " AND type = %s"
            params.append(type)
        if dev_eui:
            query += " AND dev_eui = %s"
            params.append(dev_eui)
        if since is not None:
            query += " AND at >= %s"
            params.append(since)
        query += " ORDER BY id DESC LIMIT %s"
        params.append(limit)
        return [event_of(r) for r in await self._rows(query, params)]

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        rows = await self._rows("SELECT * FROM dead_letters ORDER BY id DESC LIMIT %s", (limit,))
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
        # a counter is the sum of its rows: ``name`` and its shards ``name@<n>`` (postgres.py)
        counters = {
            r["name"]: r["value"]
            for r in await self._rows(
                "SELECT split_part(name, '@', 1) AS name, sum(value) AS value FROM counters"
                " GROUP BY 1"
            )
        }
        by_state = {
            r["state"]: int(r["n"])
            for r in await self._rows("SELECT state, count(*) AS n FROM commands GROUP BY state")
        }
        return {
            "uplinks_stored": int(counters.get("uplinks_stored", 0)),
            "dead_letters": int(counters.get("dead_letters", 0)),
            "commands_by_state": by_state,
        }

    async def changes(
        self, xmin: int | None
    ) -> tuple[int, list[tuple[str, int, bool]], list[EventRecord]]:
        """Devices (devEUI, version, whether it has an active command) and events written by
        transactions ``>= xmin`` (all when None: events then none), and the ``xmin`` to pass
        next time (pg_schema.py docstring). Events are those of other instances, each returned
        once. The active commands are found through ``commands_by_state`` (they are few), not
        per device through its whole command history."""
        try:
            async with self.pool.connection() as conn:
                await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
                try:
                    async with conn.transaction():  # one snapshot for the xmin and the reads
                        cur = await conn.execute(
                            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
                        )
                        row = await cur.fetchone()
                        nxt = int(row[0]) if row else 0
                        since = 0 if xmin is None else xmin
                        cur = await conn.execute(
                            "SELECT dev_eui, version, dev_eui IN (SELECT dev_eui FROM commands"
                            " WHERE state = ANY(%s)) FROM devices WHERE xid >= %s::text::xid8",
                            (list(ACTIVE_STATES), str(since)),
                        )
                        devices = [(r[0], int(r[1]), bool(r[2])) for r in await cur.fetchall()]
                        events: list[EventRecord] = []
                        if xmin is not None:
                            cur = await conn.execute(
                                "SELECT id, at, type, dev_eui, data, xid::text::bigint AS x"
                                " FROM events WHERE xid >= %s::text::xid8 ORDER BY id",
                                (str(since),),
                            )
                            names = column_names(cur)
                            own = set(self._own_xids)
                            for r in await cur.fetchall():
                                doc = dict(zip(names, r, strict=True))
                                if doc["x"] not in own and doc["id"] not in self._relayed:
                                    self._relayed.append(doc["id"])
                                    events.append(event_of(doc))
                finally:
                    await conn.set_isolation_level(None)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error("change feed read failed", exc) from exc
        return nxt, devices, events

    async def prune(self, older_than: float, keys_older_than: float | None = None) -> int:
        """Retention, as :meth:`gateway.store.sqlite.SqliteStore.prune` (small transactions)."""
        removed = 0
        keys_limit = older_than if keys_older_than is None else keys_older_than
        for table, key, column, limit in (
            ("uplinks", "id", "received_at", older_than),
            ("events", "id", "at", older_than),
            ("dead_letters", "id", "received_at", older_than),
            ("processed", "key", "at", keys_limit),
        ):
            while True:
                try:
                    async with self.pool.connection() as conn:
                        cur = await conn.execute(
                            f"DELETE FROM {table} WHERE {key} IN"
                            f" (SELECT {key} FROM {table} WHERE {column} < %s LIMIT %s)",
                            (limit, _PRUNE_CHUNK),
                        )
                        count = cur.rowcount
                except (psycopg.Error, PoolTimeout) as exc:
                    raise self._error("retention failed", exc) from exc
                removed += count
                if count < _PRUNE_CHUNK:
                    break
                await asyncio.sleep(0)
        return removed

    # --- instances -------------------------------------------------------------------------------

    async def heartbeat(
        self, client_id: str, host: str, started_at: float, *, forget_before: float = 0.0
    ) -> None:
        """Record that this instance is alive (the fleet view, :meth:`instances`), and forget
        the instances whose last heartbeat is older than ``forget_before`` (a Unix time)."""
        try:
            async with self.pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO instances (client_id, started_at, heartbeat_at, host)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (client_id) DO UPDATE SET"
                    " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
                    " host = excluded.host",
                    (client_id, started_at, time.time(), host),
                )
                if forget_before > 0:
                    await conn.execute(
                        "DELETE FROM instances WHERE heartbeat_at < %s", (forget_before,)
                    )
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error("heartbeat failed", exc) from exc

    async def instances(self) -> list[dict[str, Any]]:
        return await self._rows(
            "SELECT client_id, host, started_at, heartbeat_at FROM instances ORDER BY client_id"
        )
