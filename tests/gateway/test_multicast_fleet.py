"""Group commands with two gateway instances on one PostgreSQL (issues 16 and 18): the group
command lives in the store (gateway/store/groups.py), so the members' results recorded by
another instance count, and any instance answers for it.

By construction, not by luck of the shared subscription: the lamps' answers are held back until
the process that submitted the command has stopped, so every result is recorded by a process
that knows the command only from the store (the other instance, or a new process that takes
over the stopped one's broker session).
Real parts: the ChirpStack emulator with its gRPC MulticastGroupService, mosquitto, PostgreSQL,
two gateways in process, and the CPython lamps of tools/bench/street_lamps.py.

A batch the store refuses (another instance held one of its devices) is dropped whole: the group
command staged in it must not go with it, or a result reaching another instance finds no
command, and a member's result in it must be recorded when the broker sends it again (the last
two tests: one instance on PostgreSQL, the ChirpStack emulator's gRPC API)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.service import Gateway
from protocol import codec
from tests.gateway import events as ev
from tests.gateway.harness import refuse_commits, wait_for
from tests.gateway.test_fuota_fleet import APP, EUIS, TOKEN, network_server
from tests.gateway.test_fuota_fleet import _config as _lamp_config
from tests.helpers.procs import Broker
from tools.bench.group_override import (
    GROUP,
    RADIO_GATEWAY,
    Street,
    _devices,
    street_netsim_config,
)
from tools.bench.street_lamps import Lamp
from tools.netsim.grpcapi import start_grpc
from tools.netsim.runner import Netsim
from tools.netsim.server import NetworkServer

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

LAMPS = 3


def _config(broker: Broker, tmp: Path, app: str, name: str, url: str, grpc: int) -> Any:
    return parse_config(
        {
            "mqtt": {
                "url": broker.url,
                "client_id": f"gw-{name}-{app[:6]}",
                "application_id": app,
                "shared_group": f"g{app[:6]}",
            },
            "store": {"url": url},
            "api": {"enabled": False},
            "publish": {"base_topic": f"cp{app[:8]}"},
            "chirpstack": {"api": f"127.0.0.1:{grpc}", "api_token_file": str(tmp / "cs-token")},
            "multicast": {"enabled": True, "key_file": str(tmp / "mc-key")},
        },
        environ={},
    )


async def _start(config: Any) -> tuple[Gateway, asyncio.Task[None]]:
    gateway = Gateway(config, api_token="t" * 40)
    task = asyncio.create_task(gateway.run())
    await wait_for(lambda: gateway.started.is_set() or task.done(), "gateway start", 60)
    if task.done():
        task.result()
    await wait_for(gateway.bridge.connected.is_set, "MQTT connection", 30)
    return gateway, task


async def _stop(gateway: Gateway, task: asyncio.Task[None]) -> None:
    gateway.stop()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(30):
            await task
    await gateway.close()


async def test_results_recorded_by_the_other_instance_count(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    app = str(uuid.uuid4())
    (tmp_path / "cs-token").write_text("cs-token\n")
    (tmp_path / "mc-key").write_text(uuid.uuid4().hex + "\n")
    devices = _devices(LAMPS)
    config = street_netsim_config(app, seed=16)
    capture = tmp_path / "air.jsonl"
    async with Netsim(
        devices,
        broker_url=mosquitto_broker.url,
        config=config,
        capture_path=capture,
        grpc=("127.0.0.1", 0),
        api_token="cs-token",
    ) as netsim:
        assert netsim.grpc_address is not None
        port = netsim.grpc_address[1]
        a, a_task = await _start(_config(mosquitto_broker, tmp_path, app, "a", postgres_url, port))
        b, b_task = await _start(_config(mosquitto_broker, tmp_path, app, "b", postgres_url, port))
        try:
            for device in devices:
                await a.upsert_device_async(
                    device.dev_eui, {"kind": "lamp", "name": device.name, "group": GROUP}
                )
            lamps = [Lamp(d.dev_eui, d.join_eui, d.app_key.to_bytes()) for d in devices]
            street = Street(netsim, a, lamps, capture)
            netsim.server.attach_gateway(RADIO_GATEWAY, street.on_air)
            await street.join_all()
            street.give_group_key(GROUP)
            held: list[bytes] = []
            send = street.send
            street.send = held.append  # type: ignore[method-assign]  # answers wait here

            assert a.multicast is not None and b.multicast is not None
            command = await a.multicast.submit(GROUP, "lamp_override", {"dim_level": 30})
            await wait_for(lambda: len(held) == LAMPS, "every lamp's answer", 60)
            await _stop(a, a_task)  # the submitting instance is gone before any result

            for phy in held:
                send(phy)
            # the shared subscription may queue some results in a's broker session (a client
            # with a persistent session counts as a subscriber while away): a new process with
            # a's client id takes them, and it knows the command only from the store
            a, a_task = await _start(
                _config(mosquitto_broker, tmp_path, app, "a", postgres_url, port)
            )

            async def done() -> Any:
                got = await b.multicast.read(command.id)  # type: ignore[union-attr]
                return got if got is not None and got.state != "queued" else None

            result = await wait_for(done, "the results, recorded by b", 60)
            assert result.state == "applied"
            assert {m.state for m in result.members.values()} == {"applied"}
            assert result.f_cnt == 0 and result.command_id == command.command_id
            listed = await b.multicast.read_group(GROUP)
            assert [c.id for c in listed] == [command.id]
        finally:
            if not a_task.done():
                await _stop(a, a_task)
            await _stop(b, b_task)


@contextlib.asynccontextmanager
async def _lamps(tmp_path: Path, postgres_url: str) -> AsyncIterator[tuple[Gateway, NetworkServer]]:
    """One instance on PostgreSQL (several-instance mode) with the lamps ``EUIS`` in group oak."""
    ns = network_server(tmp_path, "00" * 32)
    async with ns:
        server, port = await start_grpc(ns, "127.0.0.1", 0, "cs-token")
        gw = Gateway(_lamp_config(tmp_path, "a", postgres_url, port), api_token=TOKEN)
        try:
            await gw.open()
            for eui in EUIS:
                gw.upsert_device(eui, {"kind": "lamp", "group": "oak"})
            await gw.flush()
            assert gw.multicast is not None and gw.fleet is not None
            yield gw, ns
        finally:
            await gw.close()
            await server.stop(grace=None)


async def test_a_group_command_in_a_refused_batch_is_stored(
    tmp_path: Path, postgres_url: str
) -> None:
    async with _lamps(tmp_path, postgres_url) as (gw, ns):
        assert gw.multicast is not None
        refused: list[Any] = []
        refuse_commits(gw, refused, lambda batch: batch.groups.size())
        enqueued: list[str] = []
        real_enqueue = ns.enqueue_multicast

        def enqueue(group_id: str, *args: Any, **kwargs: Any) -> int:
            enqueued.append(group_id)
            return real_enqueue(group_id, *args, **kwargs)

        ns.enqueue_multicast = enqueue  # type: ignore[method-assign]
        command = await gw.multicast.submit("oak", "lamp_override", {"dim_level": 10})
        assert refused == [gw.store] and gw.refused_batches == 1
        read = await gw.multicast.read(command.id)
        assert read is not None, "the group command was dropped with the refused batch"
        assert read.f_cnt == command.f_cnt and sorted(read.members) == sorted(EUIS)
        assert len(enqueued) == 1  # handed to ChirpStack once


async def test_a_member_result_in_a_refused_batch_is_recorded_when_it_comes_back(
    tmp_path: Path, postgres_url: str
) -> None:
    """A lamp's ``command_result`` for a group command, in a batch the store refuses: the
    manager read the command back from the store, so the result the broker sends again is
    matched and recorded (it was held as applied in memory, and the store kept it queued)."""
    async with _lamps(tmp_path, postgres_url) as (gw, _):
        assert gw.multicast is not None
        command = await gw.multicast.submit("oak", "lamp_override", {"dim_level": 10})
        f_port, data = codec.encode(
            "command_result",
            {"command_id": command.command_id, "outcome": "applied", "config_version": 0},
        )
        up = ev.up(APP, EUIS[0], f_cnt=1, f_port=f_port, data=data)
        topic, raw = ev.topic(APP, EUIS[0], "up"), ev.dumps(up)
        refused: list[Any] = []
        refuse_commits(gw, refused, lambda batch: batch.groups.members)
        await gw.process(topic, raw)
        await gw.flush()
        assert refused == [gw.store] and gw.refused_batches == 1
        await gw.process(topic, raw)  # the broker sends the dropped batch's message again
        await gw.flush()
        read = await gw.multicast.read(command.id)
        assert read is not None
        assert read.members[EUIS[0]].state == "applied"
        assert read.members[EUIS[1]].state == "queued"
