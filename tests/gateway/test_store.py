"""The store contract (gateway/store/base.py) on both backends, SQLite and PostgreSQL: migrations,
batched commits, dedup keys, retention, reopening. PostgreSQL-only behaviour (several instances
on one database) is in test_store_postgres.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.errors import StoreError
from gateway.store import (
    CommandRecord,
    DeadLetter,
    Device,
    EventRecord,
    SqliteStore,
    Store,
    UplinkRecord,
    create_store,
    pg_schema,
)
from gateway.store.groups import GroupHead, GroupMember, member_state
from gateway.store.sqlite import MIGRATIONS


async def _schema_version(store: Store) -> tuple[int, int]:
    """(version in the store, migrations this gateway has)."""
    if isinstance(store, SqliteStore):
        return store.schema_version(), len(MIGRATIONS)
    return await store.schema_version(), len(pg_schema.MIGRATIONS)  # type: ignore[attr-defined]


def _uplink(dev: str, f_cnt: int, at: float = 1000.0) -> UplinkRecord:
    return UplinkRecord(
        dev_eui=dev,
        received_at=at,
        deduplication_id=f"d{f_cnt}",
        time="",
        dev_addr="01",
        f_cnt=f_cnt,
        f_port=10,
        dr=5,
        frequency=868100000,
        rssi=-80,
        snr=7.0,
        gateways=2,
        message="bin_status",
        fields={"fill_percent": 40},
        data=b"\xa1\x00\x14",
    )


async def test_roundtrip_and_reopen(store_url: str) -> None:
    url = store_url
    store = create_store(url)
    await store.open()
    version, latest = await _schema_version(store)
    assert version == latest
    dev = Device(dev_eui="00000000000000a1", kind="bin", street="Main", neighbours=["x"])
    dev.last_f_cnt, dev.last_dev_addr = 7, "01"
    dev.reported["fill_percent"] = 40
    store.stage_device(dev)
    store.stage_seen("up:abc")
    store.stage_uplink(_uplink(dev.dev_eui, 1))
    store.stage_dead_letter(DeadLetter(1.0, "t", b"\xff", "undecodable", dev.dev_eui))
    store.stage_event(EventRecord("bin_full", dev.dev_eui, 2.0, {"fill_percent": 90}))
    cmd = CommandRecord(
        id="c1",
        dev_eui=dev.dev_eui,
        message="reboot",
        fields={},
        command_id=0,
        f_port=100,
        data=b"\x01",
        confirmed=True,
    )
    store.stage_command(cmd)
    assert await store.seen("up:abc")  # staged keys count for dedup before commit
    assert await store.f_cnt_payload(dev.dev_eui, "01", 1) is not None
    await store.commit()
    assert store.staged() == 0
    await store.close()

    again = create_store(url)
    await again.open()
    assert await _schema_version(again) == (latest, latest)  # migrations not re-applied
    devices = await again.load_devices()
    assert [(d.dev_eui, d.kind, d.street, d.neighbours) for d in devices] == [
        ("00000000000000a1", "bin", "Main", ["x"])
    ]
    assert (devices[0].last_f_cnt, devices[0].last_dev_addr) == (7, "01")
    assert devices[0].reported == {"fill_percent": 40}
    # a twin-only change takes the light path and still round-trips
    devices[0].last_f_cnt = 8
    devices[0].reported["fill_percent"] = 41
    again.stage_device(devices[0])
    await again.commit()
    reloaded = (await again.load_devices())[0]
    assert (reloaded.last_f_cnt, reloaded.reported["fill_percent"], reloaded.street) == (
        8,
        41,
        "Main",
    )
    assert await again.seen("up:abc") and not await again.seen("up:other")
    assert await again.f_cnt_payload(dev.dev_eui, "01", 1) is not None
    assert await again.f_cnt_payload(dev.dev_eui, "02", 1) is None
    history = await again.uplinks(dev.dev_eui, limit=10)
    assert history[0]["fields"] == {"fill_percent": 40} and history[0]["gateways"] == 2
    assert (await again.dead_letters())[0].payload == b"\xff"
    assert (await again.events(type="bin_full"))[0].data == {"fill_percent": 90}
    got = await again.get_command("c1")
    assert got is not None and got.confirmed is True and got.state == "queued"
    assert [c.id for c in await again.active_commands()] == ["c1"]
    assert [c.id for c in await again.recent_commands(limit=5)] == ["c1"]
    assert await again.recent_commands(states=("applied",), limit=5) == []
    assert [c.id for c in await again.recent_commands(dev_eui=dev.dev_eui, limit=5)] == ["c1"]
    counts = await again.counts()
    assert counts == {"uplinks_stored": 1, "dead_letters": 1, "commands_by_state": {"queued": 1}}
    await again.close()


async def test_retention_prunes_history_but_not_counters(store_url: str) -> None:
    store = create_store(store_url)
    await store.open()
    store.stage_uplink(_uplink("00000000000000a1", 1, at=10.0))
    store.stage_uplink(_uplink("00000000000000a1", 2, at=5000.0))
    await store.commit()
    assert await store.prune(older_than=100.0) >= 1
    assert [u["f_cnt"] for u in await store.uplinks("00000000000000a1", limit=10)] == [2]
    assert (await store.counts())["uplinks_stored"] == 2
    await store.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (99)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        await SqliteStore(f"sqlite:///{path}").open()


async def test_dedup_keys_have_their_own_retention(store_url: str) -> None:
    import time

    store = create_store(store_url)
    await store.open()
    store.stage_seen("up:old")
    store.stage_uplink(_uplink("00000000000000a1", 1, at=time.time()))
    await store.commit()
    future = time.time() + 10
    await store.prune(older_than=0.0, keys_older_than=future)
    assert not await store.seen("up:old")  # the key went ...
    assert await store.f_cnt_payload("00000000000000a1", "01", 1) is not None  # history stays
    await store.close()


async def test_prune_in_chunks(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.store import pg_reads
    from gateway.store import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "_PRUNE_CHUNK", 2)
    monkeypatch.setattr(pg_reads, "_PRUNE_CHUNK", 2)
    store = create_store(store_url)
    await store.open()
    for f_cnt in range(7):
        store.stage_uplink(_uplink("00000000000000a1", f_cnt, at=10.0 + f_cnt))
    store.stage_uplink(_uplink("00000000000000a1", 99, at=1000.0))
    await store.commit()
    assert await store.prune(older_than=500.0) == 7
    assert [u["f_cnt"] for u in await store.uplinks("00000000000000a1", limit=10)] == [99]
    await store.close()


async def test_discard_and_load_device(store_url: str) -> None:
    store = create_store(store_url)
    await store.open()
    dev = Device(dev_eui="00000000000000a2", kind="lamp", street="Side")
    store.stage_device(dev)
    store.stage_command(
        CommandRecord(
            id="c2",
            dev_eui=dev.dev_eui,
            message="reboot",
            fields={},
            command_id=3,
            f_port=100,
            data=b"\x01",
            confirmed=False,
        )
    )
    await store.commit()
    assert not await store.claim_device(dev.dev_eui)  # nobody else wrote it
    store.stage_uplink(_uplink(dev.dev_eui, 5))
    store.stage_seen("up:gone")
    store.discard()
    assert store.staged() == 0
    await store.commit()
    assert not await store.seen("up:gone")
    assert await store.uplinks(dev.dev_eui, limit=5) == []
    loaded, commands = await store.load_device(dev.dev_eui)
    assert loaded is not None and (loaded.kind, loaded.street) == ("lamp", "Side")
    assert [(c.id, c.command_id, c.confirmed) for c in commands] == [("c2", 3, False)]
    assert await store.load_device("ffffffffffffffff") == (None, [])
    await store.close()


def test_unknown_scheme_is_refused_without_its_password() -> None:
    with pytest.raises(StoreError, match="unsupported") as caught:
        create_store("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(caught.value)


async def test_group_commands_and_their_members(store_url: str) -> None:
    """gateway/store/groups.py on both engines: a later stage of a row wins, members are
    per command, reads filter by group, id and expiry, and expiry is read, not written."""
    store = create_store(store_url)
    await store.open()
    try:
        heads = [
            GroupHead(f"c{i}", "oak" if i < 2 else "elm", 100.0 + i, 700.0 + i,
                      {"message": "lamp_override", "command_id": i, "f_cnt": None})
            for i in range(3)
        ]  # fmt: skip
        for head in heads:
            store.stage_group_command(
                head, [GroupMember(head.id, eui, "queued", "", head.created_at) for eui in "ab"]
            )
        await store.commit()
        # the enqueue's answer and a member's result, staged in one batch
        store.stage_group_command(
            GroupHead("c0", "oak", 100.0, 700.0, {**heads[0].doc, "f_cnt": 4})
        )
        store.stage_group_member(GroupMember("c0", "a", "queued", "", 101.0))
        store.stage_group_member(GroupMember("c0", "a", "applied", "", 102.0))
        store.stage_group_member(GroupMember("c0", "b", "failed", "the node answered busy", 103.0))
        await store.commit()
        oak = await store.group_commands(group="oak")
        assert [h.id for h, _ in oak] == ["c1", "c0"]  # newest first
        head, members = (await store.group_commands(command="c0"))[0]
        assert head.doc["f_cnt"] == 4 and head.expires_at == 700.0
        assert [(m.dev_eui, m.state, m.error) for m in members] == [
            ("a", "applied", ""),
            ("b", "failed", "the node answered busy"),
        ]
        assert [h.id for h, _ in await store.group_commands(active_at=701.5)] == ["c2"]
        assert await store.group_commands(command="nope") == []
        assert [h.id for h, _ in await store.group_commands(limit=1)] == ["c2"]
        queued = GroupMember("c1", "a", "queued", "", 101.0)
        assert member_state(queued, 701.0, 701.0) == "queued"
        assert member_state(queued, 701.0, 701.5) == "expired"
        assert member_state(members[0], 700.0, 9e9) == "applied"
    finally:
        await store.close()
