"""FUOTA campaigns at the gateway: API validation, persistence in both stores, the engine's
answers to the nodes' TS003/TS004/TS005 uplinks (no MQTT; the end to end runs are in
tests/e2e/test_fuota_campaign.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.api import create_app
from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.fuota_campaign import Campaign, DeviceProgress, gps_seconds
from gateway.service import Gateway
from gateway.store import create_store
from protocol.fuota import bundle as fbundle
from protocol.fuota import clocksync, fragmentation
from protocol.lorawan.keys import AESKey
from tools.fuota import public_key_hex
from tools.netsim.config import NetsimConfig
from tools.netsim.devices import Device as NetsimDevice
from tools.netsim.grpcapi import start_grpc
from tools.netsim.server import NetworkServer

APP = "8c1c5a3e-2f4b-4a57-9c1e-6b0d3f2a7e10"
TOKEN = "fuota-test-token-0123456789abcdef0123"
EUIS = [f"70b3d57ed00f{i:04x}" for i in range(3)]


def _bundle(key: Ed25519PrivateKey, size: int = 500) -> bytes:
    module = fbundle.Module("apps/x.mpy", b"M\x06" + bytes(size))
    return fbundle.build("0.2.0", "0.1.0", [module], [], key.sign)


@dataclass
class Rig:
    gateway: Gateway
    http: httpx.AsyncClient
    sent: list[tuple[str, int, bytes]]
    key: Ed25519PrivateKey


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    key = Ed25519PrivateKey.generate()
    ns = NetworkServer(
        [NetsimDevice(e, "70b3d57ed00000ff", AESKey(bytes(16)), "C", f"l{i}") for i, e in
         enumerate(EUIS)],
        NetsimConfig(application_id=APP),
    )  # fmt: skip
    (tmp_path / "cs").write_text("cs-token\n")
    (tmp_path / "mc").write_text("000102030405060708090a0b0c0d0e0f\n")
    (tmp_path / "pub").write_text(public_key_hex(key) + "\n")
    async with ns:
        server, port = await start_grpc(ns, "127.0.0.1", 0, "cs-token")
        config = parse_config(
            {
                "mqtt": {"url": "mqtt://127.0.0.1:1", "application_id": APP},
                "store": {"url": f"sqlite:///{tmp_path / 'gw.db'}"},
                "api": {"listen": "127.0.0.1:0", "max_body_bytes": 8192},
                "chirpstack": {"api": f"127.0.0.1:{port}", "api_token_file": str(tmp_path / "cs")},
                "multicast": {"enabled": True, "key_file": str(tmp_path / "mc")},
                "fuota": {
                    "enabled": True,
                    "public_key_file": str(tmp_path / "pub"),
                    "max_bundle_bytes": 4096,
                    "answer_timeout_s": 30.0,
                },
            },
            environ={},
        )
        gateway = Gateway(config, api_token=TOKEN)
        sent: list[tuple[str, int, bytes]] = []

        async def send(dev_eui: str, f_port: int, data: bytes) -> None:
            sent.append((dev_eui, f_port, data))

        assert gateway.fuota is not None
        gateway.fuota._send = send  # the MQTT downlink path is tested end to end elsewhere
        await gateway.open()
        for eui in EUIS:
            gateway.upsert_device(eui, {"kind": "lamp", "group": "oak"})
        await gateway.flush()

        task = asyncio.create_task(gateway.fuota.run())
        transport = httpx.ASGITransport(app=create_app(gateway))
        try:
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://gw",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as http:
                yield Rig(gateway, http, sent, key)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await gateway.close()
            await server.stop(grace=None)


def _body(group: str, data: bytes) -> dict[str, Any]:
    return {"group": group, "bundle": base64.b64encode(data).decode()}


async def test_bad_requests_are_refused_with_the_reason(rig: Rig) -> None:
    post = rig.http.post
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"group": "oak", "bundle": "not base64!"}, 422, "bad_bundle"),
        (_body("oak", b"CPFW\x01 truncated"), 422, "bad_bundle"),
        (_body("oak", _bundle(Ed25519PrivateKey.generate())), 422, "bad_signature"),
        (_body("oak", _bundle(rig.key, size=5000)), 422, "bundle_too_large"),
        (_body("pine", _bundle(rig.key)), 404, "not_found"),
        ({**_body("oak", _bundle(rig.key)), "kind": "bin"}, 404, "not_found"),  # lamps only
    ]
    for body, status, code in cases:
        response = await post("/api/v1/fuota/campaigns", json=body)
        assert response.status_code == status, (code, response.text)
        assert response.json()["error"] == code
    # a body past [api] max_body_bytes is refused before it is read (gateway/guard.py)
    huge = await post("/api/v1/fuota/campaigns", json=_body("oak", _bundle(rig.key, 9000)))
    assert huge.status_code == 413
    extra = await post("/api/v1/fuota/campaigns", json={**_body("oak", b"x"), "more": 1})
    assert extra.status_code == 422
    anonymous = await post(
        "/api/v1/fuota/campaigns", json=_body("oak", b"x"), headers={"Authorization": "Bearer x"}
    )
    assert anonymous.status_code == 401
    assert (await rig.http.get("/api/v1/fuota/campaigns/nope")).status_code == 404
    assert rig.sent == []  # nothing went to a node


async def test_a_campaign_starts_is_listed_and_cancelled(rig: Rig) -> None:
    data = _bundle(rig.key)
    created = await rig.http.post("/api/v1/fuota/campaigns", json=_body("oak", data))
    assert created.status_code == 202, created.text
    doc = created.json()
    assert doc["state"] == "setup" and [d["dev_eui"] for d in doc["devices"]] == EUIS
    assert doc["version"] == "0.2.0" and doc["size"] == len(data)
    assert doc["nb_frag"] == -(-len(data) // doc["frag_size"])
    busy = await rig.http.post("/api/v1/fuota/campaigns", json=_body("oak", data))
    assert busy.status_code == 409 and busy.json()["error"] == "busy"
    # every device is asked for a clock resync first (TS003 ForceDeviceResyncReq, port 202)
    for _ in range(200):
        if len(rig.sent) == len(EUIS):
            break
        await asyncio.sleep(0.01)
    assert sorted(rig.sent) == sorted(
        (e, clocksync.FPORT, clocksync.ForceDeviceResyncReq(1).to_bytes()) for e in EUIS
    )
    listing = (await rig.http.get("/api/v1/fuota/campaigns")).json()["campaigns"]
    assert [c["id"] for c in listing] == [doc["id"]] and "devices" not in listing[0]
    cancelled = await rig.http.post(f"/api/v1/fuota/campaigns/{doc['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert {d["state"] for d in cancelled.json()["devices"]} == {"cancelled"}
    again = await rig.http.delete(f"/api/v1/fuota/campaigns/{doc['id']}")
    assert again.json()["state"] == "cancelled"
    # the answer to the node's AppTimeReq: its clock corrected to the gateway's GPS time
    engine = rig.gateway.fuota
    assert engine is not None
    rig.sent.clear()
    request = clocksync.AppTimeReq(device_time=1000, token_req=3, ans_required=True)
    assert engine.on_uplink(EUIS[0], clocksync.FPORT, request.to_bytes())
    for _ in range(200):
        if rig.sent:
            break
        await asyncio.sleep(0.01)
    (dev, port, payload), *_ = rig.sent
    (answer,) = clocksync.decode_downlink(payload)
    assert dev == EUIS[0] and port == clocksync.FPORT
    assert isinstance(answer, clocksync.AppTimeAns) and answer.token_ans == 3
    assert abs(answer.time_correction - (gps_seconds(rig.gateway.clock()) - 1000)) <= 2
    assert not engine.on_uplink(EUIS[0], fragmentation.FPORT, b"\x01\x00")  # truncated


async def test_fuota_routes_say_when_fuota_is_off(tmp_path: Path) -> None:
    from tests.security.conftest import TOKEN as SEC_TOKEN
    from tests.security.conftest import new_gateway, seed

    gateway = new_gateway(tmp_path / "gw.db")
    await seed(gateway)
    try:
        transport = httpx.ASGITransport(app=create_app(gateway))
        headers = {"Authorization": f"Bearer {SEC_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gw", headers=headers
        ) as http:
            response = await http.get("/api/v1/fuota/campaigns")
            assert response.status_code == 409 and response.json()["error"] == "fuota_disabled"
            spec = (await http.get("/openapi.json")).json()
            assert "/api/v1/fuota/campaigns/{campaign_id}" in spec["paths"]
    finally:
        await gateway.close()


def test_fuota_config_section() -> None:
    base: dict[str, Any] = {"mqtt": {"url": "mqtt://127.0.0.1:1883", "application_id": "a"}}
    assert parse_config(base, environ={}).fuota.enabled is False
    with pytest.raises(ConfigError, match=r"needs \[multicast\]"):
        parse_config({**base, "fuota": {"enabled": True}}, environ={})
    base["chirpstack"] = {"api": "127.0.0.1:8080", "api_token_file": "t"}
    base["multicast"] = {"enabled": True, "key_file": "k"}
    assert parse_config({**base, "fuota": {"enabled": True}}, environ={}).fuota.enabled
    for bad in ({"mc_group_id": 4}, {"frag_size": 300}, {"session_timeout": 16}, {"max_tries": 0}):
        with pytest.raises(ConfigError):
            parse_config({**base, "fuota": {"enabled": True, **bad}}, environ={})


async def test_campaigns_are_stored_in_both_stores(store_url: str) -> None:
    store = create_store(store_url)
    await store.open()
    try:
        campaign = Campaign(
            id="c1", group="oak", version="0.2.0", from_version="0.1.0", size=10, frag_size=5,
            nb_frag=2, padding=0, redundancy=1, created_at=1.0,
            devices={"aa": DeviceProgress("aa", state="receiving", fragments_received=1)},
        )  # fmt: skip
        doc = json.dumps(campaign.to_json())
        await store.save_campaign("c1", "setup", 1.0, doc, b"bundle-bytes")
        campaign.state, campaign.fragments_sent = "fragments", 2
        await store.save_campaign("c1", "fragments", 1.0, json.dumps(campaign.to_json()), None)
        ((got, data),) = await store.load_campaigns()
        back = Campaign.from_json(json.loads(got))
        assert data == b"bundle-bytes"
        assert back.state == "fragments" and back.fragments_sent == 2
        assert back.devices["aa"].fragments_received == 1
        assert await store.campaign_states() == [("c1", "fragments")]
        # cancelled through another instance: the leader's next progress save must not undo it
        # (gateway/fuota_campaign.py module docstring), by either write
        campaign.state = "cancelled"
        await store.save_campaign("c1", "cancelled", 1.0, json.dumps(campaign.to_json()), None)
        campaign.state, campaign.fragments_sent = "status", 3
        await store.save_campaign("c1", "status", 1.0, json.dumps(campaign.to_json()), None)
        await store.save_campaign("c1", "status", 1.0, json.dumps(campaign.to_json()), b"b")
        ((got, data),) = await store.load_campaigns()
        assert Campaign.from_json(json.loads(got)).state == "cancelled"
        assert await store.campaign_states() == [("c1", "cancelled")]
        await store.save_campaign("c1", "cancelled", 1.0, json.dumps(campaign.to_json()), None)
        ((got, _),) = await store.load_campaigns()
        assert Campaign.from_json(json.loads(got)).fragments_sent == 3  # cancelled over cancelled
    finally:
        await store.close()
