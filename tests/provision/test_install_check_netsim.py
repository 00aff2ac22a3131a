"""The whole technician flow against the emulator: `provision new` makes the identity and key, the
fleet simulator runs the real firmware MAC with that key on a simulated radio, the ChirpStack
emulator (tools/netsim) publishes its join and uplink events to a private mosquitto, and
`provision verify` judges them. A node flashed with the wrong key must fail the same check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.procs import Broker
from tests.provision.conftest import Run
from tools.provision import verify
from tools.provision.inventory import load_inventory, load_secrets, save_secrets

APP_ID = "8c1c5a3e-2f4b-4a57-9c1e-6b0d3f2a7e10"

sim_city = pytest.importorskip("tools.sim.city", reason="the fleet simulator is not in the tree")
sim_fleet = pytest.importorskip("tools.sim.fleet", reason="the fleet simulator is not in the tree")
sim_world = pytest.importorskip("tools.sim.world", reason="the fleet simulator is not in the tree")
sim_clock = pytest.importorskip("tools.sim.clock", reason="the fleet simulator is not in the tree")


def _provision_one(cli: Callable[..., Run], path: Path) -> str:
    run = cli("new", "--kind", "bin", "--inventory", str(path), "--street", "Vestergade")
    assert run.code == 0, run.err
    return load_inventory(path).nodes[0].dev_eui


async def _check_with_fleet(
    broker: Broker, inventory: Path, dev_eui: str, *, timeout_s: float
) -> verify.CheckResult:
    epoch = sim_clock.evening_start(time.time())
    world = sim_world.World(seed=7, start_time=epoch, traffic_scale=0.0)
    world.add_bin(dev_eui, "Vestergade", 150.0, name="bin-0001", fill_rate_percent_per_h=0.0)
    files = sim_city.CityFiles(
        load_inventory(inventory), load_secrets(inventory.with_name("batch.secrets.toml"))
    )
    fleet = sim_fleet.Fleet(
        world,
        files,
        clock=sim_clock.ScaledClock(200.0),  # RX windows stay tens of ms of real time
        epoch=epoch,
        mqtt_url=broker.url,
        application_id=APP_ID,
        report_interval_s=120,
        boot_spread_s=1.0,
    )
    import asyncio

    check = asyncio.create_task(
        verify.check_mqtt(
            broker.url, dev_eui, timeout_s=timeout_s, application_id=APP_ID, require_join=True
        )
    )
    await asyncio.sleep(0.3)  # the check subscribes before the node powers on, as on site
    async with fleet:
        return await check


@pytest.mark.broker
@pytest.mark.slow
async def test_a_provisioned_node_passes_the_install_check_on_the_emulator(
    mosquitto_broker: Broker, cli: Callable[..., Run], tmp_path: Path
) -> None:
    inventory = tmp_path / "batch.toml"
    dev_eui = _provision_one(cli, inventory)
    result = await _check_with_fleet(mosquitto_broker, inventory, dev_eui, timeout_s=30)
    assert result.joined is True, result.render()
    assert result.uplink is not None and result.uplink.gateways, result.render()
    best = result.uplink.best
    assert best is not None and best.rssi is not None and best.margin_db is not None
    assert result.status in (verify.PASS, verify.MARGINAL), result.render()


@pytest.mark.broker
@pytest.mark.slow
async def test_a_node_with_the_wrong_key_fails_the_install_check(
    mosquitto_broker: Broker, cli: Callable[..., Run], tmp_path: Path
) -> None:
    inventory = tmp_path / "batch.toml"
    dev_eui = _provision_one(cli, inventory)
    # the emulator (the network) keeps the registered key; the node gets another one
    secrets = load_secrets(inventory.with_name("batch.secrets.toml"))
    registered = secrets.app_keys[dev_eui]
    network_secrets = tmp_path / "network.secrets.toml"
    secrets.path = network_secrets
    save_secrets(secrets)
    secrets.app_keys[dev_eui] = bytes(b ^ 0xFF for b in registered)
    secrets.path = inventory.with_name("batch.secrets.toml")
    save_secrets(secrets)

    import asyncio

    from tools.sim import fleet as fleet_module

    epoch = sim_clock.evening_start(time.time())
    world = sim_world.World(seed=7, start_time=epoch, traffic_scale=0.0)
    world.add_bin(dev_eui, "Vestergade", 150.0, name="bin-0001", fill_rate_percent_per_h=0.0)
    node_files = sim_city.CityFiles(load_inventory(inventory), load_secrets(secrets.path))
    network_keys = load_secrets(network_secrets)

    class WrongKeyFleet(fleet_module.Fleet):  # type: ignore[misc]
        async def _start_emulator(self, sim_now: object) -> None:
            node_keys = self.files.secrets
            self.files = sim_city.CityFiles(self.files.inventory, network_keys)
            try:
                await super()._start_emulator(sim_now)
            finally:
                self.files = sim_city.CityFiles(self.files.inventory, node_keys)

    fleet = WrongKeyFleet(
        world,
        node_files,
        clock=sim_clock.ScaledClock(200.0),  # RX windows stay tens of ms of real time
        epoch=epoch,
        mqtt_url=mosquitto_broker.url,
        application_id=APP_ID,
        report_interval_s=120,
        boot_spread_s=1.0,
    )
    check = asyncio.create_task(
        verify.check_mqtt(mosquitto_broker.url, dev_eui, timeout_s=2.5, application_id=APP_ID)
    )
    await asyncio.sleep(0.3)
    async with fleet:
        result = await check
    assert result.status == verify.FAIL, result.render()
    assert result.uplink is None and result.joined is False
    # the emulator, like ChirpStack, logs why: the join-request MIC does not match the key
    assert any("UPLINK_MIC" in line for line in result.logs), result.render()
    assert "chirpstack log: ERROR UPLINK_MIC" in result.render()
