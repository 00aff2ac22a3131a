"""The ``citypack_devices`` gauge (gateway/service.py ``refresh_device_gauge`` and
``refresh_device_gauge_async``): counted in chunks, the event loop runs between them, the
counts are those of one pass, and a change made meanwhile is counted at the next read. No
broker: the gateway is opened on a SQLite file and never run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config import parse_config
from gateway.service import Gateway


def _gauge(gateway: Gateway) -> dict[str, float]:
    """``citypack_devices`` as ``/metrics`` renders it: labels -> value."""
    values: dict[str, float] = {}
    for line in gateway.metrics.render().decode().splitlines():
        if line.startswith("citypack_devices{"):
            labels, value = line.rsplit(" ", 1)
            values[labels] = float(value)
    return values


async def test_the_gauge_counted_in_chunks_is_one_pass_and_lets_the_loop_run(
    tmp_path: Path,
) -> None:
    doc = {
        "mqtt": {"url": "mqtt://127.0.0.1:1", "application_id": "app"},
        "store": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
    }
    gateway = Gateway(parse_config(doc, environ={}))
    await gateway.open()
    try:
        devices = [
            gateway.upsert_device(f"a840410000000{i:03x}", {"kind": "bin" if i % 3 else "lamp"})
            for i in range(10)
        ]
        for i, device in enumerate(devices):
            device.availability = ("online", "offline", "unknown")[i % 3]
        devices[4].decommissioned_at = 1.0  # not counted
        gateway.update_device_gauge()
        gateway.refresh_device_gauge()
        whole = _gauge(gateway)
        assert whole['citypack_devices{availability="online",kind="lamp"}'] == 4.0
        assert sum(whole.values()) == 9.0

        turns = 0
        changed = asyncio.Event()

        async def meanwhile() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1
                if turns == 1:  # the first chunk is counted: devices[0] changes after it
                    devices[0].availability = "offline"
                    gateway.update_device_gauge()
                    changed.set()

        other = asyncio.create_task(meanwhile())
        await asyncio.sleep(0)  # it runs up to its first wait
        turns = 0
        gateway.update_device_gauge()
        await gateway.refresh_device_gauge_async(chunk=3)  # 4 chunks: 3 turns between them
        assert turns >= 3 and changed.is_set()
        counted = _gauge(gateway)
        assert counted == whole  # devices[0] was counted before it changed
        await gateway.refresh_device_gauge_async(chunk=3)  # stale again: counted anew
        other.cancel()
        await asyncio.gather(other, return_exceptions=True)
        after = _gauge(gateway)
        assert after['citypack_devices{availability="online",kind="lamp"}'] == 3.0
        assert after['citypack_devices{availability="offline",kind="lamp"}'] == 1.0
        assert sum(after.values()) == 9.0
    finally:
        await gateway.close()
