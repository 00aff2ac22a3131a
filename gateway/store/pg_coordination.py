"""Once-per-fleet jobs and change notifications through PostgreSQL (several gateway instances).

**Leadership** (:class:`Leadership`): a job (``dispatch``, ``maintenance``) runs on the instance
that holds the session-level advisory lock ``pg_try_advisory_lock(JOB_NAMESPACE, <job>)``
(PostgreSQL 15 manual §9.27.10) on a connection of its own. PostgreSQL releases a session lock
when the session ends, so the holder's death frees it:

- killed process (``kill -9``, OOM): the kernel closes its socket, the server backend sees EOF
  and ends at once;
- vanished host or network: the session sets ``tcp_keepalives_idle/interval/count`` (manual
  §20.3.1, user-settable) to 2 s / 1 s / 3, so the server drops it within about 5 s, and
  ``client_connection_check_interval`` (§20.3.1) to 1 s for a backend that is busy.

Every other instance retries the lock each ``retry_s`` (1 s), so a job is taken over well within
10 s of its holder's death. The holder checks its own session each ``retry_s`` and stops the job
the moment that fails (PostgreSQL restarted, network lost), before another instance can have the
lock: the check interval (1 s) is shorter than the server's detection (≥ 2 s).

**Notifications** (:func:`listen`): ``LISTEN citypack_changes`` on a connection of its own; each
commit of the store sends ``pg_notify('citypack_changes', <the store's tag>)`` (delivered at
commit). The callback runs on a notification from another store (a notification of this
instance's own commit is skipped: it has nothing to read that this instance does not hold, and
with one commit every few milliseconds it was most of the feed's reads), and every ``poll_s``
without one, so one lost while reconnecting costs at most that delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection

from gateway.errors import StoreError
from gateway.store.pg_schema import JOB_NAMESPACE

__all__ = ["SESSION_SETTINGS", "Leadership", "job_key", "listen"]

CHANNEL = "citypack_changes"
# a session holding a lock others wait for: see the module docstring
SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 2",
    "SET tcp_keepalives_interval = 1",
    "SET tcp_keepalives_count = 3",
    "SET client_connection_check_interval = 1000",
)


def job_key(job: str) -> int:
    """The advisory-lock key of a job name (stable across versions and instances)."""
    return zlib.crc32(job.encode()) & 0x7FFFFFFF


async def _connect(url: str, kwargs: dict[str, Any]) -> AsyncConnection[Any]:
    conn = await AsyncConnection.connect(url, autocommit=True, **kwargs)
    try:
        for statement in SESSION_SETTINGS:
            await conn.execute(statement)  # type: ignore[arg-type]
    except BaseException:  # a lost session, or a stop (cancelled): the caller never gets it
        with contextlib.suppress(psycopg.Error):
            await conn.close()
        raise
    return conn


class Leadership:
    """Runs ``body`` on the one instance that holds ``job``; see the module docstring."""

    def __init__(
        self,
        url: str,
        kwargs: dict[str, Any],
        job: str,
        *,
        logger: logging.Logger,
        retry_s: float = 1.0,
    ) -> None:
        self.url = url
        self.kwargs = kwargs
        self.job = job
        self.log = logger
        self.retry_s = retry_s
        self.held = asyncio.Event()
        self.terms = 0  # how many times this instance took the job (tests and metrics read it)

    async def run(self, body: Callable[[], Awaitable[None]]) -> None:
        """Forever: wait for the lock, run ``body`` while it is held, stop it when it is lost."""
        while True:
            conn: AsyncConnection[Any] | None = None
            try:
                conn = await _connect(self.url, self.kwargs)
                await self._acquire(conn)
                self.held.set()
                self.terms += 1
                self.log.info("leading", extra={"job": self.job})
                await self._hold(conn, body)
            except (psycopg.Error, StoreError) as exc:  # the session, or the job's own store
                self.log.warning(
                    "leadership connection lost",
                    extra={"job": self.job, "error": str(exc).splitlines()[0] if str(exc) else ""},
                )
            finally:
                if self.held.is_set():
                    self.held.clear()
                    self.log.info("no longer leading", extra={"job": self.job})
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        await conn.close()
            await asyncio.sleep(self.retry_s)

    async def _acquire(self, conn: AsyncConnection[Any]) -> None:
        """Try the lock each ``retry_s`` (never a blocking lock: its waiting session could not
        notice its own PostgreSQL going away)."""
        while True:
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (JOB_NAMESPACE, job_key(self.job))
            )
            row = await cur.fetchone()
            if row and row[0]:
                return
            await asyncio.sleep(self.retry_s)

    async def _hold(self, conn: AsyncConnection[Any], body: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(body())
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.retry_s)
                if done:
                    break
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that
                # arrives as the inner call completes (CPython gh-86296) and this loop would
                # then outlive its task
                async with asyncio.timeout(self.retry_s * 2):
                    await conn.execute("SELECT 1")
        except TimeoutError as exc:
            raise psycopg.OperationalError("leadership session check timed out") from exc
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        task.result()  # a job that failed fails here (raises), as it would on its own


async def listen(
    url: str,
    kwargs: dict[str, Any],
    callback: Callable[[], Awaitable[None]],
    *,
    logger: logging.Logger,
    poll_s: float = 1.0,
    own_tag: str | None = None,
    min_gap_s: float = 0.0,
) -> None:
    """Forever: call ``callback`` on every ``citypack_changes`` notification whose payload is
    not ``own_tag`` and every ``poll_s`` without one; reconnect after a lost connection.

    At most one call per ``min_gap_s``: notifications that come during the gap are answered
    by one call after it (each call reads everything committed since the last one)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            conn = await _connect(url, kwargs)
        except psycopg.Error as exc:
            logger.warning("change feed cannot connect", extra={"error": str(exc)[:200]})
            await asyncio.sleep(poll_s)
            continue
        try:
            await conn.execute(f"LISTEN {CHANNEL}")  # type: ignore[arg-type]
            due = loop.time()
            pending = True  # the first call: whatever was committed before the LISTEN
            while True:  # pending: notified during the last gap, so call again at once
                heard, pending = pending, False
                if not heard:
                    # stop_after, not break: the generator holds the connection's lock until
                    # it ends; it may still yield several notifications that arrived together
                    wait_s = max(due - loop.time(), 0.0)
                    async for notify in conn.notifies(timeout=wait_s, stop_after=1):
                        heard = heard or notify.payload != own_tag
                if heard or loop.time() >= due:
                    await callback()
                    due = loop.time() + poll_s
                    if min_gap_s > 0:  # every notification of the gap, answered by one call
                        async for notify in conn.notifies(timeout=min_gap_s):
                            pending = pending or notify.payload != own_tag
        except psycopg.Error as exc:
            logger.warning("change feed connection lost", extra={"error": str(exc)[:200]})
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        await asyncio.sleep(poll_s)
