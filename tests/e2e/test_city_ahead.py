"""The city's accelerated clock ahead of the gateway's wall clock, by construction.

``citypack demo`` starts the world shortly after the latest sunset and runs it 60 times faster:
started in the evening it passes the wall clock within seconds. The gateway stamps a
lighting-ahead override's ``expiresAt`` on the wall clock, 60 s out (gateway/rules/lamps.py);
compared with the world's clock, ChirpStack's emulator dropped every such override as expired
once the world was a minute ahead, so lamps stopped lighting ahead of road users whenever a
demo (or tests/e2e/test_city.py) ran in the evening. The emulator now compares expiries with
the wall clock (tools/sim/fleet.py, tools/netsim/config.py ``expiry_now``). Here the world
starts at an evening at least three hours ahead of the wall clock whatever the time the test
runs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.e2e.city import TEST_PROFILE, SimCity, eventually, sim_city
from tests.helpers.procs import Broker
from tools.sim.clock import evening_start

pytestmark = pytest.mark.broker

LAMPS = ("02c17a0c000000b1", "02c17a0c000000b2", "02c17a0c000000b3")


# the world's lead over the wall clock at the start, at least. "The next evening" alone was
# not: run at 14:37 UTC on 7 December, the evening it picked (that day's, shortly after
# sunset) was 48 minutes ahead, and the fixture's precondition failed
AHEAD_S = 3 * 3600.0


def next_evening(now: float) -> float:
    """Shortly after the first sunset that is at least :data:`AHEAD_S` after ``now``."""
    epoch = evening_start(now + AHEAD_S + 86_400.0)
    return epoch if epoch > now + AHEAD_S else evening_start(now + AHEAD_S + 2 * 86_400.0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def city(
    mosquitto_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SimCity]:
    workdir = tmp_path_factory.mktemp("e2e-city-ahead")
    epoch = next_evening(time.time())
    async with sim_city(workdir, mosquitto_broker.url, epoch=epoch) as running:
        # the precondition, by construction: the world starts AHEAD_S ahead and runs faster
        assert running.world.time > time.time() + AHEAD_S
        await eventually(
            lambda: all(running.fleet.nodes[eui].mac.joined for eui in LAMPS),  # type: ignore[union-attr]
            timeout_s=30,
            what="the street's lamps joining",
        )
        yield running


def test_next_evening_is_hours_ahead_whatever_the_time() -> None:
    start = 1_796_600_000.0  # 2026-12-06 23:33 UTC
    for step in range(0, 2 * 24 * 12):  # every 5 minutes of two days
        now = start + step * 300.0
        assert now + AHEAD_S < next_evening(now) < now + AHEAD_S + 2 * 86_400.0
    # the hour the first version failed at: that day's evening was 48 minutes ahead
    assert next_evening(1_796_653_040.0) > 1_796_653_040.0 + AHEAD_S


@pytest.mark.asyncio(loop_scope="module")
async def test_lighting_ahead_works_with_the_world_ahead_of_the_wall_clock(city: SimCity) -> None:
    base = TEST_PROFILE["steps"][0]["dim_level"]
    await eventually(
        lambda: all(city.world.lamps[eui].dim_level == base for eui in LAMPS),
        timeout_s=30,
        what=f"the street's lamps running the night profile at {base} %",
    )
    first = city.world.lamps[LAMPS[0]]
    # walking away from the others: only the gateway's overrides can light lamps 2 and 3
    city.world.spawn_road_user("Mejlgade", kind="pedestrian", direction=-1, along_m=first.along_m)
    await eventually(
        lambda: all(city.world.lamps[eui].dim_level == 100 for eui in LAMPS[1:]),
        what="the gateway raising the next lamps on the street",
    )
    assert all(city.world.lamps[eui].passes == 0 for eui in LAMPS[1:])
