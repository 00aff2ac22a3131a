"""End to end in fast simulated time: firmware nodes → emulator → MQTT → gateway → back.

One small city (tests/e2e/city.py) serves every scenario of this module; each scenario uses its
own nodes, so they do not depend on each other's order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.city import LATE_BIN, TEST_PROFILE, SimCity, eventually, sim_city
from tests.helpers.procs import Broker

pytestmark = [
    pytest.mark.broker,
    pytest.mark.asyncio(loop_scope="module"),
]

BIN_FILL = "02c17a0b000000a1"
BIN_FIRE = "02c17a0b000000a2"
BIN_POWER = "02c17a0b000000a3"
LAMPS = ("02c17a0c000000b1", "02c17a0c000000b2", "02c17a0c000000b3")
LAMP_PROFILE = "02c17a0c000000c1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def city(
    mosquitto_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SimCity]:
    workdir: Path = tmp_path_factory.mktemp("e2e-city")
    async with sim_city(workdir, mosquitto_broker.url) as running:
        await eventually(
            lambda: all(
                n.mac is not None and n.mac.joined
                for eui, n in running.fleet.nodes.items()
                if eui != LATE_BIN
            ),
            timeout_s=30,
            what="every node joining",
        )
        yield running


def _level(city: SimCity, dev_eui: str) -> int:
    return city.world.lamps[dev_eui].dim_level


async def _reported(city: SimCity, dev_eui: str, key: str) -> Any:
    return (await city.device(dev_eui)).get("reported", {}).get(key)


async def test_a_full_bin_is_listed_for_collection_and_a_pickup_empties_it(city: SimCity) -> None:
    city.world.bins[BIN_FILL].fill_percent = 92.0  # the contents rise to near the lid

    async def listed() -> list[dict[str, Any]]:
        body = await city.api("GET", "/api/v1/collection")
        return [row for row in body["bins"] if row["dev_eui"] == BIN_FILL]

    rows = await eventually(listed, what="the gateway listing the full bin for collection")
    assert rows[0]["reason"] == "full"
    assert rows[0]["fill_percent"] >= 85

    route = city.world.dispatch_truck([row["dev_eui"] for row in rows])
    assert route == [BIN_FILL]
    await eventually(lambda: city.world.bins[BIN_FILL].pickups == 1, what="the truck's pickup")
    pickups = await eventually(
        lambda: city.events("bin_pickup", BIN_FILL), what="a bin_pickup event at the gateway"
    )
    assert pickups[0]["data"]["drop_percent"] >= 80  # 92 % down to the few % a truck leaves

    async def not_listed() -> bool:
        return not await listed()

    await eventually(not_listed, what="the emptied bin leaving the collection list")
    assert (await _reported(city, BIN_FILL, "fill_percent")) < 10


async def test_a_fire_in_a_bin_raises_an_alarm(city: SimCity) -> None:
    city.world.set_fire(BIN_FIRE, temperature_c=88.0)
    fires = await eventually(
        lambda: city.events("bin_fire", BIN_FIRE), what="a bin_fire event at the gateway"
    )
    assert fires[0]["dev_eui"] == BIN_FIRE
    device = await city.device(BIN_FIRE)
    assert device["derived"]["fire"] is True
    # the alarm went up confirmed, and the emulator saw it acknowledged in the RX window
    uplinks = city.network.of("up", BIN_FIRE)
    assert any(m.confirmed for m in uplinks)


async def test_a_road_user_raises_the_next_lamps_which_dim_after_the_hold_time(
    city: SimCity,
) -> None:
    base = TEST_PROFILE["steps"][0]["dim_level"]
    await eventually(
        lambda: all(_level(city, eui) == base for eui in LAMPS),
        timeout_s=30,
        what=f"the street's lamps running the night profile at {base} %",
    )
    first = city.world.lamps[LAMPS[0]]
    # a pedestrian at the first lamp, walking away from the others: only the gateway can
    # light lamps 2 and 3 (their own presence inputs never see anyone)
    city.world.spawn_road_user("Mejlgade", kind="pedestrian", direction=-1, along_m=first.along_m)
    await eventually(
        lambda: all(_level(city, eui) == 100 for eui in LAMPS[1:]),
        what="the gateway raising the next lamps on the street",
    )
    assert city.world.lamps[LAMPS[1]].passes == 0 and city.world.lamps[LAMPS[2]].passes == 0
    presence = await city.events("lamp_presence", LAMPS[0])
    assert sorted(presence[0]["data"]["raised"]) == sorted(LAMPS[1:])
    await eventually(
        lambda: all(_level(city, eui) == base for eui in LAMPS[1:]),
        what="the raised lamps dimming back after their hold time",
    )


async def test_a_profile_command_reaches_a_lamp_and_comes_back_applied(city: SimCity) -> None:
    profile = {
        "config_version": 9,
        "base_level": 100,
        "boost_level": 80,
        "hold_time_s": 30,
        "steps": [
            {"anchor": "sunset", "offset_min": 0, "dim_level": 40},
            {"anchor": "sunrise", "offset_min": 0, "dim_level": 0},
        ],
    }
    command = await city.api(
        "POST",
        f"/api/v1/devices/{LAMP_PROFILE}/commands",
        json={"message": "lamp_profile", "fields": profile},
    )

    async def applied() -> dict[str, Any] | None:
        current = await city.api("GET", f"/api/v1/commands/{command['id']}")
        return current if current["state"] == "applied" else None

    done = await eventually(applied, what="the lamp_profile command being applied")
    assert done["dev_eui"] == LAMP_PROFILE
    await eventually(lambda: _level(city, LAMP_PROFILE) == 40, what="the lamp at the new level")

    async def reports_version_9() -> bool:
        return await _reported(city, LAMP_PROFILE, "config_version") == 9

    await eventually(reports_version_9, what="the lamp reporting config version 9")


def _rejected(city: SimCity, dev_eui: str) -> list[str]:
    """Codes of the emulator's log events that mean it refused a frame of this node."""
    from chirpstack_api import integration

    refused = ("OTAA", "UPLINK_MIC", "UPLINK_F_CNT_RETRANSMISSION", "UPLINK_F_CNT_RESET")
    codes = [integration.LogCode.Name(m.code) for m in city.network.of("log", dev_eui)]
    return [code for code in codes if code in refused]


async def test_a_power_cycled_node_comes_back_without_a_refused_frame(city: SimCity) -> None:
    node = city.fleet.nodes[BIN_POWER]
    first_mac = node.mac
    ups_before = len(city.network.of("up", BIN_POWER))
    await city.fleet.power_cycle(BIN_POWER)
    assert node.mac is not first_mac  # RAM and RTC memory are gone: a new MAC from NVS only

    async def back() -> bool:
        return len(city.network.of("up", BIN_POWER)) > ups_before + 1 and (
            await _reported(city, BIN_POWER, "reset_reason") == "power_on"
        )

    await eventually(back, what="the node's uplinks after the power cycle reaching the gateway")
    assert _rejected(city, BIN_POWER) == []


async def test_a_node_rejoins_after_losing_power_mid_join_without_a_rejected_devnonce(
    city: SimCity,
) -> None:
    import asyncio

    from tools.sim.fleet import _fw

    unpack_nonces = _fw().mac.unpack_nonces
    node = city.fleet.nodes[LATE_BIN]
    city.fleet.power_on(LATE_BIN)
    # the Join-Request is on the air; cut the power before the Join-Accept (5 s later)
    deadline = asyncio.get_running_loop().time() + 20
    while node.radio.tx_count == 0:
        assert asyncio.get_running_loop().time() < deadline, "no Join-Request within 20 s"
        await asyncio.sleep(0.001)
    assert not node.mac.joined
    used_before, _ = unpack_nonces(node.nvs.load("nonces"))
    assert used_before >= 1  # DevNonce 0 was persisted as used before the frame went out
    await city.fleet.power_cycle(LATE_BIN)
    await eventually(lambda: node.mac.joined, timeout_s=30, what="the join after the power cut")
    used_after, _ = unpack_nonces(node.nvs.load("nonces"))
    assert used_after > used_before  # a fresh DevNonce, never the one already on the air
    await eventually(lambda: city.network.of("up", LATE_BIN), what="an uplink in the new session")
    assert _rejected(city, LATE_BIN) == []
