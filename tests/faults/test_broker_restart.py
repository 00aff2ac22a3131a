"""Broker restart mid-stream (issue 8): mosquitto (with persistence) is stopped while the gateway
is receiving a QoS 1 stream and started again on the same port. While it is away ``/readyz``
answers 503 with ``"mqtt": false``; the gateway reconnects with growing back-off, resubscribes,
and stores every uplink the broker had accepted exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import procs
from tests.helpers.faults import (
    gateway_config,
    publish_uplinks,
    readyz,
    stored_dedup_ids,
    uplink_stream,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

DEVICES = [f"a8404100019{i:05x}" for i in range(10)]


async def _restart_run(tmp_path: Path, total: int, outages: int, outage_s: float) -> None:
    if procs.find_program("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    directory = tmp_path / "broker"
    directory.mkdir()
    broker = procs.start_mosquitto(persistence=True, directory=directory)
    port = broker.port
    app = str(uuid.uuid4())
    gw = gateway_config(
        tmp_path, broker.url, application_id=app, base_topic=f"cp{uuid.uuid4().hex[:8]}"
    )
    db = tmp_path / "gateway.db"
    stream = uplink_stream(app, DEVICES, total)
    chunk = total // (outages + 1)
    seen_outage: list[dict[str, object]] = []
    try:
        gw.start()
        await asyncio.to_thread(wait_until, lambda: readyz(gw.url)[0] == 200, "ready")
        for round_ in range(outages + 1):
            start, end = round_ * chunk, total if round_ == outages else (round_ + 1) * chunk
            if round_ == 0:
                # later rounds: right after the restart
                await publish_uplinks(broker, stream[start:end])
            if round_ == outages:
                break
            # mid-stream: the gateway is working on what was published (stream[:end]); a fast
            # gateway may already have all of it, and then there is no more progress to wait for
            before = len(stored_dedup_ids(db))
            await asyncio.to_thread(
                wait_until,
                lambda b=before, e=end: (n := len(stored_dedup_ids(db))) > b or n >= e,
                "some progress",
            )
            broker.stop()  # SIGTERM: mosquitto saves its persistence file
            _, body = await asyncio.to_thread(
                wait_until,
                lambda: (r := readyz(gw.url))[0] == 503 and r,
                "readyz reporting the outage",
            )
            assert body["mqtt"] is False and body["ready"] is False and body["store"] is True
            seen_outage.append(body)
            await asyncio.sleep(outage_s)
            assert readyz(gw.url)[0] == 503  # still down while the broker is
            broker = procs.start_mosquitto(port, persistence=True, directory=directory)
            # ChirpStack is back first: what it publishes now waits in the gateway's session
            next_end = total if round_ + 1 == outages else (round_ + 2) * chunk
            await publish_uplinks(broker, stream[end:next_end])
            await asyncio.to_thread(wait_until, lambda: readyz(gw.url)[0] == 200, "ready again", 30)
        await asyncio.to_thread(
            wait_until, lambda: len(stored_dedup_ids(db)) >= total, "every uplink", 90
        )
        await asyncio.sleep(0.5)
        assert gw.terminate() == 0
        stored = stored_dedup_ids(db)
        assert [d for d, n in Counter(stored).items() if n > 1] == []
        assert set(stored) == {dedup for _, _, dedup in stream}
        assert len(seen_outage) == outages
        logs = gw.log_lines()
        connects = [line for line in logs if line.get("msg") == "mqtt connected"]
        assert len(connects) == outages + 1  # reconnected (and resubscribed) after each outage
        retries = [
            float(line.get("retry_in_s", line.get("retry_within_s", 0)))  # type: ignore[arg-type]
            for line in logs
            if line.get("msg") == "mqtt disconnected"
        ]
        assert retries and max(retries) > min(retries)  # back-off grows while the broker is away
        assert max(retries) <= 1.0  # ... up to reconnect_max_s
    finally:
        gw.kill()
        broker.stop()


async def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    await _restart_run(tmp_path, total=400, outages=1, outage_s=2.0)


@pytest.mark.soak
@pytest.mark.timeout(1200)
async def test_broker_restarts_repeatedly_soak(tmp_path: Path) -> None:
    await _restart_run(tmp_path, total=5000, outages=5, outage_s=5.0)
