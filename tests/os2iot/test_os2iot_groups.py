"""Group commands in an OS2iot city (issue 19 with issue 18's groups): the gateway may not call
ChirpStack itself, so its lamp groups are OS2iot multicasts made and kept through OS2iot's API
(gateway/os2iot_groups.py) and a group command is one ``downlink-multicast`` call: one frame on
the air, every lamp's result tracked to "applied". The frame counter OS2iot hands back to
ChirpStack on every ``PUT`` (the one way to change members) never goes back.

Real parts: the OS2iot emulator in front of the ChirpStack emulator (tools/os2iot, tools/netsim),
mosquitto, the gateway in process, and the CPython lamps of tools/bench/street_lamps.py that
verify the multicast frame with keys they derive from the McKey."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.harness import wait_for
from tests.helpers.procs import Broker
from tools.bench.group_override import GROUP, Street, street

pytestmark = pytest.mark.broker

TOKEN = "os2iot-street-test-token"
OS2IOT_KEY = "0b7d2f4e-9c1a-4e3b-8d5f-6a7b8c9d0e1f"
LAMPS = 4


@pytest.fixture
async def rig(mosquitto_broker: Broker, tmp_path: Path) -> AsyncIterator[tuple[Street, Any]]:
    async with street(
        tmp_path, mosquitto_broker.url, lamps=LAMPS, api_token=TOKEN, os2iot_key=OS2IOT_KEY
    ) as running:
        base_url = f"http://127.0.0.1:{running.gateway.api_port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as http:
            yield running, http


async def _run(http: httpx.AsyncClient, dim_level: int) -> dict[str, Any]:
    response = await http.post(
        f"/api/v1/groups/{GROUP}/commands",
        json={"message": "lamp_override", "fields": {"dim_level": dim_level, "duration_s": 60}},
    )
    assert response.status_code == 202, response.text
    command = response.json()

    async def finished() -> dict[str, Any] | None:
        got = (await http.get(f"/api/v1/groups/{GROUP}/commands/{command['id']}")).json()
        return got if got["state"] != "queued" else None

    return await wait_for(finished, "every member's result", timeout_s=60)  # type: ignore[no-any-return]


async def test_a_group_command_is_one_os2iot_multicast_downlink(rig: tuple[Street, Any]) -> None:
    street_, http = rig
    os2iot = street_.os2iot
    assert os2iot is not None
    street_.give_group_key(GROUP)
    first = await _run(http, 20)
    assert first["state"] == "applied" and first["f_cnt"] == 0
    assert street_.applied() == LAMPS
    # the group is an OS2iot multicast of application 1, with the lamps as its devices
    (row,) = os2iot.state.multicasts.rows.values()
    assert row.name == f"citypack:group:{GROUP}" and row.application_id == 1
    by_id = {d.id: d.dev_eui for d in os2iot.state.devices.values()}
    assert sorted(by_id[i] for i in row.device_ids) == sorted(x.dev_eui for x in street_.lamps)
    keys = street_.gateway.multicast.keys(GROUP)  # type: ignore[union-attr]
    assert int(row.mc_addr, 16) == keys.mc_addr and row.group_type == "CLASS_C"
    # OS2iot's record follows ChirpStack's counter after the downlink
    group = street_.netsim.server.multicast.get(row.chirpstack_group_id)
    assert group.f_cnt == 1 and row.f_cnt == 1
    # one frame on the air, none per lamp
    multicast = [x for x in street_.air() if x["direction"] == "down" and x["dev_eui"] == ""]
    assert len(multicast) == 1
    assert street_.command_frames(120) == multicast
    # no unicast downlink went through OS2iot for it
    assert [d for d in os2iot.state.downlinks if d.port == 120] == []

    # a lamp leaves the street: OS2iot's PUT drops it and keeps the frame counter going
    leaver = street_.lamps[0]
    street_.gateway.upsert_device(leaver.dev_eui, {"group": "oak-alley"})
    second = await _run(http, 40)
    assert second["state"] == "applied" and second["f_cnt"] == 1
    assert leaver.dev_eui not in {m["dev_eui"] for m in second["members"]}
    assert leaver.dev_eui not in {by_id[i] for i in row.device_ids}
    assert group.devices == {x.dev_eui for x in street_.lamps[1:]}
    assert (street_.netsim.server.multicast.get(row.chirpstack_group_id).f_cnt, row.f_cnt) == (
        2,
        2,
    )
    # the lamps that stayed heard the second frame (a counter set back would be a replay)
    for lamp in street_.lamps[1:]:
        assert [a["dim_level"] for a in lamp.applied if a["message"] == "lamp_override"] == [
            20,
            40,
        ]


async def test_os2iot_refuses_a_downlink_and_the_members_fail_with_why(
    rig: tuple[Street, Any],
) -> None:
    street_, http = rig
    assert street_.os2iot is not None
    street_.os2iot.state.faults.downlink_errors = 1  # ChirpStack behind OS2iot is down once
    response = await http.post(
        f"/api/v1/groups/{GROUP}/commands",
        json={"message": "lamp_override", "fields": {"dim_level": 5, "duration_s": 60}},
    )
    assert response.status_code == 502, response.text
    assert "OS2iot" in response.text and OS2IOT_KEY not in response.text
    # the next one goes through
    street_.give_group_key(GROUP)
    done = await _run(http, 6)
    assert done["state"] == "applied"


async def test_emulator_multicast_validation(rig: tuple[Street, Any]) -> None:
    street_, _ = rig
    assert street_.os2iot is not None
    url = street_.os2iot.url
    async with httpx.AsyncClient(headers={"X-API-KEY": OS2IOT_KEY}) as http:
        bad = await http.post(
            f"{url}/multicast",
            json={"name": "x", "applicationID": 1, "mcAddr": "123", "mcNwkSKey": "00" * 16,
                  "mcAppSKey": "zz" * 16, "fCnt": -1, "dr": 0, "frequency": 869525000,
                  "groupType": "CLASS_C", "multicastId": ""},
        )  # fmt: skip
        assert bad.status_code == 400
        text = bad.text
        assert "mcAddr" in text and "mcAppSKey" in text and "fCnt" in text
        missing = await http.get(f"{url}/multicast/999")
        assert missing.status_code == 404
        listed = await http.get(f"{url}/multicast", params={"applicationId": 1})
        assert listed.json() == {"data": [], "count": 0}
        denied = await http.get(f"{url}/multicast", headers={"X-API-KEY": "wrong"})
        assert denied.status_code == 401
