"""PostgreSQL store behaviour that only exists with several instances on one database:
dedup keys unique in the database, per-device serialisation (advisory lock + version check),
the change feed, leadership of once-per-fleet jobs, notifications, start-up errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from gateway.errors import DeviceBusy, StoreConflict, StoreError
from gateway.store import (
    CommandRecord,
    Device,
    EventRecord,
    PostgresStore,
    UplinkRecord,
    redacted_url,
)
from gateway.store.pg_coordination import Leadership, listen
from gateway.store.pg_schema import MIGRATIONS
from tests.gateway.harness import wait_for

pytestmark = pytest.mark.postgres

LOG = logging.getLogger("test")


async def _pair(url: str) -> tuple[PostgresStore, PostgresStore]:
    a, b = PostgresStore(url), PostgresStore(url)
    await asyncio.gather(a.open(), b.open())  # concurrent first start: migrated once
    return a, b


async def test_dedup_key_committed_by_another_instance_is_recognised(postgres_url: str) -> None:
    a, b = await _pair(postgres_url)
    try:
        assert await a.schema_version() == len(MIGRATIONS)
        a.stage_seen("up:d1")
        await a.commit()
        assert await b.seen("up:d1")
        b.stage_seen("up:d1")  # a stale instance staging it again: ON CONFLICT DO NOTHING
        b.stage_seen("up:d2")
        await b.commit()
        assert await a.seen("up:d2")
    finally:
        await a.close()
        await b.close()


async def test_device_is_serialised_between_instances(postgres_url: str) -> None:
    a, b = await _pair(postgres_url)
    try:
        dev = Device(dev_eui="00000000000000b1", kind="bin")
        a.stage_device(dev)
        await a.commit()
        await b.load_devices()

        assert not await a.claim_device(dev.dev_eui)
        with pytest.raises(DeviceBusy):
            await b.claim_device(dev.dev_eui)
        await b.commit()  # holds nothing now
        waiting = asyncio.create_task(b.claim_device(dev.dev_eui, wait=True))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # blocked behind a's claim
        dev.reported["fill_percent"] = 55
        a.stage_device(dev)
        await a.commit()  # releases the device
        assert await waiting  # ... and b learns that a changed it
        loaded, _ = await b.load_device(dev.dev_eui)
        assert loaded is not None and loaded.reported == {"fill_percent": 55}
        loaded.reported["fill_percent"] = 60
        b.stage_device(loaded)
        await b.commit()
        assert await a.claim_device(dev.dev_eui)  # now a is the stale one
        await a.commit()
    finally:
        await a.close()
        await b.close()


def _uplink(dev: str, f_cnt: int, data: bytes) -> UplinkRecord:
    return UplinkRecord(
        dev_eui=dev,
        received_at=1000.0,
        deduplication_id=f"dd-{dev}-{f_cnt}",
        time="2026-01-01T00:00:00Z",
        dev_addr="0a0b0c0d",
        f_cnt=f_cnt,
        f_port=10,
        dr=5,
        frequency=868100000,
        rssi=-80,
        snr=7.5,
        gateways=1,
        message="bin_status",
        fields={"fill_percent": 1},
        data=data,
    )


async def test_burst_claim_reads_history_under_the_claim_only(postgres_url: str) -> None:
    """claim_devices claims several devices in one round trip and, for the ones it claims,
    reads which have no uplink stored and which dedup keys are absent; seen() and
    f_cnt_payload() answer from that only while the claim lasts."""
    a, b = await _pair(postgres_url)
    heard, fresh, held = "00000000000000c1", "00000000000000c2", "00000000000000c3"
    try:
        for dev in (heard, fresh, held):
            a.stage_device(Device(dev_eui=dev, kind="bin"))
        a.stage_uplink(_uplink(heard, 7, b"\x01"))
        a.stage_seen("up:k-heard")
        await a.commit()
        await b.load_devices()
        assert not await a.claim_device(held)  # a holds this one

        changed, busy = await b.claim_devices(
            [heard, fresh, held],
            unheard=[heard, fresh, held],
            keys=[(heard, "up:k-heard"), (fresh, "up:k-fresh"), (held, "up:k-held")],
        )
        assert (changed, busy) == ([], [held])
        assert await b.seen("up:k-heard")
        assert not await b.seen("up:k-fresh")
        assert await b.f_cnt_payload(heard, "0a0b0c0d", 7) == b"\x01"
        assert await b.f_cnt_payload(fresh, "0a0b0c0d", 7) is None
        # what a wrote for the device b could not claim is read, not taken as absent
        a.stage_seen("up:k-held")
        a.stage_uplink(_uplink(held, 3, b"\x03"))
        a.stage_device(Device(dev_eui=held, kind="bin"))
        await a.commit()
        assert await b.seen("up:k-held")
        assert await b.f_cnt_payload(held, "0a0b0c0d", 3) == b"\x03"
        await b.commit()  # the claims end, and what was known under them

        assert not await a.claim_device(fresh)
        a.stage_seen("up:k-fresh")
        a.stage_uplink(_uplink(fresh, 9, b"\x09"))
        await a.commit()
        assert await b.seen("up:k-fresh")
        assert await b.f_cnt_payload(fresh, "0a0b0c0d", 9) == b"\x09"
        await b.commit()
    finally:
        await a.close()
        await b.close()


async def test_a_read_beside_a_burst_claim_waits_for_its_pipeline(postgres_url: str) -> None:
    """Another task's read on the batch connection (the dispatch job's takeover asks seen())
    while claim_devices has its pipeline open: the read waits for the claim, and both get
    their answers. Before, the read joined the pipeline and psycopg raised AttributeError
    when the pipeline ended (CI, test_crash_before_commit_loses_nothing[postgres])."""
    a, b = await _pair(postgres_url)
    devs = [f"00000000000000d{i}" for i in range(3)]
    try:
        for dev in devs:
            a.stage_device(Device(dev_eui=dev, kind="bin"))
        a.stage_seen("up:k-d0")
        await a.commit()
        await b.load_devices()
        # gather starts the claim first; at its first await the claim is inside the pipeline,
        # and only then does the read start
        claimed, seen = await asyncio.gather(
            b.claim_devices(devs, unheard=devs, keys=[(devs[0], "up:k-d0")]),
            b.seen("up:k-d0"),
        )
        assert claimed == ([], [])
        assert seen
        await b.commit()
    finally:
        await a.close()
        await b.close()


async def test_stale_write_is_refused_whole(postgres_url: str) -> None:
    a, b = await _pair(postgres_url)
    try:
        dev = Device(dev_eui="00000000000000b2", kind="lamp")
        a.stage_device(dev)
        await a.commit()
        stale = (await b.load_devices())[0]
        dev.reported["level"] = 1
        a.stage_device(dev)
        await a.commit()
        stale.reported["level"] = 2
        b.stage_device(stale)  # staged without a claim (API path), on an old version
        b.stage_seen("up:with-the-stale-write")
        with pytest.raises(StoreConflict):
            await b.commit()
        b.discard()
        assert not await a.seen("up:with-the-stale-write")  # nothing of the batch was written
        loaded, _ = await a.load_device(dev.dev_eui)
        assert loaded is not None and loaded.reported == {"level": 1}
        await a.commit()
        # a device created by two instances at once: the second insert is a conflict too
        a.stage_device(Device(dev_eui="00000000000000b3"))
        b.stage_device(Device(dev_eui="00000000000000b3"))
        await a.commit()
        with pytest.raises(StoreConflict):
            await b.commit()
        b.discard()
    finally:
        await a.close()
        await b.close()


@contextlib.asynccontextmanager
async def _with_one_bin(url: str, dev_eui: str) -> AsyncIterator[tuple[PostgresStore, Device]]:
    """An open store that has committed one bin; closed on the way out."""
    store = PostgresStore(url)
    await store.open()
    try:
        dev = Device(dev_eui=dev_eui, kind="bin")
        store.stage_device(dev)
        await store.commit()
        yield store, dev
    finally:
        await store.close()


async def test_batch_survives_a_lost_connection_when_nobody_else_wrote(postgres_url: str) -> None:
    async with _with_one_bin(postgres_url, "00000000000000b4") as (a, dev):
        assert not await a.claim_device(dev.dev_eui)
        assert a._tx is not None
        pid = a._tx.info.backend_pid
        dev.reported["fill_percent"] = 70
        a.stage_device(dev)
        a.stage_seen("up:after-restart")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreError):
            await a.commit()  # the batch transaction died with its session: kept, retried
        assert a.staged() == 2
        await a.commit()  # a new session; the version check proves nobody changed the device
        assert await a.seen("up:after-restart")
        loaded, _ = await a.load_device(dev.dev_eui)
        assert loaded is not None and loaded.reported == {"fill_percent": 70}
        await a.commit()


async def test_a_pool_connection_closed_while_idle_is_not_handed_out(postgres_url: str) -> None:
    """Every idle pool connection's backend terminated (as a PostgreSQL restart ends them): the
    next read gets a working connection, not an error (gateway/store/postgres.py
    ``_check_idle``). The backends are gone before the read, so each socket has the server's
    goodbye to read."""
    async with _with_one_bin(postgres_url, "00000000000000b5") as (store, dev):
        database = psycopg.conninfo.conninfo_to_dict(postgres_url)["dbname"]
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            others = "datname = %s AND pid <> pg_backend_pid()"
            admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {others}",
                          (database,))  # fmt: skip
            deadline = time.monotonic() + 10
            while admin.execute(f"SELECT count(*) FROM pg_stat_activity WHERE {others}",
                                (database,)).fetchone() != (0,):  # fmt: skip
                assert time.monotonic() < deadline, "the backends did not end"
                await asyncio.sleep(0.02)
        for _ in range(3):  # more reads than the pool had idle connections
            assert [d.dev_eui for d in await store.load_devices()] == [dev.dev_eui]


async def test_a_pool_connection_past_descriptor_1024_is_handed_out(postgres_url: str) -> None:
    """The service raises its file limit for thousands of API connections, so the pool's
    connections can get descriptors past 1024, where ``select()`` refuses them: the check
    before a hand-out (``_check_idle``) must still pass them. Constructed: 1,100 descriptors
    are taken before the store opens."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"the file limit ({soft}) keeps every descriptor below 1024")
    read_end, write_end = os.pipe()
    taken = [os.dup(read_end) for _ in range(1100)]
    try:
        async with _with_one_bin(postgres_url, "00000000000000b6") as (store, dev):
            assert [d.dev_eui for d in await store.load_devices()] == [dev.dev_eui]
    finally:
        for fd in (*taken, read_end, write_end):
            os.close(fd)


def _command(dev_eui: str, command_id: str, state: str) -> CommandRecord:
    return CommandRecord(
        id=command_id,
        dev_eui=dev_eui,
        message="reboot",
        fields={"command_id": 1},
        command_id=1,
        f_port=40,
        data=b"\x01",
        confirmed=False,
        state=state,
    )


async def test_change_feed_sees_other_instances_writes(postgres_url: str) -> None:
    a, b = await _pair(postgres_url)
    try:
        xmin, _, _ = await b.changes(None)
        # a transaction older than a's commit, still open when b reads (as another instance's
        # batch would be): b must read a's device again next time, in case that older one
        # commits late, but hand the event over only once
        older = await psycopg.AsyncConnection.connect(postgres_url)
        await older.execute("SELECT pg_current_xact_id()")
        dev = Device(dev_eui="00000000000000b5", kind="bin")
        a.stage_device(dev)
        a.stage_event(EventRecord("bin_full", dev.dev_eui, 1.0, {"fill_percent": 90}))
        await a.commit()
        nxt, devices, events = await b.changes(xmin)
        assert devices == [(dev.dev_eui, 1, False)]
        assert [(e.type, e.data) for e in events] == [("bin_full", {"fill_percent": 90})]
        _, devices, events = await b.changes(nxt)
        assert devices == [(dev.dev_eui, 1, False)] and events == []
        await older.close()
        # a device with an active command says so (the feed reads it at once: fleet_sync.py)
        a.stage_command(_command(dev.dev_eui, "c-active", "queued"))
        a.stage_command(_command("00000000000000b6", "c-done", "applied"))
        a.stage_device(Device(dev_eui="00000000000000b6", kind="bin"))
        await a.commit()
        _, devices, _ = await b.changes(nxt)
        assert sorted(devices) == [(dev.dev_eui, 2, True), ("00000000000000b6", 1, False)]
        # no assertion that the device is not read again now: the snapshot's xmin is the whole
        # server's, and on a shared server another database's open transaction holds it back
    finally:
        await a.close()
        await b.close()


async def test_leadership_is_taken_over_when_the_holder_dies(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()  # the schema
    await store.close()
    ran: list[str] = []

    def body(name: str) -> object:
        async def run() -> None:
            ran.append(name)
            await asyncio.Event().wait()

        return run

    first = Leadership(postgres_url, {}, "dispatch", logger=LOG, retry_s=0.1)
    second = Leadership(postgres_url, {}, "dispatch", logger=LOG, retry_s=0.1)
    other_job = Leadership(postgres_url, {}, "maintenance", logger=LOG, retry_s=0.1)
    tasks = [asyncio.create_task(first.run(body("first")))]  # type: ignore[arg-type]
    try:
        await wait_for(first.held.is_set, "first leader")
        tasks.append(asyncio.create_task(second.run(body("second"))))  # type: ignore[arg-type]
        tasks.append(asyncio.create_task(other_job.run(body("other"))))  # type: ignore[arg-type]
        await wait_for(other_job.held.is_set, "a different job has its own leader")
        await asyncio.sleep(0.5)
        assert not second.held.is_set() and ran == ["first", "other"]
        # the holder goes away for good: its session ends (for PostgreSQL a kill -9 of its
        # process is the same: the session and its advisory locks are gone)
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
        assert not first.held.is_set()
        await wait_for(second.held.is_set, "takeover")
        # held is set just before the job's body starts: wait for the body itself
        await wait_for(lambda: "second" in ran, "the new holder runs the job")
        assert ran == ["first", "other", "second"]
        assert other_job.held.is_set()  # the other job's holder was not disturbed
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("where", ["leadership", "listen"])
async def test_a_stop_while_a_session_is_set_up_closes_its_connection(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A gateway stopped while a leadership or change-feed session is being set up (connected,
    its session settings not yet applied) closed nothing: the connection was left to the
    garbage collector, whose ResourceWarning surfaced in whichever test ran then. By
    construction: the set-up waits in the database (pg_sleep) until the test has seen the
    session and cancelled the task; then the session must be gone."""
    from gateway.store import pg_coordination

    monkeypatch.setattr(
        pg_coordination,
        "SESSION_SETTINGS",
        (*pg_coordination.SESSION_SETTINGS, "SELECT pg_sleep(30)"),
    )
    database = postgres_url.rsplit("/", 1)[1]

    def sessions(query: str) -> int:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query = %s"
                " AND pid <> pg_backend_pid()",
                (database, query),
            ).fetchone()
        return int(row[0]) if row else 0

    async def idle() -> None:
        return None

    if where == "leadership":
        task = asyncio.create_task(
            Leadership(postgres_url, {}, "dispatch", logger=LOG, retry_s=0.1).run(idle)
        )
    else:
        task = asyncio.create_task(listen(postgres_url, {}, idle, logger=LOG))
    try:
        await wait_for(lambda: sessions("SELECT pg_sleep(30)") == 1, "the set-up waiting")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await wait_for(lambda: sessions("SELECT pg_sleep(30)") == 0, "the session closed")


async def _end(task: asyncio.Task[None], *stores: PostgresStore) -> None:
    """Stop a listener task and close the stores of a notification test."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for store in stores:
        await store.close()


async def test_notifications_wake_the_listener(postgres_url: str) -> None:
    store, own = await _pair(postgres_url)  # another instance's store, and this one's
    calls = asyncio.Queue[None]()

    async def callback() -> None:
        calls.put_nowait(None)

    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as spy:
        await spy.execute("LISTEN citypack_changes")
        task = asyncio.create_task(
            listen(postgres_url, {}, callback, logger=LOG, poll_s=30.0, own_tag=own.notify_tag)
        )
        try:
            await asyncio.wait_for(calls.get(), 10)  # the first call, right after LISTEN
            own.stage_seen("up:n0")
            await own.commit()  # this instance's own commit: nothing to read, no call
            async for notify in spy.notifies(timeout=10, stop_after=1):
                assert notify.payload == own.notify_tag  # each commit names its store
            for key in ("up:n1", "up:n2"):
                store.stage_seen(key)
                await store.commit()
                await asyncio.wait_for(calls.get(), 10)  # poll_s is 30 s: this was the NOTIFY
            # notifications arrive in commit order: had the own one made a call, one would
            # be left over now
            assert calls.empty()
        finally:
            await _end(task, store, own)


async def test_notifications_within_the_gap_make_one_call(postgres_url: str) -> None:
    store, own = await _pair(postgres_url)  # another instance's store, and this one's
    calls = asyncio.Queue[float]()
    loop = asyncio.get_running_loop()

    async def callback() -> None:
        calls.put_nowait(loop.time())

    task = asyncio.create_task(
        listen(
            postgres_url,
            {},
            callback,
            logger=LOG,
            poll_s=30.0,
            own_tag=own.notify_tag,
            min_gap_s=4.0,
        )
    )
    try:
        first = await asyncio.wait_for(calls.get(), 10)  # the first call, right after LISTEN
        for key in ("up:g1", "up:g2"):  # two commits of another instance, well inside the gap
            store.stage_seen(key)
            await store.commit()
        assert loop.time() - first < 3.0  # the precondition: they were inside the 4 s gap
        second = await asyncio.wait_for(calls.get(), 10)
        assert second - first >= 4.0  # answered after the gap, not at each NOTIFY
        store.stage_seen("up:g3")
        await store.commit()
        await asyncio.wait_for(calls.get(), 10)  # poll_s is 30 s: this was up:g3's NOTIFY
        # notifications arrive in commit order: had the two made more than one call, a
        # call would be left over now
        assert calls.empty()
    finally:
        await _end(task, store, own)


async def test_start_up_errors_are_one_line_without_password(
    postgres_url: str, tmp_path: Path
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    bad_db = postgres_url.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(StoreError) as caught:
        await PostgresStore(bad_db, password_file=str(secret)).open()
    message = str(caught.value)
    assert "\n" not in message and "no_such_database_here" in message
    assert "hunter2" not in message
    assert redacted_url("postgresql://u:hunter2@h:5/d") == "postgresql://u:***@h:5/d"
    assert redacted_url("postgresql://u@h/d?sslmode=require&password=hunter2") == (
        "postgresql://u@h/d?sslmode=require&password=***"
    )
    with pytest.raises(StoreError, match="cannot connect"):
        await PostgresStore("postgresql://postgres@127.0.0.1:1/x").open()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        admin.execute("INSERT INTO schema_version VALUES (99)")
    with pytest.raises(StoreError, match="newer than this gateway"):
        await PostgresStore(postgres_url).open()


def test_check_config_reports_the_database_in_one_line(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tools.cli import main

    config = tmp_path / "gw.toml"
    config.write_text(f'[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n[store]\nurl = "{postgres_url}"\n')
    assert main(["gateway", "check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"schema v0, migrated to v{len(MIGRATIONS)} when the gateway starts" in out

    async def migrate() -> None:
        store = PostgresStore(postgres_url)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    assert main(["gateway", "check-config", str(config)]) == 0
    assert f"(schema v{len(MIGRATIONS)})" in capsys.readouterr().out
    wrong = postgres_url.rsplit("/", 1)[0] + "/missing_db"
    config.write_text(f'[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n[store]\nurl = "{wrong}"\n')
    assert main(["gateway", "check-config", str(config)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing_db" in err[0] and "cannot connect" in err[0]


def test_postgres_example_config_parses() -> None:
    from gateway.config import load_config

    example = Path(__file__).resolve().parents[2] / "deploy" / "gateway.postgres.example.toml"
    cfg = load_config(str(example), environ={})
    assert cfg.store.url.startswith("postgresql://") and cfg.store.password_file
    assert cfg.mqtt.shared_group and cfg.mqtt.client_id
