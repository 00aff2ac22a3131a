"""Commands through OS2iot with the gateway in several-instance mode on PostgreSQL (issues 16 and
19). OS2iot has no queue-item id that would refuse a second copy of a downlink, so a command is
handed over (committed) before OS2iot is called (gateway/service.py ``_dispatch_os2iot``); when
the store refuses the batch holding that hand-over, OS2iot must not be called with it.

Real parts: the OS2iot emulator in front of the ChirpStack emulator (tools/os2iot, tools/netsim),
mosquitto, PostgreSQL, the gateway in process, a CPython lamp (tools/bench/street_lamps.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.store.base import CommandRecord
from tests.gateway.harness import refuse_commits, wait_for
from tests.helpers.procs import Broker
from tools.bench.group_override import street

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

OS2IOT_KEY = "3f6c1a2b-7d4e-4f5a-9b8c-0d1e2f3a4b5c"


async def test_a_refused_hand_over_is_not_sent_through_os2iot(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    async with street(
        tmp_path, mosquitto_broker.url, lamps=1, os2iot_key=OS2IOT_KEY, store_url=postgres_url
    ) as rig:
        gw = rig.gateway
        assert gw.fleet is not None and gw.os2iot is not None
        lamp = rig.lamps[0].dev_eui
        refused: list[Any] = []

        def hand_over(batch: Any) -> bool:  # the first hand-over's commit
            handed = [c for c in batch.commands.values() if c.published_at]
            return any(c.dev_eui == lamp and c.state == "queued" for c in handed)

        refuse_commits(gw, refused, hand_over)
        # invariant 4 at every call: OS2iot gets only a command stored as handed over
        seen: list[tuple[str, bool]] = []
        answered: list[str] = []  # calls OS2iot has answered (its emulator recorded them)
        real_dispatch = gw.os2iot.dispatch

        async def dispatch(command: CommandRecord, *, look_first: bool = False) -> bool:
            stored = await gw.store.get_command(command.id)
            seen.append((command.id, stored is not None and stored.published_at is not None))
            try:
                return await real_dispatch(command, look_first=look_first)
            finally:
                answered.append(command.id)

        gw.os2iot.dispatch = dispatch  # type: ignore[method-assign]
        command = await gw.submit_command_async(
            lamp, "lamp_override", {"dim_level": 30, "duration_s": 60}
        )
        await wait_for(lambda: seen, "the command handed to OS2iot", 30)
        assert refused == [gw.store]
        assert seen == [(command.id, True)]

        async def stored_handed_over() -> bool:
            stored = await gw.store.get_command(command.id)
            return stored is not None and stored.published_at is not None

        await wait_for(stored_handed_over, "the hand-over stored", 10)
        # the call seen above has reached OS2iot: the hand-over is stored before the call is
        # made, so without this wait the emulator's record could still be on its way
        await wait_for(lambda: answered, "OS2iot's answer", 10)
        assert seen == [(command.id, True)]
        assert rig.os2iot is not None
        downlinks = [d for d in rig.os2iot.state.downlinks if d.port == command.f_port]
        assert len(downlinks) == 1
