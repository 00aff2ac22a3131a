"""Gateway crash mid-stream (issue 8): ChirpStack publishes a stream of uplinks at QoS 1 into a
mosquitto with persistence; the gateway process is killed with SIGKILL in the middle and started
again with the same client id and database. Every uplink is stored exactly once (the stored
deduplicationIds are compared with the published ones) and no command is sent twice: each is
handed to ChirpStack under one queue-item id with the same bytes, and handed again at most after
a crash that fell between ChirpStack's PUBACK and the gateway's commit (see the comment in the
test; ChirpStack refuses a second queue item with the same id).

Why it holds: messages are PUBACKed only after the commit that holds their effects, on a
persistent session (gateway/bridge.py), and processing is idempotent on deduplicationId.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.helpers import procs
from tests.helpers.faults import (
    chirpstack_client,
    gateway_config,
    stored_dedup_ids,
    uplink_stream,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

DEVICES = [f"a8404100018{i:05x}" for i in range(20)]


def _api(gw_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=gw_url, headers={"Authorization": f"Bearer {token}"}, timeout=20)


async def _crash_run(tmp_path: Path, total: int, kills: int) -> None:
    if procs.find_program("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    (tmp_path / "broker").mkdir()
    broker = procs.start_mosquitto(persistence=True, directory=tmp_path / "broker")
    app = str(uuid.uuid4())
    base = f"cp{uuid.uuid4().hex[:8]}"
    gw = gateway_config(tmp_path, broker.url, application_id=app, base_topic=base)
    stream = uplink_stream(app, DEVICES, total)
    downlinks: list[dict[str, object]] = []
    db = tmp_path / "gateway.db"
    at_kill: list[tuple[int, int]] = []  # (stored, published by the end of that round)
    try:
        gw.start()
        with _api(gw.url, gw.token) as api:
            for dev in DEVICES:
                assert api.put(f"/api/v1/devices/{dev}", json={"kind": "bin"}).status_code == 200
        async with chirpstack_client(broker, app, downlinks) as chirpstack:
            chunk = total // (kills + 1)
            sent = 0
            for round_ in range(kills + 1):
                # a command per device in flight around each crash
                with _api(gw.url, gw.token) as api:
                    for dev in DEVICES[round_ * 3 : round_ * 3 + 3]:
                        body = {"message": "bin_config", "fields": {"config_version": round_ + 2}}
                        answer = api.post(f"/api/v1/devices/{dev}/commands", json=body)
                        assert answer.status_code == 202, answer.text
                end = total if round_ == kills else sent + chunk

                async def publish(items: list[tuple[str, bytes, str]]) -> None:
                    for topic, payload, _ in items:
                        await chirpstack.publish(topic, payload, qos=1)

                if round_ < kills:
                    # The kill lands mid-stream by construction: ChirpStack publishes the first
                    # part of the round; once the gateway has committed some of it, the gateway
                    # is frozen (SIGSTOP: wherever it stands, even inside a commit), the rest of
                    # the round is published into the broker, and only then comes SIGKILL. That
                    # rest cannot have been stored, whatever the machine's load.
                    split = sent + (end - sent) // 2
                    publisher = asyncio.create_task(publish(stream[sent:split]))
                    before = len(stored_dedup_ids(db))
                    await asyncio.to_thread(
                        wait_until,
                        lambda b=before: len(stored_dedup_ids(db)) > b,
                        "some progress",
                    )
                    gw.freeze()
                    await publisher  # the broker keeps them for the gateway's session
                    await publish(stream[split:end])
                    at_kill.append((len(stored_dedup_ids(db)), end))
                    gw.kill()
                    gw.start()
                else:
                    await publish(stream[sent:end])
                sent = end
            await asyncio.to_thread(
                wait_until, lambda: len(stored_dedup_ids(db)) >= total, "every uplink", 90
            )
            await asyncio.sleep(1.0)  # anything redelivered late would show up now
        assert gw.terminate() == 0
        assert len(at_kill) == kills and all(stored < end for stored, end in at_kill)
        stored = stored_dedup_ids(db)
        counts = Counter(stored)
        assert [d for d, n in counts.items() if n > 1] == []  # none twice
        assert set(stored) == {dedup for _, _, dedup in stream}  # none lost
        copies: dict[str, list[dict[str, object]]] = {}
        for downlink in downlinks:
            copies.setdefault(str(downlink["id"]), []).append(downlink)
        assert len(copies) == 3 * (kills + 1)  # every command handed to ChirpStack
        # A SIGKILL between ChirpStack's PUBACK and the gateway's commit of "published" makes
        # the restarted gateway hand the command over again. It does so with the same id, which
        # is ChirpStack's queue-item id (reference chirpstack.md §4: the second insert of an id
        # is refused), and the same bytes: the node still gets it once. Anything else (a second
        # id for one command, other bytes, a re-send without a crash) fails here.
        for same in copies.values():
            assert all(copy == same[0] for copy in same), same
        handed_again = sum(len(same) - 1 for same in copies.values())
        assert handed_again <= kills
        logs = gw.log_lines()
        assert not [line for line in logs if line.get("level") in ("error", "critical")], logs[-5:]
    finally:
        gw.kill()
        broker.stop()


async def test_kill_9_mid_stream_processes_every_uplink_once(tmp_path: Path) -> None:
    await _crash_run(tmp_path, total=600, kills=1)


@pytest.mark.soak
@pytest.mark.timeout(1200)
async def test_kill_9_repeatedly_soak(tmp_path: Path) -> None:
    await _crash_run(tmp_path, total=6000, kills=5)
