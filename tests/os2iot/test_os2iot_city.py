"""A city the way Aarhus runs it: devices created through OS2iot (which creates them in its
ChirpStack), uplinks reaching the gateway only through an OS2iot HTTP-push data target, commands
sent through OS2iot's API and still tracked to "applied" by the nodes' own answers.

Real parts: the firmware MAC and apps in the fleet simulator, the ChirpStack emulator, the OS2iot
emulator in front of it, mosquitto, and ``citypack gateway run`` as a child process.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.city import eventually
from tests.helpers import procs
from tools.os2iot.runner import DEFAULT_PROFILES, Os2iotEmulator
from tools.provision.os2iot import Os2iot, register_os2iot
from tools.sim.city import registry_entries, write_city
from tools.sim.clock import ScaledClock, evening_start
from tools.sim.fleet import Fleet
from tools.sim.fleet import missing as fleet_missing
from tools.sim.gatewayproc import GatewayProcess
from tools.sim.world import World

pytestmark = [pytest.mark.broker, pytest.mark.slow]

APPLICATION_ID = "8c1c5a3e-2f4b-4a57-9c1e-6b0d3f2a7e10"
API_KEY = "3f0d8f8e-5a1b-4c2d-9e8f-7a6b5c4d3e2f"
PUSH_HEADER = "Bearer os2iot-data-target-test-secret"
BIN, LAMP = "02c17a0b000000d1", "02c17a0c000000d2"


def _secret(path: Path, text: str) -> str:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


EPOCH = evening_start(time.time())


@pytest.fixture
def world() -> World:
    world = World(seed=5, start_time=EPOCH, traffic_scale=0.0)
    world.add_bin(BIN, "Søndergade", 120.0, name="bin-os2iot", fill_percent=40.0,
                  fill_rate_percent_per_h=0.0)  # fmt: skip
    world.add_lamp(LAMP, "Mejlgade", 100.0, name="lamp-os2iot")
    return world


async def test_registration_push_ingest_and_commands_through_os2iot(
    mosquitto_broker: procs.Broker, tmp_path: Path, world: World
) -> None:
    if (reason := fleet_missing()) is not None:
        pytest.skip(reason)
    files = write_city(world, tmp_path / "city")
    clock = ScaledClock(100.0)
    fleet = Fleet(
        world,
        files,
        clock=clock,
        epoch=EPOCH,
        mqtt_url=mosquitto_broker.url,
        application_id=APPLICATION_ID,
        report_interval_s=120,
        boot_spread_s=1.0,
        powered_off=frozenset({BIN, LAMP}),
        register_in_emulator=False,  # ChirpStack knows them only once OS2iot created them
    )
    async with (
        fleet,
        Os2iotEmulator(
            api_key=API_KEY, broker_url=mosquitto_broker.url, netsim=fleet.netsim.server
        ) as os2iot,
    ):
        assert fleet.netsim.server.device_ids() == []

        def register() -> Any:
            with Os2iot(os2iot.url, API_KEY) as client:
                return register_os2iot(
                    files.inventory.nodes,
                    files.secrets,
                    client,
                    application_id=1,
                    profiles={"bin": DEFAULT_PROFILES[0].id, "lamp": DEFAULT_PROFILES[1].id},
                )

        report = await asyncio.to_thread(register)  # sync client; the emulator runs on this loop
        assert report.failures == [] and report.outcomes["device created"] == 2
        assert sorted(fleet.netsim.server.device_ids()) == [BIN, LAMP]

        overrides = {
            "os2iot": {
                "url": os2iot.url,
                "api_key_file": _secret(tmp_path / "os2iot.key", API_KEY),
                "ingest": "http_push",
                "push_authorization_file": _secret(tmp_path / "push.auth", PUSH_HEADER),
                "downlinks": True,
                "poll_interval_s": 0.2,
                "retry_min_s": 0.2,
                "retry_max_s": 1.0,
            },
            "lamps": {"day_start_hour_utc": 0, "day_end_hour_utc": 0},
        }
        gateway = GatewayProcess(
            tmp_path / "gateway",
            mqtt_url=mosquitto_broker.url,
            application_id=APPLICATION_ID,
            overrides=overrides,
        )
        async with gateway, httpx.AsyncClient(headers={"X-API-KEY": API_KEY}) as http:
            await gateway.register(registry_entries(world, files))
            target = (
                await http.post(
                    f"{os2iot.url}/data-target",
                    json={
                        "name": "citypack gateway",
                        "type": "HTTP_PUSH",
                        "applicationId": 1,
                        "url": f"{gateway.api_url}/api/v1/ingest/os2iot",
                        "timeout": 10000,
                        "authorizationHeader": PUSH_HEADER,
                    },
                )
            ).json()
            ids = sorted(os2iot.state.devices)
            connected = await http.post(
                f"{os2iot.url}/iot-device-payload-decoder-data-target-connection",
                json={"iotDeviceIds": ids, "dataTargetId": target["id"], "payloadDecoderId": None},
            )
            assert connected.status_code == 201
            fleet.power_on(BIN)
            fleet.power_on(LAMP)

            async def heard_both() -> bool:
                bins = await gateway.request("GET", f"/api/v1/devices/{BIN}/uplinks")
                lamps = await gateway.request("GET", f"/api/v1/devices/{LAMP}/uplinks")
                return bool(bins["uplinks"]) and bool(lamps["uplinks"])

            await eventually(heard_both, timeout_s=90, what="uplinks of both nodes via OS2iot")
            # the gateway never subscribed to ChirpStack's events: every uplink came by push
            assert os2iot.listener.pushes >= 2

            # ChirpStack behind OS2iot fails twice: OS2iot's 500, the gateway retries
            os2iot.state.faults.downlink_errors = 2
            command = await gateway.request(
                "POST",
                f"/api/v1/devices/{LAMP}/commands",
                json={"message": "lamp_override", "fields": {"dim_level": 70, "duration_s": 0}},
            )

            final: dict[str, Any] = {}

            async def applied() -> str | None:
                got = await gateway.request("GET", f"/api/v1/commands/{command['id']}")
                final.update(got)  # a failure says why (its error) and when
                return got["state"] if got["state"] in ("applied", "failed", "expired") else None

            state = await eventually(applied, timeout_s=90, what="the override applied")
            assert state == "applied", final
            assert os2iot.state.faults.downlink_errors == 0  # both 500s were met and retried
            # it went through OS2iot's API (a row there), not through command/down
            rows = [d for d in os2iot.state.downlinks if d.port == 120]
            assert rows and rows[-1].send_at is not None
            log = (await http.get(f"{os2iot.url}/datatarget-log/{target['id']}")).json()
            assert log == []  # no push failed

            # a push with the wrong header is refused and stores nothing
            async with httpx.AsyncClient() as outsider:
                refused = await outsider.post(
                    f"{gateway.api_url}/api/v1/ingest/os2iot",
                    content=b"{}",
                    headers={"Authorization": "Bearer guess"},
                )
                wrong = await outsider.post(
                    f"{gateway.api_url}/api/v1/ingest/os2iot",
                    content=b'{"not": "an uplink"}',
                    headers={"Authorization": PUSH_HEADER},
                )
            assert refused.status_code == 401
            assert wrong.status_code == 422
            letters = (await gateway.request("GET", "/api/v1/dead_letters"))["dead_letters"]
            kept = [x for x in letters if x["payload_hex"] == b'{"not": "an uplink"}'.hex()]
            assert len(kept) == 1 and "invalid event" in kept[0]["reason"]


async def test_demo_runs_as_an_os2iot_city(tmp_path: Path) -> None:
    from tools.demo import DemoOptions, run_demo

    if (reason := fleet_missing()) is not None:
        pytest.skip(reason)
    options = DemoOptions(bins=2, lamps=2, duration_s=30.0, workdir=tmp_path, os2iot=True)
    result = await asyncio.to_thread(run_demo, options)
    assert result.failure == ""
    summary = result.as_json()["os2iot"]
    assert summary["devices_registered"] == 4
    # every uplink the gateway stored came through the data target, and the lamps' profile
    # commands went out through OS2iot's downlink API
    assert summary["pushes_ok"] >= 4
    assert result.uplinks_processed is not None and result.uplinks_processed <= summary["pushes_ok"]
    assert summary["downlinks_sent"] >= 1
