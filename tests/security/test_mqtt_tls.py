"""MQTT over TLS with username/password and a broker ACL (issue 8).

mosquitto runs with only a TLS listener (certificates made here with ``cryptography``), a
password file written by ``mosquitto_passwd`` and an ACL that limits the gateway's user to
ChirpStack's event and command topics and its own ``<base>/#``. The gateway (the real
``citypack gateway run`` process) connects with ``mqtts://``, ``username`` and ``password_file``,
processes an uplink and hands over a command; its user can neither read nor write outside its
topics; a wrong password keeps it unready without leaking the password; a certificate that does
not verify stops it at start with one clear line.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from tests.helpers import procs
from tests.helpers.faults import (
    GatewayProcess,
    gateway_config,
    make_certificates,
    start_tls_mosquitto,
    uplink_stream,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

GATEWAY_PASSWORD = "gw-pass-7c1e0b"
USERS = {"gateway": GATEWAY_PASSWORD, "chirpstack": "cs-pass-2b9d", "admin": "admin-pass-55aa"}
DEV = "a840410001b00001"


def _acl(base: str) -> str:
    return (
        "user gateway\n"
        "topic read application/+/device/+/event/+\n"
        "topic write application/+/device/+/command/down\n"
        f"topic readwrite {base}/#\n\n"
        "user chirpstack\n"
        "topic write application/+/device/+/event/+\n"
        "topic read application/+/device/+/command/down\n\n"
        "user admin\n"
        "topic readwrite #\n"
    )


@pytest.fixture
def tls_setup(tmp_path: Path) -> Any:
    if procs.find_program("mosquitto") is None or procs.find_program("mosquitto_passwd") is None:
        pytest.skip("mosquitto and mosquitto_passwd are needed")
    base = f"cp{uuid.uuid4().hex[:8]}"
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    tls = make_certificates(tmp_path)
    broker = start_tls_mosquitto(broker_dir, tls, USERS, _acl(base))
    yield broker, tls, base
    broker.stop()


def _client(broker: procs.Broker, tls_ca: Path, user: str, password: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=f"{user}-{uuid.uuid4().hex[:6]}",
        username=user,
        password=password,
        tls_context=ssl.create_default_context(cafile=str(tls_ca)),
    )


def _gateway(
    tmp_path: Path, broker: procs.Broker, ca: Path, base: str, password: str, app: str
) -> GatewayProcess:
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    return gateway_config(
        tmp_path,
        f"mqtts://127.0.0.1:{broker.port}",
        application_id=app,
        base_topic=base,
        mqtt_extra=(
            f'username = "gateway"\npassword_file = "{password_file}"\ntls_ca_file = "{ca}"\n'
        ),
    )


def _api(gw: GatewayProcess) -> httpx.Client:
    return httpx.Client(
        base_url=gw.url, headers={"Authorization": f"Bearer {gw.token}"}, timeout=20
    )


async def test_tls_password_and_acl(tls_setup: Any, tmp_path: Path) -> None:
    broker, tls, base = tls_setup
    app = str(uuid.uuid4())
    gw = _gateway(tmp_path, broker, tls.ca, base, GATEWAY_PASSWORD, app)
    try:
        gw.start()
        await asyncio.to_thread(
            wait_until, lambda: httpx.get(f"{gw.url}/readyz").status_code == 200, "ready"
        )
        with _api(gw) as api:
            assert api.put(f"/api/v1/devices/{DEV}", json={"kind": "bin"}).status_code == 200
        async with _client(broker, tls.ca, "chirpstack", USERS["chirpstack"]) as chirpstack:
            await chirpstack.subscribe(f"application/{app}/device/+/command/down", qos=1)
            topic, payload, _ = uplink_stream(app, [DEV], 1)[0]
            await chirpstack.publish(topic, payload, qos=1)

            def stored() -> bool:
                with _api(gw) as api:
                    return bool(api.get("/api/v1/stats").json()["uplinks_stored"] == 1)

            await asyncio.to_thread(wait_until, stored, "the uplink over TLS")
            with _api(gw) as api:
                body = {"message": "bin_config", "fields": {"config_version": 3}}
                command = api.post(f"/api/v1/devices/{DEV}/commands", json=body).json()
            async with asyncio.timeout(20):
                async for message in chirpstack.messages:
                    assert isinstance(message.payload, bytes)
                    assert json.loads(message.payload)["id"] == command["id"]
                    break

        # the gateway's user is limited to its topics
        async with (
            _client(broker, tls.ca, "gateway", GATEWAY_PASSWORD) as as_gateway,
            _client(broker, tls.ca, "admin", USERS["admin"]) as admin,
        ):
            await as_gateway.subscribe("#", qos=1)
            await admin.subscribe("#", qos=1)
            await admin.publish("city/secret/ledger", b"not for the gateway", qos=1)
            await admin.publish(topic, b"{}", qos=1)  # an event: the gateway may read it
            await as_gateway.publish(f"application/{app}/device/{DEV}/event/up", b"forged", qos=1)
            await as_gateway.publish("city/secret/ledger", b"overwritten", qos=1)
            await as_gateway.publish(f"application/{app}/device/{DEV}/command/down", b"ok", qos=1)
            await admin.publish("city/end", b"", qos=1)
            got_gateway: list[tuple[str, bytes]] = []
            got_admin: list[tuple[str, bytes]] = []

            async def drain(client: aiomqtt.Client, into: list[tuple[str, bytes]]) -> None:
                async for message in client.messages:
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    into.append((message.topic.value, payload))

            tasks = [
                asyncio.create_task(drain(as_gateway, got_gateway)),
                asyncio.create_task(drain(admin, got_admin)),
            ]
            await asyncio.sleep(1.5)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        admin_topics = [t for t, _ in got_admin if not t.startswith(base)]
        assert f"application/{app}/device/{DEV}/command/down" in admin_topics  # allowed write
        assert ("city/secret/ledger", b"overwritten") not in got_admin  # denied write
        assert (f"application/{app}/device/{DEV}/event/up", b"forged") not in got_admin
        gateway_topics = {t for t, _ in got_gateway}
        assert topic in gateway_topics  # events: readable
        assert "city/secret/ledger" not in gateway_topics and "city/end" not in gateway_topics
        logs = gw.log_path.read_text()
        assert GATEWAY_PASSWORD not in logs
    finally:
        gw.kill()


async def test_wrong_password_stays_unready_and_does_not_leak(
    tls_setup: Any, tmp_path: Path
) -> None:
    broker, tls, base = tls_setup
    wrong = "wrong-pass-91f3"
    gw = _gateway(tmp_path, broker, tls.ca, base, wrong, str(uuid.uuid4()))
    try:
        gw.start()
        await asyncio.to_thread(
            wait_until,
            lambda: "mqtt" in gw.log_path.read_text() and "uth" in gw.log_path.read_text(),
            "the refusal in the log",
        )
        response = await asyncio.to_thread(httpx.get, f"{gw.url}/readyz", timeout=10)
        assert response.status_code == 503 and response.json()["mqtt"] is False
        text = gw.log_path.read_text()
        assert wrong not in text and GATEWAY_PASSWORD not in text
    finally:
        gw.kill()


@pytest.mark.parametrize("which", ["other_ca", "garbage", "missing"])
def test_bad_certificate_refuses_to_start_with_one_line(
    tls_setup: Any, tmp_path: Path, which: str
) -> None:
    broker, tls, base = tls_setup
    if which == "other_ca":
        ca = tls.other_ca  # loads fine; the broker's certificate does not verify against it
    elif which == "garbage":
        ca = tmp_path / "garbage.pem"
        ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    else:
        ca = tmp_path / "nowhere.pem"
    gw = _gateway(tmp_path, broker, ca, base, GATEWAY_PASSWORD, str(uuid.uuid4()))
    result = subprocess.run(
        [procs.find_program("citypack") or "citypack", "gateway", "run", "--config",
         str(gw.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("citypack: error")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "certificate" in errors[0].lower() or "tls" in errors[0].lower(), errors[0]
    assert "Traceback" not in result.stderr
    assert GATEWAY_PASSWORD not in result.stderr + result.stdout
