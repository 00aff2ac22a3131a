"""SQLite commits on the store's writer thread when each commit is an fsync
(``synchronous = "full"``; gateway/store/sqlite.py, issue 17): while one commit is under way the
gateway goes on processing messages, and a message's PUBACK still waits for the commit that
holds it (invariant 3). The writer is held by construction (an event the test releases), not by
timing. With "normal" (the default) the commit runs on the loop."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import aiomqtt

from gateway.config import parse_config
from gateway.service import Gateway
from gateway.store.sqlite import SqliteStore
from protocol import codec
from tests.gateway import events as ev

APP = str(uuid.uuid4())
DEV = "a84041000181c001"


def _message(f_cnt: int, mid: int) -> aiomqtt.Message:
    f_port, data = codec.encode(
        "bin_status", {"fill_percent": 10 + f_cnt, "temperature_c": 9, "battery_percent": 70}
    )
    doc = ev.up(APP, DEV, f_cnt=f_cnt, f_port=f_port, data=data)
    return aiomqtt.Message(ev.topic(APP, DEV, "up"), ev.dumps(doc), 1, False, mid, None)


async def _until(event: threading.Event) -> None:
    for _ in range(5000):  # bounded: 5 s
        if event.is_set():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the writer thread did not start the commit")


async def test_processing_goes_on_during_a_commit_and_acks_wait_for_it(tmp_path: Path) -> None:
    config = parse_config(
        {
            "mqtt": {"url": "mqtt://127.0.0.1:1", "application_id": APP},
            "store": {"url": f"sqlite:///{tmp_path / 'gw.db'}", "synchronous": "full"},
            "api": {"enabled": False},
        },
        environ={},
    )
    gateway = Gateway(config)
    await gateway.open()
    store = gateway.store
    assert isinstance(store, SqliteStore) and store.writes_off_loop
    acked: list[int] = []
    gateway.bridge.generation = 1
    gateway.bridge.ack_many = lambda generation, mids: acked.extend(mids)  # type: ignore[method-assign]
    entered, release = threading.Event(), threading.Event()
    write = store._write

    def held_write(*args: Any) -> None:
        entered.set()
        if not release.wait(10):
            raise AssertionError("never released")
        write(*args)

    store._write = held_write  # type: ignore[method-assign,assignment]
    try:
        await gateway._on_message(_message(1, mid=101), 1)
        flushing = asyncio.create_task(gateway.flush())
        await _until(entered)  # the first batch's transaction is held open on the writer
        async with asyncio.timeout(5):  # processing does not wait for that commit
            await gateway._on_message(_message(2, mid=102), 1)
        assert acked == []  # nothing acknowledged before its commit
        assert store.committing and store.staged()  # message 2 staged for the next commit
        release.set()
        await flushing
        assert acked == [101]  # the first commit held message 1 only
        store._write = write  # type: ignore[method-assign]
        await gateway.flush()
        assert acked == [101, 102]
        assert len(await store.uplinks(DEV, limit=10)) == 2
    finally:
        release.set()
        await gateway.close()


async def test_with_normal_sync_the_commit_runs_on_the_loop(tmp_path: Path) -> None:
    config = parse_config(
        {
            "mqtt": {"url": "mqtt://127.0.0.1:1", "application_id": APP},
            "store": {"url": f"sqlite:///{tmp_path / 'gw.db'}"},
            "api": {"enabled": False},
        },
        environ={},
    )
    gateway = Gateway(config)
    await gateway.open()
    store = gateway.store
    assert isinstance(store, SqliteStore) and not store.writes_off_loop
    threads: list[int] = []
    write = store._write

    def on_which_thread(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return write(*args)

    store._write = on_which_thread  # type: ignore[method-assign]
    acked: list[int] = []
    try:
        gateway.bridge.generation = 1
        gateway.bridge.ack_many = lambda generation, mids: acked.extend(mids)  # type: ignore[method-assign]
        await gateway._on_message(_message(1, mid=101), 1)
        await gateway.flush()
        assert threads == [threading.get_ident()]  # the loop's own thread
        assert acked == [101]  # acknowledged after its commit
        assert len(await store.uplinks(DEV, limit=10)) == 1
    finally:
        await gateway.close()
