"""gateway.store.sqlite when its file goes away (issue 14): deleted before a commit, deleted or
replaced while one runs; nothing counts as committed, everything stays staged, and
:meth:`SqliteStore.reopen` writes it into a new file at the same path."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.errors import StoreGone
from gateway.store import SqliteStore, UplinkRecord


def _uplink(f_cnt: int) -> UplinkRecord:
    return UplinkRecord(
        dev_eui="00000000000000b1",
        received_at=1.0,
        deduplication_id=f"d{f_cnt}",
        time="",
        dev_addr="01",
        f_cnt=f_cnt,
        f_port=10,
        dr=5,
        frequency=None,
        rssi=None,
        snr=None,
        gateways=1,
        message="bin_status",
        fields={},
        data=bytes([f_cnt]),
    )


def _count(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("SELECT count(*) FROM uplinks").fetchone()[0])
    finally:
        con.close()


def _delete(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def test_deleted_before_commit(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    store.stage_uplink(_uplink(1))
    await store.commit()
    assert await store.ping()
    _delete(path)
    assert not await store.ping()
    store.stage_uplink(_uplink(2))
    with pytest.raises(StoreGone, match="gone"):
        await store.commit()
    assert store.staged() == 1  # kept for the next commit
    await store.reopen()
    assert await store.ping()
    await store.commit()
    assert _count(path) == 1 and await store.f_cnt_payload("00000000000000b1", "01", 2)
    await store.close()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_gone_while_committing(tmp_path: Path, how: str) -> None:
    path = tmp_path / "g.db"
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()

    def on_statement(sql: str) -> None:  # the file goes away just before COMMIT runs
        if sql == "COMMIT":
            _delete(path)
            if how == "replaced":
                other = sqlite3.connect(path)
                other.execute("CREATE TABLE x (y)")
                other.close()

    store.db.set_trace_callback(on_statement)
    store.stage_uplink(_uplink(1))
    with pytest.raises(StoreGone):
        await store.commit()  # committed, but into a file no one will open again
    assert store.staged() == 1
    await store.reopen()
    await store.commit()
    assert _count(path) == 1
    await store.close()


async def test_close_with_the_file_gone_says_so(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    store.stage_uplink(_uplink(1))
    _delete(path)
    with pytest.raises(StoreGone):
        await store.close()
    assert not path.exists()
