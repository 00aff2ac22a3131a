"""`citypack gateway migrate-store`: everything copied, idempotent, a non-empty target refused
unless told, errors in one line without the password."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.store import (
    CommandRecord,
    DeadLetter,
    Device,
    EventRecord,
    PostgresStore,
    SqliteStore,
    Store,
    UplinkRecord,
)
from tools.cli import main

pytestmark = pytest.mark.postgres


def _uplink(dev: str, f_cnt: int) -> UplinkRecord:
    return UplinkRecord(
        dev_eui=dev,
        received_at=1000.0 + f_cnt,
        deduplication_id=f"dd-{dev}-{f_cnt}",
        time="2026-01-01T00:00:00Z",
        dev_addr="01",
        f_cnt=f_cnt,
        f_port=10,
        dr=5,
        frequency=868100000,
        rssi=-80,
        snr=7.5,
        gateways=1,
        message="bin_status",
        fields={"fill_percent": f_cnt},
        data=bytes([f_cnt % 256]),
    )


async def _fill(url: str) -> None:
    store = SqliteStore(url)
    await store.open()
    for n in range(3):
        dev = Device(dev_eui=f"00000000000000c{n}", kind="bin", street="Main", neighbours=["x"])
        dev.reported["fill_percent"] = 10 * n
        dev.last_f_cnt, dev.last_dev_addr = 40 + n, "01"
        store.stage_device(dev)
        for f_cnt in range(25):
            store.stage_uplink(_uplink(dev.dev_eui, f_cnt))
            store.stage_seen(f"up:dd-{dev.dev_eui}-{f_cnt}")
        store.stage_event(EventRecord("bin_full", dev.dev_eui, 5.0 + n, {"n": n}))
        store.stage_command(
            CommandRecord(
                id=f"cmd-{n}",
                dev_eui=dev.dev_eui,
                message="reboot",
                fields={"command_id": n},
                command_id=n,
                f_port=100,
                data=b"\x01\x02",
                confirmed=n % 2 == 0,
                state="applied" if n else "queued",
            )
        )
    store.stage_dead_letter(DeadLetter(7.0, "application/a/device/x/event/up", b"\xff", "bad"))
    await store.commit()
    await store.close()


async def _snapshot(store: Store) -> dict[str, Any]:
    await store.open()
    try:
        devices = sorted(await store.load_devices(), key=lambda d: d.dev_eui)
        return {
            "devices": [d.to_json() for d in devices],
            "uplinks": {d.dev_eui: await store.uplinks(d.dev_eui, limit=100) for d in devices},
            "events": [(e.type, e.dev_eui, e.at, e.data) for e in await store.events(limit=100)],
            "dead": [(d.topic, d.payload, d.reason) for d in await store.dead_letters(limit=10)],
            "commands": [(await store.get_command(f"cmd-{n}")) for n in range(3)],
            "counts": await store.counts(),
            "seen": await store.seen("up:dd-00000000000000c2-24"),
        }
    finally:
        await store.close()


def _strip_ids(snapshot: dict[str, Any]) -> dict[str, Any]:
    for rows in snapshot["uplinks"].values():
        for row in rows:
            row.pop("id")
    return snapshot


def test_everything_is_copied_once(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = f"sqlite:///{tmp_path}/city.db"
    asyncio.run(_fill(source))
    target = postgres_url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
    assert main(["gateway", "migrate-store", "--from", source, "--to", target]) == 0
    out = capsys.readouterr()
    assert "uplinks 75" in out.out and "devices 3" in out.out
    assert "hunter2" not in out.out + out.err
    expected = _strip_ids(asyncio.run(_snapshot(SqliteStore(source))))
    copied = _strip_ids(asyncio.run(_snapshot(PostgresStore(postgres_url))))
    assert copied == expected
    assert copied["seen"] and copied["counts"]["uplinks_stored"] == 75

    # idempotent: the same copy again is recognised and adds nothing
    assert main(["gateway", "migrate-store", "--from", source, "--to", postgres_url]) == 0
    out = capsys.readouterr()
    assert "resumed" in out.out and "uplinks 0" in out.out
    assert _strip_ids(asyncio.run(_snapshot(PostgresStore(postgres_url)))) == expected


def test_nonempty_target_is_refused_unless_told(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = f"sqlite:///{tmp_path}/city.db"
    asyncio.run(_fill(source))

    async def occupy() -> None:
        store = PostgresStore(postgres_url)
        await store.open()
        store.stage_device(Device(dev_eui="00000000000000c0", kind="lamp"))
        store.stage_device(Device(dev_eui="00000000000000ff", kind="lamp"))
        await store.commit()
        await store.close()

    asyncio.run(occupy())
    assert main(["gateway", "migrate-store", "--from", source, "--to", postgres_url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds fleet data" in err[0] and "--into-nonempty" in err[0]
    args = ["gateway", "migrate-store", "--from", source, "--to", postgres_url, "--into-nonempty"]
    assert main(args) == 0
    assert "1 row(s) were there already" in capsys.readouterr().out
    merged = asyncio.run(_snapshot(PostgresStore(postgres_url)))
    kinds = {d["dev_eui"]: d["kind"] for d in merged["devices"]}
    assert kinds == {
        "00000000000000c0": "lamp",  # the target's row stays
        "00000000000000c1": "bin",
        "00000000000000c2": "bin",
        "00000000000000ff": "lamp",
    }


def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["gateway", "migrate-store", "--from", f"sqlite:///{tmp_path}/none.db"]
    assert main([*args, "--to", "postgresql://u:hunter2@127.0.0.1:1/x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such SQLite file" in err[0]
    assert main(["gateway", "migrate-store", "--from", "x", "--to", "postgresql://h/d"]) == 1
    assert "expected sqlite:///path" in capsys.readouterr().err
    source = f"sqlite:///{tmp_path}/city.db"
    asyncio.run(_fill(source))
    assert main(["gateway", "migrate-store", "--from", source, "--to", "sqlite:///y"]) == 1
    assert "expected postgresql://" in capsys.readouterr().err
    assert main([*args[:3], source, "--to", "postgresql://u:hunter2@127.0.0.1:1/x"]) == 1
    err = capsys.readouterr().err
    assert "cannot connect" in err and "hunter2" not in err and len(err.strip().splitlines()) == 1
