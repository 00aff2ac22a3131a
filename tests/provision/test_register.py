"""Registration against a real gRPC server (chirpstack-api servicers) and the gateway registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chirpstack_api import api, common

from tests.provision.conftest import Batch, Run
from tests.provision.fake_chirpstack import FakeChirpStack
from tests.provision.fake_gateway import make_app, serve
from tools.provision.chirpstack import CREATED, UNCHANGED, UPDATED, ChirpStack
from tools.provision.errors import RegistrationError
from tools.provision.register import register_batch

TENANT = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
APP = "0b8e3c2a-7d61-4f0e-9b8e-5c1d2a3f4e5d"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.test-api-key.signature"


def _token_file(tmp_path: Path, token: str = TOKEN, name: str = "token") -> Path:
    path = tmp_path / name
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def _register_args(batch: Batch, cs: FakeChirpStack, token: Path, codec: Path) -> list[str]:
    return [
        "register",
        "--inventory", str(batch.path),
        "--chirpstack", cs.target,
        "--api-token-file", str(token),
        "--application-id", APP,
        "--tenant-id", TENANT,
        "--codec", str(codec),
    ]  # fmt: skip


def test_register_creates_profiles_devices_and_keys(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path, codec_file: Path
) -> None:
    with FakeChirpStack(TOKEN) as cs:
        run = cli(*_register_args(batch, cs, _token_file(tmp_path), codec_file))
        assert run.code == 0, run.err
        state = cs.state
        profiles = {p.name: p for p in state.profiles.values()}
        assert set(profiles) == {"citypack-bin-eu868", "citypack-lamp-eu868"}
        lamp, bin_ = profiles["citypack-lamp-eu868"], profiles["citypack-bin-eu868"]
        assert lamp.supports_class_c and not bin_.supports_class_c
        for profile in (lamp, bin_):
            assert profile.tenant_id == TENANT
            assert profile.mac_version == common.MacVersion.LORAWAN_1_0_4
            assert profile.region == common.Region.EU868
            assert profile.supports_otaa
            assert profile.payload_codec_runtime == api.CodecRuntime.JS
            assert profile.payload_codec_script == codec_file.read_text()
        assert set(state.devices) == {n.dev_eui for n in batch.inventory.nodes}
        for node in batch.inventory.nodes:
            device = state.devices[node.dev_eui]
            assert device.application_id == APP
            assert device.name == node.name
            wanted = "citypack-lamp-eu868" if node.kind == "lamp" else "citypack-bin-eu868"
            assert state.profiles[device.device_profile_id].name == wanted
            assert device.tags["kind"] == node.kind
            keys = state.keys[node.dev_eui]
            # LoRaWAN 1.0.x: the AppKey goes in nwk_key, app_key stays empty (chirpstack.md §5)
            assert keys.nwk_key == batch.secrets.app_keys[node.dev_eui].hex()
            assert keys.app_key == ""
        assert "device created: 4" in run.out and "keys created: 4" in run.out


def test_second_run_changes_nothing(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path, codec_file: Path
) -> None:
    with FakeChirpStack(TOKEN) as cs:
        args = _register_args(batch, cs, _token_file(tmp_path), codec_file)
        assert cli(*args).code == 0
        writes = dict(cs.state.writes)
        second = cli(*args)
        assert second.code == 0, second.err
        assert dict(cs.state.writes) == writes  # not one Create or Update
        assert "device unchanged: 4" in second.out and "keys unchanged: 4" in second.out
        assert "profile citypack-bin-eu868: unchanged" in second.out


def test_already_exists_with_other_values_is_updated(
    batch: Batch, tmp_path: Path, codec_file: Path
) -> None:
    node = batch.inventory.nodes[0]
    with FakeChirpStack(TOKEN) as cs, ChirpStack(cs.target, TOKEN) as client:
        codec = codec_file.read_text()
        profile_id, outcome = client.ensure_profile(TENANT, "bin", "EU868", codec)
        assert outcome == CREATED
        # someone made the device by hand, with another name, a variable and an old key
        cs.state.devices[node.dev_eui] = api.Device(
            dev_eui=node.dev_eui,
            name="hand-made",
            application_id=APP,
            device_profile_id=profile_id,
            variables={"container_height_cm": "110"},
        )
        cs.state.keys[node.dev_eui] = api.DeviceKeys(dev_eui=node.dev_eui, nwk_key="00" * 16)
        assert client.ensure_device(node, APP, profile_id) == UPDATED
        assert client.ensure_keys(node.dev_eui, batch.secrets.app_keys[node.dev_eui]) == UPDATED
        device = cs.state.devices[node.dev_eui]
        assert device.name == node.name
        assert dict(device.variables) == {"container_height_cm": "110"}  # kept, not ours
        assert cs.state.keys[node.dev_eui].nwk_key == batch.secrets.app_keys[node.dev_eui].hex()
        assert client.ensure_device(node, APP, profile_id) == UNCHANGED
        # a changed codec updates the profile in place (same id)
        again, outcome = client.ensure_profile(TENANT, "bin", "EU868", codec + "\n// v2\n")
        assert (again, outcome) == (profile_id, UPDATED)
        assert client.ensure_profile(TENANT, "bin", "EU868", codec + "\n// v2\n")[1] == UNCHANGED


def test_device_of_another_application_is_refused_not_moved(
    batch: Batch, tmp_path: Path, codec_file: Path
) -> None:
    node = batch.inventory.nodes[0]
    other_app = "11111111-2222-3333-4444-555555555555"
    with FakeChirpStack(TOKEN) as cs, ChirpStack(cs.target, TOKEN) as client:
        profile_id, _ = client.ensure_profile(TENANT, "bin", "EU868", codec_file.read_text())
        cs.state.devices[node.dev_eui] = api.Device(
            dev_eui=node.dev_eui, name="x", application_id=other_app, device_profile_id=profile_id
        )
        with pytest.raises(RegistrationError, match=f"belongs to application {other_app}"):
            client.ensure_device(node, APP, profile_id)
        assert cs.state.devices[node.dev_eui].application_id == other_app


def test_bad_token_is_one_line_and_writes_nothing(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path, codec_file: Path
) -> None:
    with FakeChirpStack(TOKEN) as cs:
        bad = _token_file(tmp_path, "not-the-token", name="bad")
        run = cli(*_register_args(batch, cs, bad, codec_file))
        assert run.code == 1
        assert run.err.count("\n") == 1
        assert "refused the API token (UNAUTHENTICATED)" in run.err
        assert "not-the-token" not in run.err + run.out
        assert not cs.state.devices and not cs.state.profiles


def test_unreachable_server_is_one_line(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path, codec_file: Path
) -> None:
    with FakeChirpStack(TOKEN) as cs:
        target = cs.target  # a port that was just freed: nothing listens there any more
    args = _register_args(batch, cs, _token_file(tmp_path), codec_file)
    args[args.index("--chirpstack") + 1] = target
    run = cli(*args, "--timeout", "3")
    assert run.code == 1
    assert run.err.startswith(f"citypack: error: cannot reach ChirpStack at {target}")
    assert "Traceback" not in run.err


def test_batch_interrupted_halfway_then_rerun(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path, codec_file: Path
) -> None:
    with FakeChirpStack(TOKEN) as cs:
        args = _register_args(batch, cs, _token_file(tmp_path), codec_file)
        cs.state.fail_device_creates_after = 2  # the server goes away after two devices
        first = cli(*args)
        assert first.code == 1
        assert "cannot reach ChirpStack" in first.err
        assert len(cs.state.devices) == 2
        cs.state.fail_device_creates_after = None  # back again
        second = cli(*args)
        assert second.code == 0, second.err
        assert set(cs.state.devices) == {n.dev_eui for n in batch.inventory.nodes}
        assert set(cs.state.keys) == set(cs.state.devices)
        assert "device unchanged: 2" in second.out and "device created: 2" in second.out
        assert cs.state.writes["profile.create"] == 2  # profiles made once, not per run
        third = cli(*args)
        assert "device unchanged: 4" in third.out and "keys unchanged: 4" in third.out


def test_a_rejected_node_fails_alone_and_the_batch_goes_on(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path, codec_file: Path
) -> None:
    rejected = batch.inventory.nodes[1].dev_eui
    with FakeChirpStack(TOKEN) as cs:
        cs.state.reject.add(rejected)
        run = cli(*_register_args(batch, cs, _token_file(tmp_path), codec_file))
        assert run.code == 1
        assert (
            f"FAILED {rejected}: ChirpStack create device {rejected}: INVALID_ARGUMENT" in run.out
        )
        assert "1 node(s) failed" in run.err
        assert set(cs.state.devices) == {n.dev_eui for n in batch.inventory.nodes} - {rejected}


def test_missing_codec_says_run_codegen(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path
) -> None:
    with FakeChirpStack(TOKEN) as cs:
        run = cli(*_register_args(batch, cs, _token_file(tmp_path), tmp_path / "nope.js"))
    assert run.code == 1
    assert "run `citypack codegen` first" in run.err


def test_gateway_registry_put_once_and_idempotent(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path, codec_file: Path
) -> None:
    gw_token = "gateway-secret-token"
    app, devices, writes = make_app(gw_token)
    with FakeChirpStack(TOKEN) as cs, serve(app) as url:
        args = [
            *_register_args(batch, cs, _token_file(tmp_path), codec_file),
            "--gateway-api", url,
            "--gateway-token-file", str(_token_file(tmp_path, gw_token, "gw")),
        ]  # fmt: skip
        run = cli(*args)
        assert run.code == 0, run.err
        assert "registry created: 4" in run.out
        for node in batch.inventory.nodes:
            entry: dict[str, Any] = devices[node.dev_eui]
            assert entry["kind"] == node.kind and entry["name"] == node.name
            assert entry["street"] == "Vestergade" and entry["serial"] == node.serial
            if node.latitude is not None:
                assert entry["latitude"] == pytest.approx(node.latitude)
        assert writes["put"] == 4
        again = cli(*args)
        assert "registry unchanged: 4" in again.out
        assert writes["put"] == 4
        bad = [*args[:-1], str(_token_file(tmp_path, "wrong", "gw2"))]
        refused = cli(*bad)
        assert refused.code == 1
        assert "gateway API" in refused.err and "refused the token" in refused.err


def test_register_batch_reports_counts_in_process(
    batch: Batch, tmp_path: Path, codec_file: Path
) -> None:
    with FakeChirpStack(TOKEN) as cs, ChirpStack(cs.target, TOKEN) as client:
        report = register_batch(
            batch.inventory.nodes,
            batch.secrets,
            client,
            tenant_id=TENANT,
            application_id=APP,
            codec_script=codec_file.read_text(),
        )
    assert report.outcomes["device created"] == 4
    assert report.changed == 8
    assert not report.failures


def test_registry_against_the_real_gateway_api(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path, codec_file: Path
) -> None:
    from tests.provision.fake_gateway import serve_real_gateway

    gw_token = "real-gateway-token"
    with FakeChirpStack(TOKEN) as cs, serve_real_gateway(tmp_path / "gw.db", gw_token) as url:
        args = [
            *_register_args(batch, cs, _token_file(tmp_path), codec_file),
            "--gateway-api", url,
            "--gateway-token-file", str(_token_file(tmp_path, gw_token, "gw")),
        ]  # fmt: skip
        first = cli(*args)
        assert first.code == 0, first.err
        assert "registry created: 4" in first.out
        second = cli(*args)
        assert second.code == 0 and "registry unchanged: 4" in second.out
        import httpx

        for node in batch.inventory.nodes:
            got = httpx.get(
                f"{url}/api/v1/devices/{node.dev_eui}",
                headers={"Authorization": f"Bearer {gw_token}"},
            ).json()
            assert got["kind"] == node.kind and got["name"] == node.name
            assert got["serial"] == node.serial and got["street"] == node.street
            assert got["registered"] is True


def test_no_chirpstack_registers_only_in_the_gateway(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path
) -> None:
    gw_token = "gateway-only-token"
    app, devices, _ = make_app(gw_token)
    with serve(app) as url:
        gateway = [
            "--gateway-api",
            url,
            "--gateway-token-file",
            str(_token_file(tmp_path, gw_token)),
        ]
        run = cli("register", "--inventory", str(batch.path), "--no-chirpstack", *gateway)
        assert run.code == 0, run.err
        assert set(devices) == {n.dev_eui for n in batch.inventory.nodes}
        assert "registry created: 4" in run.out and "device" not in run.out.split("registry")[0]
    missing = cli("register", "--inventory", str(batch.path))
    assert missing.code == 2 and "--chirpstack is required (or --no-chirpstack)" in missing.err
    alone = cli("register", "--inventory", str(batch.path), "--no-chirpstack")
    assert alone.code == 2 and "give --gateway-api" in alone.err
