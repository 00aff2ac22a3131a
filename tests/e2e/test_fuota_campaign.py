"""FUOTA campaigns end to end: the gateway's campaign engine drives real firmware lamps.

``citypack gateway run`` (a child process, SQLite) with ``[multicast]`` and ``[fuota]`` on, the
private mosquitto, the emulator (tools.netsim) with its gRPC ``MulticastGroupService`` and
``DeviceService.GetKeys``, and lamps of the fleet simulator running the firmware's MAC, lamp app
and fuota agent (tools/sim/fuota.py) in accelerated time. Multicast frames reach each lamp on
its own and each is lost with a fixed probability (tools/sim/network.py), so the lamps rebuild
the file from what the air left, with the annex's coded fragments. A campaign is applied when
each lamp restarts into the new set and its ``device_info`` reports the bundle's version.

Waits are bounded polls on the gateway's API, never sleeps that assume a speed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.fuota import bundle as fbundle
from tests.e2e.city import eventually
from tests.helpers.procs import Broker
from tools.fuota import public_key_hex
from tools.sim.fleet import Fleet
from tools.sim.fuota_street import FuotaStreet, fuota_street
from tools.sim.gatewayproc import GatewayProcess

STREET = "Mejlgade"
LAMPS = [f"02c17a0c000000d{i}" for i in range(1, 4)]
LOSS = 0.10
SPEED = 40.0


def _bundle(key: Ed25519PrivateKey, size: int = 2400) -> bytes:
    body = b"M\x06" + hashlib.shake_256(b"citypack campaign test").digest(size)
    return fbundle.build("0.2.0", "0.1.0", [fbundle.Module("apps/extra.mpy", body)], [], key.sign)


@dataclass
class Rig:
    gateway: GatewayProcess
    fleet: Fleet
    workdir: Path

    async def api(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.gateway.request(method, path, **kwargs)

    async def campaign(self, campaign_id: str) -> dict[str, Any]:
        return dict(await self.api("GET", f"/api/v1/fuota/campaigns/{campaign_id}"))


@contextlib.asynccontextmanager
async def street_rig(
    workdir: Path, broker: Broker, trusted: Ed25519PrivateKey, fuota: dict[str, Any]
) -> AsyncIterator[Rig]:
    async with fuota_street(
        workdir,
        mqtt_url=broker.url,  # the session's broker: the street has an application of its own
        lamps=LAMPS,
        street=STREET,
        public_key_hex=public_key_hex(trusted),
        fuota={
            "frag_size": 48,
            "redundancy_percent": 40,
            "answer_timeout_s": 20.0,
            "status_wait_s": 20.0,
            "apply_timeout_s": 120.0,
            "session_timeout": 15,
            # the lamps' time runs SPEED times faster: a DR5 fragment is ~0.1 s on their air
            "fragment_interval_s": 0.02,
            **fuota,
        },
        loss=LOSS,
        seed=5,
        first_m=100.0,
        spacing_m=60.0,
        speed=SPEED,
        report_interval_s=600,
        boot_spread_s=5.0,
        ready=_reported,
        ready_within_s=120.0 * len(LAMPS),
    ) as street:
        yield Rig(street.gateway, street.fleet, workdir)


async def _reported(rig: FuotaStreet, eui: str) -> bool:
    device = await rig.api("GET", f"/api/v1/devices/{eui}")
    return bool(device.get("reported", {}).get("firmware_version") or device.get("last_seen"))


async def _cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(900):
        out, _ = await process.communicate()
    return int(process.returncode or 0), out.decode()


async def _start(rig: Rig, data: bytes) -> dict[str, Any]:
    body = {"group": STREET, "bundle": base64.b64encode(data).decode()}
    response = await rig.gateway.client.post("/api/v1/fuota/campaigns", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


async def _finished(rig: Rig, campaign_id: str) -> dict[str, Any] | None:
    doc = await rig.campaign(campaign_id)
    return doc if doc["state"] in ("done", "failed", "cancelled") else None


@pytest.mark.slow
async def test_a_campaign_with_fragment_loss_reaches_applied(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    data = _bundle(key)
    (tmp_path / "bundle.bin").write_bytes(data)
    async with street_rig(tmp_path, mosquitto_broker, key, {}) as rig:
        # started and followed with the CLI, as an operator would
        api = ["--api", rig.gateway.api_url, "--token-file", str(rig.gateway.token_file)]
        code, out = await _cli(
            "fuota", "start", "--group", STREET, "--bundle", str(tmp_path / "bundle.bin"), *api
        )
        assert code == 0, out
        campaign_id = out.split()[1]
        started = await rig.campaign(campaign_id)
        assert len(started["devices"]) == len(LAMPS)
        code, out = await _cli("fuota", "status", campaign_id, "--wait", *api)
        assert code == 0, out
        assert out.count(" applied ") == len(LAMPS) and "done:" in out, out
        done = await rig.campaign(campaign_id)
        lost = rig.fleet.backhaul.multicast_lost
    assert lost > 0, "the air must lose fragments for this test to mean anything"
    assert done["state"] == "done", json.dumps(done, indent=1)
    for device in done["devices"]:
        assert device["state"] == "applied", json.dumps(done, indent=1)
        assert device["version"] == "0.2.0" and device["verified"] and device["applied"]
        assert device["clock_synced"] and device["multicast_setup"] and device["session_setup"]
    assert done["fragments_sent"] >= done["nb_frag"] and done["airtime_s"] > 0
    for eui in LAMPS:  # the staged set holds the bundle's module
        assert (tmp_path / "fs" / eui / "fw" / "a" / "apps" / "extra.mpy").exists()


@pytest.mark.slow
async def test_a_bundle_the_lamps_do_not_trust_fails_with_the_reason(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    trusted = Ed25519PrivateKey.generate()
    forged = _bundle(Ed25519PrivateKey.generate(), size=600)  # well formed, wrong signer
    # each lamp checks the file the moment it is whole, before it answers the status request
    # that tells the gateway so; the gateway then waits apply_timeout_s for a new version
    async with street_rig(tmp_path, mosquitto_broker, trusted, {"apply_timeout_s": 5.0}) as rig:
        started = await _start(rig, forged)
        done = await eventually(
            lambda: _finished(rig, started["id"]), timeout_s=600, what="the campaign's end"
        )
        # the lamps did refuse it (not merely had no time to apply it): their agents say why
        for eui in LAMPS:
            agent = rig.fleet.nodes[eui].agent
            assert agent.update_result == (False, "signature", None), (eui, agent.report())
    assert done["state"] == "done"
    for device in done["devices"]:
        assert device["state"] == "failed", json.dumps(done, indent=1)
        # the whole file arrived ...
        assert device["fragments_missing"] == 0, json.dumps(done, indent=1)
        assert "refused the bundle" in device["error"] and device["version"] == "0.1.0"
        assert not device["applied"]
    for eui in LAMPS:  # ... and the running code did not change
        assert not (tmp_path / "fs" / eui / "fw").exists() or not any(
            (tmp_path / "fs" / eui / "fw").rglob("extra.mpy")
        )


def _stored(database: Path, campaign_id: str) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        row = db.execute("SELECT doc FROM fuota_campaigns WHERE id = ?", (campaign_id,)).fetchone()
    return dict(json.loads(row[0]))


@pytest.mark.slow
async def test_a_campaign_resumes_after_the_gateway_is_killed(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    data = _bundle(key)
    # fragments trickle out, so the kill lands among them
    async with street_rig(tmp_path, mosquitto_broker, key, {"fragment_interval_s": 0.5}) as rig:
        started = await _start(rig, data)
        campaign_id = started["id"]

        async def sending() -> bool:
            doc = await rig.campaign(campaign_id)
            return doc["state"] == "fragments" and doc["fragments_sent"] >= 5

        await eventually(sending, timeout_s=300, what="fragments going out")
        process = rig.gateway._process
        assert process is not None
        process.kill()  # no graceful stop: what the store holds is all there is
        await process.wait()
        await rig.gateway.client.aclose()  # start() makes a new one
        stored = _stored(rig.gateway.database, campaign_id)
        # precondition by construction: the campaign was cut in the middle of its fragments
        planned = stored["nb_frag"] + stored["redundancy"]
        assert stored["state"] == "fragments" and 0 < stored["fragments_sent"] < planned
        # the rest goes out at the rig's usual pace: the kill needed the trickle, not the rest
        rig.gateway.configure("fuota", fragment_interval_s=0.02)
        await rig.gateway.start()
        await rig.gateway.wait_ready()
        done = await eventually(
            lambda: _finished(rig, campaign_id), timeout_s=600, what="the resumed campaign's end"
        )
        frames = len(rig.fleet.backhaul.multicast_fcnts)
    assert done["state"] == "done", json.dumps(done, indent=1)
    assert all(d["state"] == "applied" for d in done["devices"]), json.dumps(done, indent=1)
    # resumed, not restarted: the setup was not asked again and no fragment went out twice
    # (one may: the one enqueued just before the kill and not yet saved)
    assert done["fragments_sent"] <= frames <= done["fragments_sent"] + done["status_rounds"] + 1
