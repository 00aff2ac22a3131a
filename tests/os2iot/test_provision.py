"""`citypack provision register --os2iot` and `provision decommission` against the OS2iot
emulator: batches of 50, idempotent, resumable, per-row errors, and no key in any output."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.os2iot.conftest import API_KEY, Running
from tests.provision.conftest import Run
from tools.os2iot.runner import DEFAULT_PROFILES
from tools.provision.errors import RegistrationError
from tools.provision.inventory import (
    Inventory,
    Secrets,
    add_nodes,
    default_secrets_path,
    load_inventory,
    load_secrets,
    save_inventory,
    save_secrets,
)
from tools.provision.os2iot import Os2iot, register_os2iot

pytestmark = pytest.mark.broker

BIN, LAMP = DEFAULT_PROFILES


@pytest.fixture
def city(tmp_path: Path) -> Inventory:
    """60 bins and 5 lamps: two createMany batches."""
    inventory = Inventory(tmp_path / "city.toml", [])
    secrets = Secrets(default_secrets_path(inventory.path))
    add_nodes(
        inventory, secrets, kind="bin", count=60, street="Mejlgade", group="midtbyen",
        latitude=56.159, longitude=10.212,
    )  # fmt: skip
    add_nodes(inventory, secrets, kind="lamp", count=5, street="Mejlgade", group="midtbyen")
    save_secrets(secrets)
    save_inventory(inventory)
    return inventory


def _key_file(tmp_path: Path, key: str = API_KEY) -> Path:
    path = tmp_path / "os2iot.key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


def _args(inventory: Inventory, running: Running, key_file: Path) -> list[str]:
    return [
        "register",
        "--inventory", str(inventory.path),
        "--os2iot", running.url,
        "--api-key-file", str(key_file),
        "--application-id", "1",
        "--device-profile-id", f"bin={BIN.id}",
        "--device-profile-id", f"lamp={LAMP.id}",
    ]  # fmt: skip


def _keys(inventory: Inventory) -> list[str]:
    secrets = load_secrets(default_secrets_path(inventory.path))
    return [key.hex() for key in secrets.app_keys.values()]


def test_register_creates_every_node_once_and_again_changes_nothing(
    city: Inventory, os2iot_thread: Running, cli: Callable[..., Run], tmp_path: Path
) -> None:
    args = _args(city, os2iot_thread, _key_file(tmp_path))
    run = cli(*args)
    assert run.code == 0, run.err
    assert "device created: 65" in run.out
    devices = os2iot_thread.call(lambda: list(os2iot_thread.os2iot.state.devices.values()))
    assert sorted(d.dev_eui for d in devices) == sorted(n.dev_eui for n in city.nodes)
    lamp = next(d for d in devices if d.name.startswith("lamp"))
    assert lamp.device_profile_id == LAMP.id
    meta = json.loads(lamp.metadata or "")
    assert meta["citypack_kind"] == "lamp" and meta["citypack_street"] == "Mejlgade"
    assert all(isinstance(v, str) and v for v in meta.values())
    # ChirpStack (netsim) behind OS2iot knows every device, class C for the lamps
    netsim_ids = os2iot_thread.call(lambda: sorted(os2iot_thread.netsim.server.device_ids()))
    assert netsim_ids == sorted(n.dev_eui for n in city.nodes)

    again = cli(*args)
    assert again.code == 0, again.err
    assert "device unchanged: 65" in again.out

    city = load_inventory(city.path)
    city.nodes[3] = dataclasses.replace(city.nodes[3], street="Graven")
    save_inventory(city)
    changed = cli(*args)
    assert changed.code == 0 and "device updated: 1" in changed.out
    assert "device unchanged: 64" in changed.out
    for text in (run.out, run.err, again.out, changed.out, changed.err):
        assert API_KEY not in text
        assert not any(key in text for key in _keys(city))


def test_a_batch_that_stops_halfway_is_finished_by_running_it_again(
    city: Inventory, os2iot_thread: Running
) -> None:
    calls = {"createMany": 0}

    class OneBatchThenDown(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/createMany"):
                calls["createMany"] += 1
                if calls["createMany"] > 1:
                    raise httpx.ConnectError("OS2iot went away", request=request)
            return super().handle_request(request)

    secrets = load_secrets(default_secrets_path(city.path))
    profiles = {"bin": BIN.id, "lamp": LAMP.id}
    flaky = Os2iot(os2iot_thread.url, API_KEY, transport=OneBatchThenDown())
    with flaky as client, pytest.raises(RegistrationError, match="cannot reach OS2iot"):
        register_os2iot(city.nodes, secrets, client, application_id=1, profiles=profiles)
    assert os2iot_thread.call(lambda: len(os2iot_thread.os2iot.state.devices)) == 50
    with Os2iot(os2iot_thread.url, API_KEY) as client:
        report = register_os2iot(city.nodes, secrets, client, application_id=1, profiles=profiles)
    assert report.failures == []
    assert report.outcomes["device unchanged"] == 50 and report.outcomes["device created"] == 15
    assert os2iot_thread.call(lambda: len(os2iot_thread.os2iot.state.devices)) == 65


def test_row_errors_name_the_row_and_the_rest_go_on(
    city: Inventory, os2iot_thread: Running, cli: Callable[..., Run], tmp_path: Path
) -> None:
    # another system already holds one DevEUI in upper case: OS2iot's ChirpStack refuses it
    taken = city.nodes[6].dev_eui
    secrets = load_secrets(default_secrets_path(city.path))
    with Os2iot(os2iot_thread.url, API_KEY) as client:
        response = client._client.post(  # the raw API, as another OS2iot user would
            "/iot-device",
            json={
                "name": "someone-else",
                "type": "LORAWAN",
                "applicationId": 1,
                "lorawanSettings": {
                    "devEUI": taken.upper(),
                    "deviceProfileID": BIN.id,
                    "activationType": "OTAA",
                    "OTAAapplicationKey": secrets.app_key(taken).hex(),
                },
            },
        )
        assert response.status_code == 201
    # our search finds it (DevEUIs match in any case) and updates it rather than duplicating
    run = cli(*_args(city, os2iot_thread, _key_file(tmp_path)))
    assert run.code == 0, run.err
    assert "device created: 64" in run.out and "device updated: 1" in run.out

    bad_key = cli(*_args(city, os2iot_thread, _key_file(tmp_path, "wrong-key")))
    assert bad_key.code != 0
    assert bad_key.err.count("\n") == 1 and "refused the API key" in bad_key.err
    assert "wrong-key" not in bad_key.err + bad_key.out


def test_decommission_deletes_through_os2iot(
    city: Inventory, os2iot_thread: Running, cli: Callable[..., Run], tmp_path: Path
) -> None:
    key_file = _key_file(tmp_path)
    assert cli(*_args(city, os2iot_thread, key_file)).code == 0
    gone = city.nodes[0].dev_eui
    args = [
        "decommission",
        "--inventory", str(city.path),
        "--os2iot", os2iot_thread.url,
        "--api-key-file", str(key_file),
        "--dev-eui", gone,
    ]  # fmt: skip
    run = cli(*args)
    assert run.code == 0 and "device deleted: 1" in run.out
    assert gone not in os2iot_thread.call(lambda: os2iot_thread.netsim.server.device_ids())
    assert "device absent: 1" in cli(*args).out
    with pytest.raises(SystemExit):  # neither --dev-eui nor --all: never the whole batch
        cli("decommission", "--inventory", str(city.path), "--os2iot", os2iot_thread.url,
            "--api-key-file", str(key_file))  # fmt: skip
