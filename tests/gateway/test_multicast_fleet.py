"""Group commands with several instances on one PostgreSQL (issues 16 and 19): a batch the store
refuses (another instance held one of its devices) is dropped whole. The group command staged in
it must not go with it, or a result reaching another instance finds no command; a member's result
in it must be recorded when the broker sends it again. Real parts: PostgreSQL, the ChirpStack
emulator's gRPC API (multicast group and queue)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import StoreConflict
from gateway.service import Gateway
from protocol import codec
from tests.gateway import events as ev
from tests.gateway.test_fuota_fleet import APP, EUIS, TOKEN, _config, network_server
from tools.netsim.grpcapi import start_grpc
from tools.netsim.server import NetworkServer

pytestmark = [pytest.mark.postgres]


@asynccontextmanager
async def _lamps(tmp_path: Path, postgres_url: str) -> AsyncIterator[tuple[Gateway, NetworkServer]]:
    """One instance on PostgreSQL (several-instance mode) with the lamps ``EUIS`` in group oak."""
    ns = network_server(tmp_path, "00" * 32)
    async with ns:
        server, port = await start_grpc(ns, "127.0.0.1", 0, "cs-token")
        gw = Gateway(_config(tmp_path, "a", postgres_url, port), api_token=TOKEN)
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


def _refuse_groups(gw: Gateway, refused: list[str], when: Any) -> None:
    """The store refuses its first commit whose group writes ``when`` picks, inside the real
    commit's transaction (the check for devices held by another instance)."""
    store: Any = gw.store
    real = type(store)._claim_at_commit.__get__(store)

    async def refuse(cur: Any, touched: Any, claimed: Any) -> None:
        batch = store._writing
        if not refused and batch is not None and when(batch.groups):
            refused.append("groups")
            raise StoreConflict("refused by the test")
        await real(cur, touched, claimed)

    store._claim_at_commit = refuse


async def test_a_group_command_in_a_refused_batch_is_stored(
    tmp_path: Path, postgres_url: str
) -> None:
    async with _lamps(tmp_path, postgres_url) as (gw, ns):
        assert gw.multicast is not None
        refused: list[str] = []
        _refuse_groups(gw, refused, lambda groups: groups.size())
        enqueued: list[str] = []
        real_enqueue = ns.enqueue_multicast

        def enqueue(group_id: str, *args: Any, **kwargs: Any) -> int:
            enqueued.append(group_id)
            return real_enqueue(group_id, *args, **kwargs)

        ns.enqueue_multicast = enqueue  # type: ignore[method-assign]
        command = await gw.multicast.submit("oak", "lamp_override", {"dim_level": 10})
        assert refused == ["groups"] and gw.refused_batches == 1
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
        refused: list[str] = []
        _refuse_groups(gw, refused, lambda groups: groups.members)
        await gw.process(topic, raw)
        await gw.flush()
        assert refused == ["groups"] and gw.refused_batches == 1
        await gw.process(topic, raw)  # the broker sends the dropped batch's message again
        await gw.flush()
        read = await gw.multicast.read(command.id)
        assert read is not None
        assert read.members[EUIS[0]].state == "applied"
        assert read.members[EUIS[1]].state == "queued"
