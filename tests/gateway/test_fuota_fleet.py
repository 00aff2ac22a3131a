"""FUOTA campaigns with two gateway instances on one PostgreSQL (issues 16 and 18).

The campaign engine runs on the instance leading the ``fuota`` job; the shared subscription
hands a node's answers to any instance and a load balancer sends API calls anywhere. By
construction, not by luck: instance A leads (its engine runs), instance B never does (its engine
does not run), and every node answer and every API call goes through B. So the campaign can only
advance if B's answers reach A (a ``fuota_answer`` event through the change feed), and the API
can only be right if B reads and writes the store (gateway/fuota_campaign.py module docstring).
Real parts: PostgreSQL, the ChirpStack emulator's gRPC API (multicast group, root keys); the MQTT
downlink path is replaced by a list (it is tested end to end in tests/e2e/test_fuota_campaign.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.api import create_app
from gateway.config import parse_config
from gateway.service import Gateway
from protocol.fuota import bundle as fbundle
from protocol.fuota import clocksync, mcsetup
from protocol.lorawan.keys import AESKey
from tests.gateway import events as ev
from tools.fuota import public_key_hex
from tools.netsim.config import NetsimConfig
from tools.netsim.devices import Device as NetsimDevice
from tools.netsim.grpcapi import start_grpc
from tools.netsim.server import NetworkServer

pytestmark = [pytest.mark.postgres]

APP = "8c1c5a3e-2f4b-4a57-9c1e-6b0d3f2a7e11"
TOKEN = "fuota-fleet-token-0123456789abcdef0123"
EUIS = [f"70b3d57ed00f{i:04x}" for i in range(2)]


def _config(tmp: Path, name: str, url: str, grpc: int) -> Any:
    return parse_config(
        {
            "mqtt": {
                "url": "mqtt://127.0.0.1:1",  # never connected: the test calls process()
                "client_id": f"gw-{name}",
                "application_id": APP,
                "shared_group": "fleet",
            },
            "store": {"url": url},
            "api": {"enabled": False},
            "chirpstack": {"api": f"127.0.0.1:{grpc}", "api_token_file": str(tmp / "cs")},
            "multicast": {"enabled": True, "key_file": str(tmp / "mc")},
            "fuota": {"enabled": True, "public_key_file": str(tmp / "pub")},
        },
        environ={},
    )


def network_server(tmp: Path, public_key: str) -> NetworkServer:
    """The ChirpStack emulator with the class C lamps ``EUIS``, and the secrets ``_config``
    names written into ``tmp``."""
    (tmp / "cs").write_text("cs-token\n")
    (tmp / "mc").write_text("000102030405060708090a0b0c0d0e0f\n")
    (tmp / "pub").write_text(public_key + "\n")
    return NetworkServer(
        [NetsimDevice(e, "70b3d57ed00000ff", AESKey(bytes(range(16))), "C", f"l{i}") for i, e in
         enumerate(EUIS)],
        NetsimConfig(application_id=APP),
    )  # fmt: skip


async def _until(check: Callable[[], bool | Awaitable[bool]], what: str, within: float) -> None:
    try:
        async with asyncio.timeout(within):
            while True:
                result = check()
                if result if isinstance(result, bool) else await result:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


async def test_answers_and_api_calls_through_an_instance_that_does_not_lead(
    tmp_path: Path, postgres_url: str
) -> None:
    key = Ed25519PrivateKey.generate()
    ns = network_server(tmp_path, public_key_hex(key))
    bundle = fbundle.build(
        "0.2.0", "0.1.0", [fbundle.Module("apps/x.mpy", b"M\x06" + bytes(400))], [], key.sign
    )
    async with ns:
        server, port = await start_grpc(ns, "127.0.0.1", 0, "cs-token")
        a = Gateway(_config(tmp_path, "a", postgres_url, port), api_token=TOKEN)
        b = Gateway(_config(tmp_path, "b", postgres_url, port), api_token=TOKEN)
        sent: dict[str, list[tuple[str, int, bytes]]] = {"a": [], "b": []}
        for name, gw in (("a", a), ("b", b)):
            assert gw.fuota is not None and gw.fleet is not None

            async def send(dev_eui: str, f_port: int, data: bytes, name: str = name) -> None:
                sent[name].append((dev_eui, f_port, data))

            gw.fuota._send = send  # the MQTT downlink path is tested end to end elsewhere
        leader: asyncio.Task[None] | None = None
        try:
            await a.open()
            for eui in EUIS:
                a.upsert_device(eui, {"kind": "lamp", "group": "oak"})
            await a.flush()
            await b.open()
            assert a.fuota is not None and b.fuota is not None and a.fleet is not None
            await a.fleet.on_changes()  # A's change feed starts here (later events reach it)
            leader = asyncio.create_task(a.fuota.run())  # A holds the fuota job; B never does
            await _until(lambda: a.fuota is not None and a.fuota.leading, "A leads", 10)

            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(b)),
                base_url="http://gw-b",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as via_b:
                body = {"group": "oak", "bundle": base64.b64encode(bundle).decode()}
                created = await via_b.post("/api/v1/fuota/campaigns", json=body)
                assert created.status_code == 202, created.text
                cid = created.json()["id"]
                # A's poll takes the campaign up: every lamp is asked for a clock resync, by A
                resync = clocksync.ForceDeviceResyncReq(1).to_bytes()
                await _until(
                    lambda: sorted(sent["a"]) == [(e, clocksync.FPORT, resync) for e in EUIS],
                    "A asks every lamp to resync",
                    15,
                )
                busy = await via_b.post("/api/v1/fuota/campaigns", json=body)
                assert busy.status_code == 409 and busy.json()["error"] == "busy"

                # the lamp's AppTimeReq reaches B: B answers it (once, with its clock) ...
                request = clocksync.AppTimeReq(device_time=1000, token_req=5, ans_required=True)
                raw = ev.dumps(
                    ev.up(APP, EUIS[0], f_cnt=1, f_port=clocksync.FPORT, data=request.to_bytes())
                )
                await b.process(ev.topic(APP, EUIS[0], "up"), raw)
                await b.flush()
                await _until(lambda: len(sent["b"]) == 1, "B answers the AppTimeReq", 10)
                ((dev, _port, payload),) = sent["b"]
                (answer,) = clocksync.decode_downlink(payload)
                assert dev == EUIS[0] and isinstance(answer, clocksync.AppTimeAns)
                assert answer.token_ans == 5
                # ... and A, whose engine waits for it, hears of it through its change feed
                await a.fleet.on_changes()

                def asked_group_setup() -> bool:
                    return any(e == EUIS[0] and p == mcsetup.FPORT for e, p, _ in sent["a"])

                await _until(asked_group_setup, "A goes on to McGroupSetupReq", 10)
                assert not any(p == clocksync.FPORT and d[:1] == b"\x01" for _, p, d in sent["a"])

                # B's API reads A's progress from the store
                async def synced_via_b() -> bool:
                    doc = (await via_b.get(f"/api/v1/fuota/campaigns/{cid}")).json()
                    first = next(d for d in doc["devices"] if d["dev_eui"] == EUIS[0])
                    return bool(first["clock_synced"])

                await _until(synced_via_b, "B shows the lamp's clock synced", 10)
                listing = (await via_b.get("/api/v1/fuota/campaigns")).json()["campaigns"]
                assert [c["id"] for c in listing] == [cid]

                # cancelled through B: A stops it, and A's later saves keep it cancelled
                cancelled = await via_b.post(f"/api/v1/fuota/campaigns/{cid}/cancel")
                assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
                await _until(
                    lambda: a.fuota is not None and a.fuota.campaigns[cid].state == "cancelled",
                    "A stops the campaign cancelled through B",
                    15,
                )
                assert cid not in a.fuota._tasks
                stored = dict(await a.store.campaign_states())
                assert stored[cid] == "cancelled"
                doc = (await via_b.get(f"/api/v1/fuota/campaigns/{cid}")).json()
                assert doc["state"] == "cancelled"
                assert {d["state"] for d in doc["devices"]} == {"cancelled"}
        finally:
            if leader is not None:
                leader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await leader
            await b.close()
            await a.close()
            await server.stop(grace=None)
