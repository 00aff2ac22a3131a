"""The HTTP API's security (issue 8): every route but health and metrics needs the bearer token,
tokens are compared with ``hmac.compare_digest``, and commands are checked against the kind of
the device they are sent to.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount, Route

from gateway.service import Gateway
from tests.security.conftest import BIN, LAMP, TOKEN

PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
# the dashboard page and its static files carry no data; it reads everything through /api/v1
DASHBOARD_ASSETS = {"/", "/static"}
# the Swagger UI page and its files (gateway/api/docs.py): no data, it reads /openapi.json
DOCS_ASSETS = {"/docs", "/docs/static"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLE = {"dev_eui": BIN, "command_id": "00000000-0000-0000-0000-000000000000"}


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    spec = app.openapi()
    out = []
    for path, item in spec["paths"].items():
        for method in item:
            if method in ("get", "put", "post", "delete", "patch"):
                out.append((method.upper(), path))
    return out


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m.group(1), "x"), path)


async def test_every_route_but_health_and_metrics_needs_the_token(
    gateway_app: tuple[Gateway, FastAPI],
) -> None:
    _, app = gateway_app
    operations = _operations(app)
    paths = {p for _, p in operations}
    assert "/api/v1/devices/{dev_eui}/commands" in paths and len(paths) >= 10
    # nothing outside /api/v1 but the health routes, the schema and the dashboard's own assets
    routed = set()
    for route in app.routes:
        if isinstance(route, Route | Mount):
            routed.add(route.path)
    for path in routed:
        assert path.startswith("/api/v1/") or path in PUBLIC | DASHBOARD_ASSETS | DOCS_ASSETS | {
            "/docs/oauth2-redirect"
        }, f"unexpected public route {path}"
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN.upper()}"},
        {"Authorization": f"Bearer {TOKEN[1:]}"},
        {"Authorization": f"{TOKEN}"},
        {"X-Api-Token": TOKEN},
    ]
    async with _client(app) as client:
        for method, path in operations:
            url = _fill(path)
            if path in PUBLIC:
                response = await client.request(method, url)
                assert response.status_code in (200, 503), (method, path)  # readyz: no MQTT here
                continue
            assert path.startswith("/api/v1/"), path
            for headers in bad_headers:
                response = await client.request(method, url, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers, response.text)
                body = response.json()
                assert body["error"] == "unauthorized" and body["message"]
                assert TOKEN not in response.text
            if path == "/api/v1/stream":
                continue  # an endless event stream; the 401s above are what matters
            response = await client.request(method, url, headers=AUTH, json={"kind": "bin"})
            assert response.status_code != 401, (method, path)


async def test_no_token_configured_refuses_everyone(tmp_path: Any) -> None:
    from gateway.api import create_app
    from tests.security.conftest import new_gateway, seed

    gateway = new_gateway(tmp_path / "n.db", token=None)
    await seed(gateway)
    try:
        async with _client(create_app(gateway)) as client:
            for headers in (
                {},
                AUTH,
                {"Authorization": "Bearer "},
                {"Authorization": "Bearer None"},
            ):
                response = await client.get("/api/v1/devices", headers=headers)
                assert (
                    response.status_code == 401 and "not configured" in response.json()["message"]
                )
    finally:
        await gateway.close()


async def test_tokens_are_compared_with_compare_digest(
    gateway_app: tuple[Gateway, FastAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behaviour, not timing: every token check of the API and the dashboard goes through
    ``hmac.compare_digest`` with the presented and the configured token."""
    _, app = gateway_app
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with _client(app) as client:
        for path in ("/api/v1/devices", "/api/v1/web/config", "/api/v1/stats"):
            calls.clear()
            wrong = await client.get(path, headers={"Authorization": "Bearer guess"})
            assert wrong.status_code == 401
            assert (b"guess", TOKEN.encode()) in calls, path
            calls.clear()
            right = await client.get(path, headers=AUTH)
            assert right.status_code == 200
            assert (TOKEN.encode(), TOKEN.encode()) in calls, path


async def test_commands_are_checked_against_the_device_kind(
    gateway_app: tuple[Gateway, FastAPI],
) -> None:
    gateway, app = gateway_app
    lamp_only = {"message": "lamp_override", "fields": {"dim_level": 50}}
    bin_only = {"message": "bin_config", "fields": {"config_version": 2}}
    async with _client(app) as client:
        to_bin = await client.post(f"/api/v1/devices/{BIN}/commands", json=lamp_only, headers=AUTH)
        assert to_bin.status_code == 422 and to_bin.json()["error"] == "command_rejected"
        to_lamp = await client.post(f"/api/v1/devices/{LAMP}/commands", json=bin_only, headers=AUTH)
        assert to_lamp.status_code == 422 and to_lamp.json()["error"] == "command_rejected"
        uplink = {"message": "bin_status", "fields": {}}
        up = await client.post(f"/api/v1/devices/{BIN}/commands", json=uplink, headers=AUTH)
        assert up.status_code == 422  # an uplink message is no command
        assert not gateway.commands.for_device(BIN) and not gateway.commands.for_device(LAMP)
        ok = await client.post(f"/api/v1/devices/{LAMP}/commands", json=lamp_only, headers=AUTH)
        assert ok.status_code == 202 and ok.json()["message"] == "lamp_override"
        ok = await client.post(f"/api/v1/devices/{BIN}/commands", json=bin_only, headers=AUTH)
        assert ok.status_code == 202
        assert [c.message for c in gateway.commands.for_device(BIN)] == ["bin_config"]


async def test_commands_over_mqtt_set_topic_are_checked_too(
    gateway_app: tuple[Gateway, FastAPI],
) -> None:
    gateway, _ = gateway_app
    gateway.config = gateway.config.replace("publish", accept_set=True)
    topic = f"{gateway.config.publish.base_topic}/devices/{BIN}/set"
    await gateway.process(topic, b'{"message": "lamp_override", "fields": {"dim_level": 10}}')
    assert gateway.commands.for_device(BIN) == []


async def test_openapi_declares_the_bearer_scheme_on_every_protected_operation(
    gateway_app: tuple[Gateway, FastAPI],
) -> None:
    """Generated clients send the token only where the schema asks for it (issue 15.8)."""
    _, app = gateway_app
    spec = app.openapi()
    schemes = spec["components"]["securitySchemes"]
    assert len(schemes) == 1
    (name, scheme), *_ = schemes.items()
    assert scheme["type"] == "http" and scheme["scheme"].lower() == "bearer"
    for method, path in _operations(app):
        operation = spec["paths"][path][method.lower()]
        declared = operation.get("security", [])
        if path in PUBLIC:
            assert declared == [], (method, path)
        else:
            assert {name: []} in declared, (method, path)
    # the scheme is declared, not enforced by FastAPI: no token is still our 401 and error JSON
    async with _client(app) as client:
        response = await client.get("/api/v1/devices")
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "message": "missing or wrong bearer token",
    }
