"""A store that fills (the mission's standards: "a store that vanishes or fills"): the disk
under the gateway's database has no room left while uplinks and API commands keep coming.

Made true by construction, not by filling a real disk (which needs a mount, root) and not by
timing:

- **SQLite**: the running gateway's ``RLIMIT_FSIZE`` is set to one byte (``prlimit``). The
  kernel then refuses every write at an offset past it, to any file the process writes
  (EFBIG; CPython ignores SIGXFSZ, so the write fails instead of killing the process), which
  is every write SQLite makes to its WAL or database file: no commit can succeed, as on a disk
  with no free block. The gateway's log goes through a pipe (as journald takes a service's
  output), so its log stays whole. Raising the limit again is the operator freeing space.
- **PostgreSQL**: a trigger on the uplinks table raises SQLSTATE 53100 ``disk_full``, the error
  PostgreSQL gives when it cannot extend a file (PostgreSQL 15 manual, appendix A), so every
  batch holding an uplink is refused by the database itself. Dropping the trigger frees space.

While the store is full the gateway stays up, says so (``/readyz`` 503 with ``"store": false``,
an error in its log naming the cause), acknowledges nothing it could not store (the broker keeps
the uplinks) and refuses an API command with 503 ``store_unavailable`` instead of accepting one it
cannot keep. Once there is room again it is ready, and every uplink published before, during and
after is stored exactly once; the refused command is not there, the one accepted after is.
"""

from __future__ import annotations

import asyncio
import resource
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers import postgres, procs
from tests.helpers.faults import (
    gateway_config,
    publish_uplinks,
    readyz,
    stored_dedup_ids,
    uplink_stream,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

DEVICES = [f"a840410001c{i:05x}" for i in range(10)]
BEFORE = 100
DURING = 500
AFTER = 100


def _sqlite_commands(db: Path) -> list[tuple[str, int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT dev_eui, fields FROM commands WHERE message = 'bin_config'")
        return sorted((dev, _version(fields)) for dev, fields in rows)
    finally:
        con.close()


def _version(fields: object) -> int:
    import json

    doc = json.loads(fields) if isinstance(fields, str | bytes) else fields
    assert isinstance(doc, dict)
    return int(doc["config_version"])


class _Sqlite:
    """The gateway's own SQLite file; full while the process may not write past byte 1."""

    def __init__(self, directory: Path) -> None:
        self.db = directory / "gateway.db"
        self.url: str | None = None  # gateway_config's default: gateway.db in the directory
        self.pid = 0

    @contextmanager
    def full(self) -> Iterator[None]:
        soft, hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (1, hard))
        try:
            yield
        finally:
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (soft, hard))

    def stored(self) -> list[str]:
        return stored_dedup_ids(self.db)

    def commands(self) -> list[tuple[str, int]]:
        return _sqlite_commands(self.db)

    cause = "disk I/O error"  # SQLite's word for a write refused with EFBIG (SQLITE_IOERR_WRITE)


class _Postgres:
    """A database of its own on the machine's PostgreSQL; full while the trigger is there."""

    cause = "No space left on device"  # the message, as PostgreSQL words it

    def __init__(self, url: str) -> None:
        self.url = url
        self.pid = 0

    def _run(self, sql: str) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(sql)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    @contextmanager
    def full(self) -> Iterator[None]:
        self._run(
            "CREATE FUNCTION no_room() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " RAISE EXCEPTION 'could not extend file: No space left on device'"
            " USING ERRCODE = 'disk_full'; END $$;"
            "CREATE TRIGGER no_room BEFORE INSERT ON uplinks"
            " FOR EACH ROW EXECUTE FUNCTION no_room()"
        )
        try:
            yield
        finally:
            self._run("DROP TRIGGER no_room ON uplinks; DROP FUNCTION no_room()")

    def stored(self) -> list[str]:
        return [str(row[0]) for row in self._run("SELECT deduplication_id FROM uplinks")]

    def commands(self) -> list[tuple[str, int]]:
        rows = self._run("SELECT dev_eui, fields FROM commands WHERE message = 'bin_config'")
        return sorted((str(dev), _version(fields)) for dev, fields in rows)


@contextmanager
def _store(kind: str, directory: Path) -> Iterator[_Sqlite | _Postgres]:
    if kind == "sqlite":
        yield _Sqlite(directory)
        return
    with postgres.database() as url:
        yield _Postgres(url)


def _api(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _register(url: str, token: str) -> None:
    with _api(url, token) as api:
        for dev in DEVICES:
            response = api.put(f"/api/v1/devices/{dev}", json={"kind": "bin"})
            assert response.is_success, response.text


def _command(url: str, token: str, dev: str, version: int) -> httpx.Response:
    body = {"message": "bin_config", "fields": {"config_version": version}}
    with _api(url, token) as api:
        return api.post(f"/api/v1/devices/{dev}/commands", json=body)


async def _wait(predicate: Callable[[], object], what: str, timeout_s: float = 60) -> object:
    return await asyncio.to_thread(wait_until, predicate, what, timeout_s)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_full_store_loses_nothing_and_accepts_nothing_it_cannot_keep(
    tmp_path: Path, kind: str
) -> None:
    if procs.find_program("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    (tmp_path / "broker").mkdir()
    broker = procs.start_mosquitto(directory=tmp_path / "broker")
    app = str(uuid.uuid4())
    stream = uplink_stream(app, DEVICES, BEFORE + DURING + AFTER)
    with _store(kind, tmp_path) as store:
        gw = gateway_config(
            tmp_path,
            broker.url,
            application_id=app,
            base_topic=f"cp{uuid.uuid4().hex[:8]}",
            maintenance_s=2.0,  # the maintenance tick also retries a failed commit
            store_url=store.url,
        )
        gw.log_pipe = True
        try:
            gw.start()
            assert gw.process is not None
            store.pid = gw.process.pid
            await _wait(lambda: readyz(gw.url)[0] == 200, "ready")
            await asyncio.to_thread(_register, gw.url, gw.token)
            await publish_uplinks(broker, stream[:BEFORE])
            await _wait(lambda: len(store.stored()) == BEFORE, "the first part stored")

            with store.full():
                publisher = asyncio.create_task(publish_uplinks(broker, stream[BEFORE:-AFTER]))
                _, body = await _wait(
                    lambda: (r := readyz(gw.url))[0] == 503 and r, "readyz reporting the store"
                )  # type: ignore[misc]
                assert body == {"ready": False, "mqtt": True, "store": False}
                await publisher  # the broker took every one; the gateway holds its window
                refused = await asyncio.to_thread(_command, gw.url, gw.token, DEVICES[0], 7)
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"] == "store_unavailable", refused.text
                assert refused.headers.get("retry-after") == "1"
                assert gw.process.poll() is None  # still up
                assert len(store.stored()) == BEFORE  # nothing got onto the full disk

            await _wait(lambda: readyz(gw.url)[0] == 200, "ready again")
            accepted = await asyncio.to_thread(_command, gw.url, gw.token, DEVICES[1], 8)
            assert accepted.status_code == 202, accepted.text
            await publish_uplinks(broker, stream[-AFTER:])
            await _wait(lambda: len(store.stored()) >= len(stream), "every uplink", 90)
            assert gw.terminate() == 0
            stored = store.stored()
            assert [d for d, n in Counter(stored).items() if n > 1] == []
            assert set(stored) == {dedup for _, _, dedup in stream}
            # the command refused while full was never kept; the one accepted after was
            assert store.commands() == [(DEVICES[1], 8)]
            failures = [line for line in gw.log_lines() if line.get("level") == "error"]
            causes = [str(line.get("error")) for line in failures]
            assert any(store.cause in cause for cause in causes), causes
        finally:
            gw.kill()
            broker.stop()
