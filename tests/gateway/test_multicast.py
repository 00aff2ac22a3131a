"""Group commands end to end: HTTP API → gateway → ChirpStack gRPC (the emulator's) → one
multicast frame on the air → 30 CPython lamps (tools/bench/street_lamps.py) that verify it with
keys they derive from the McKey → their command_result uplinks → every member ``applied``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError
from protocol import codec
from protocol.lorawan.data import DataFrame
from tests.gateway.harness import FullDisk, wait_for
from tests.helpers.procs import Broker
from tools.bench.group_override import GROUP, Street, street
from tools.bench.street_lamps import McSession

TOKEN = "street-test-token"


@pytest.fixture
async def rig(mosquitto_broker: Broker, tmp_path: Path) -> AsyncIterator[tuple[Street, Any]]:
    async with street(tmp_path, mosquitto_broker.url, api_token=TOKEN) as running:
        base_url = f"http://127.0.0.1:{running.gateway.api_port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as http:
            yield running, http


def multicast_lines(rig: Street) -> list[dict[str, Any]]:
    return [x for x in rig.air() if x["direction"] == "down" and x["dev_eui"] == ""]


async def test_street_override_is_one_frame_and_every_lamp_applies(
    rig: tuple[Street, Any],
) -> None:
    street_, http = rig
    street_.give_group_key(GROUP)
    groups = (await http.get("/api/v1/groups")).json()
    assert groups["group_by"] == "group"
    assert groups["groups"] == [
        {"group": GROUP, "members": sorted(lamp.dev_eui for lamp in street_.lamps)}
    ]
    response = await http.post(
        f"/api/v1/groups/{GROUP}/commands",
        json={"message": "lamp_override", "fields": {"dim_level": 20, "duration_s": 600}},
    )
    assert response.status_code == 202, response.text
    command = response.json()
    assert command["state"] == "queued" and command["f_cnt"] == 0
    assert command["counts"] == {"queued": 30, "applied": 0, "failed": 0, "expired": 0}
    assert len(command["members"]) == 30

    async def state() -> dict[str, Any] | None:
        got = (await http.get(f"/api/v1/groups/{GROUP}/commands/{command['id']}")).json()
        return got if got["state"] != "queued" else None

    done = await wait_for(state, "every member's result", timeout_s=60)
    assert done["state"] == "applied"
    assert {m["state"] for m in done["members"]} == {"applied"}
    assert street_.applied() == 30
    for lamp in street_.lamps:
        applied = [a for a in lamp.applied if a["message"] == "lamp_override"]
        assert applied == [
            {
                "message": "lamp_override",
                "command_id": command["command_id"],
                "dim_level": 20,
                "duration_s": 600,
                "fade_s": 0,
                "resume_schedule": False,
            }
        ]
    # one frame on the air for the street, none per lamp
    lines = multicast_lines(street_)
    assert len(lines) == 1
    assert street_.command_frames(120) == lines
    # it decodes and verifies with session keys derived from the McKey, independently
    keys = street_.gateway.multicast.keys(GROUP)  # type: ignore[union-attr]
    phy = bytes.fromhex(lines[0]["phy"])
    assert DataFrame.from_bytes(phy).dev_addr.value == keys.mc_addr
    opened = McSession(keys.mc_addr, keys.mc_key).open(phy)
    assert opened is not None
    f_cnt, f_port, data = opened
    assert (f_cnt, f_port) == (0, 120)
    assert codec.decode(f_port, data, "down").fields["command_id"] == command["command_id"]
    assert McSession(keys.mc_addr, bytes(16)).open(phy) is None
    # the McKey never leaves the gateway through the API
    listed = (await http.get(f"/api/v1/groups/{GROUP}/commands")).text
    assert keys.mc_key.hex() not in listed and keys.mc_app_s_key.hex() not in listed


async def test_a_refusing_member_fails_and_the_next_command_moves_on(
    rig: tuple[Street, Any],
) -> None:
    street_, http = rig
    street_.give_group_key(GROUP)
    street_.lamps[0].outcome = "rejected"
    first = (
        await http.post(
            f"/api/v1/groups/{GROUP}/commands",
            json={"message": "lamp_override", "fields": {"dim_level": 0, "duration_s": 60}},
        )
    ).json()

    async def finished() -> dict[str, Any] | None:
        got = (await http.get(f"/api/v1/groups/{GROUP}/commands/{first['id']}")).json()
        return got if got["state"] != "queued" else None

    done = await wait_for(finished, "results", timeout_s=60)
    assert done["state"] == "failed"
    assert done["counts"] == {"queued": 0, "applied": 29, "failed": 1, "expired": 0}
    refused = next(m for m in done["members"] if m["dev_eui"] == street_.lamps[0].dev_eui)
    assert refused == {**refused, "state": "failed", "error": "the node answered rejected"}
    second = (
        await http.post(
            f"/api/v1/groups/{GROUP}/commands",
            json={"message": "lamp_override", "fields": {"dim_level": 50, "duration_s": 60}},
        )
    ).json()
    assert second["f_cnt"] == 1 and second["command_id"] != first["command_id"]
    # a unicast command to a member does not reuse the group's command_id
    unicast = street_.gateway.submit_command(
        street_.lamps[1].dev_eui, "lamp_override", {"dim_level": 1, "duration_s": 1}
    )
    assert unicast.command_id not in (first["command_id"], second["command_id"])


async def test_group_command_errors(rig: tuple[Street, Any]) -> None:
    street_, http = rig
    cases = [
        ("nowhere", {"message": "lamp_override", "fields": {"dim_level": 1}}, 404, "not_found"),
        (GROUP, {"message": "bin_status", "fields": {}}, 422, "command_rejected"),
        (GROUP, {"message": "bin_config", "fields": {}}, 404, "not_found"),  # no bins there
        (GROUP, {"message": "lamp_override", "fields": {"dim_level": 101}}, 422, None),
        (GROUP, {"message": "nope"}, 422, "command_rejected"),
        (GROUP, {"message": "lamp_override", "extra": 1}, 422, "invalid_request"),
    ]
    for group, body, status, code in cases:
        response = await http.post(f"/api/v1/groups/{group}/commands", json=body)
        assert response.status_code == status, (body, response.text)
        if code is not None:
            assert response.json()["error"] == code
    assert multicast_lines(street_) == []  # nothing refused went on the air
    missing = await http.get(f"/api/v1/groups/{GROUP}/commands/not-an-id")
    assert missing.status_code == 404
    anonymous = await http.post(
        f"/api/v1/groups/{GROUP}/commands",
        json={"message": "reboot"},
        headers={"Authorization": "Bearer wrong"},
    )
    assert anonymous.status_code == 401


async def test_a_group_command_the_store_cannot_keep_goes_nowhere(
    rig: tuple[Street, Any],
) -> None:
    """A full disk (the store's write raises what SQLite raises then, inside the real commit):
    a group command is refused (503 ``store_unavailable``) before its frame is enqueued, so
    nothing goes on the air. When its own commit was the first to fail, its rows were staged
    already: they are written as failed ("not enqueued") once the store has room, never left
    queued; when the store was failing already, nothing of it is written at all."""
    street_, http = rig
    disk = FullDisk(street_.gateway)
    body = {"message": "lamp_override", "fields": {"dim_level": 20, "duration_s": 600}}
    disk.once = True
    answer = await http.post(f"/api/v1/groups/{GROUP}/commands", json=body)
    assert answer.status_code == 503, answer.text
    assert "not committed" in answer.json()["message"]
    disk.full = True
    answer = await http.post(f"/api/v1/groups/{GROUP}/commands", json=body)
    assert answer.status_code == 503, answer.text
    assert answer.json()["message"] == "the store is unavailable; try again"
    assert multicast_lines(street_) == []  # nothing went on the air
    disk.full = False
    await wait_for(lambda: street_.gateway.store_ok, "the store commits again", 15)
    await street_.gateway.flush()
    commands = (await http.get(f"/api/v1/groups/{GROUP}/commands")).json()["commands"]
    assert len(commands) == 1, commands  # the first, as failed; the second not at all
    assert commands[0]["counts"] == {"queued": 0, "applied": 0, "failed": 30, "expired": 0}
    assert {m["error"] for m in commands[0]["members"]} == {
        "not enqueued: the store could not commit it"
    }
    street_.give_group_key(GROUP)
    answer = await http.post(f"/api/v1/groups/{GROUP}/commands", json=body)
    assert answer.status_code == 202, answer.text  # and the next one goes out as usual
    await wait_for(lambda: len(multicast_lines(street_)) == 1, "the frame on the air")


def test_multicast_config_section(tmp_path: Path) -> None:
    base = {"mqtt": {"url": "mqtt://127.0.0.1:1883", "application_id": "a"}}
    cfg = parse_config(base, environ={})
    assert cfg.multicast.enabled is False and cfg.multicast.frequency_hz == 869_525_000
    with pytest.raises(ConfigError, match=r"needs chirpstack\.api"):
        parse_config({**base, "multicast": {"enabled": True, "key_file": "k"}}, environ={})
    base["chirpstack"] = {"api": "127.0.0.1:8080", "api_token_file": "t"}
    with pytest.raises(ConfigError, match=r"multicast\.key_file: required"):
        parse_config({**base, "multicast": {"enabled": True}}, environ={})
    good = {"enabled": True, "key_file": "k"}
    assert parse_config({**base, "multicast": good}, environ={}).multicast.enabled
    for bad, words in (
        ({"group_by": "district"}, "group_by"),
        ({"dr": 9}, "frequency_hz/dr"),
        ({"frequency_hz": 915_000_000}, "frequency_hz/dr"),
    ):
        with pytest.raises(ConfigError, match=words):
            parse_config({**base, "multicast": {**good, **bad}}, environ={})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({**base, "multicast": {"mc_key": "00"}}, environ={})
    env = {"CITYPACK_MULTICAST_GROUP_BY": "street"}
    assert parse_config(base, environ=env).multicast.group_by == "street"


async def test_group_routes_say_multicast_is_off(tmp_path: Path) -> None:
    from gateway.api import create_app
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
            for method, path, body in (
                ("GET", "/api/v1/groups", None),
                ("POST", "/api/v1/groups/elm/commands", {"message": "reboot"}),
                ("GET", "/api/v1/groups/elm/commands", None),
                ("GET", "/api/v1/groups/elm/commands/x", None),
            ):
                response = await http.request(method, path, json=body)
                assert response.status_code == 409, (path, response.text)
                assert response.json()["error"] == "multicast_disabled"
    finally:
        await gateway.close()


def test_preflight_reads_the_multicast_secrets(tmp_path: Path) -> None:
    from gateway.errors import GatewayError
    from gateway.preflight import preflight

    token, key = tmp_path / "cs-token", tmp_path / "mc-key"
    token.write_text("chirpstack-token\n")
    path = tmp_path / "gateway.toml"

    def write(key_file: Path) -> Path:
        path.write_text(
            '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\napplication_id = "app"\n'
            f'[store]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n'
            f'[chirpstack]\napi = "127.0.0.1:8080"\napi_token_file = "{token}"\n'
            f'[multicast]\nenabled = true\nkey_file = "{key_file}"\n'
        )
        return path

    for body, words in ((None, "cannot read secret file"), ("not hex", "32 hex digits")):
        if body is not None:
            key.write_text(body + "\n")
        with pytest.raises(GatewayError, match=words) as info:
            preflight(write(key), environ={})
        assert "\n" not in str(info.value)
    key.write_text("00112233445566778899aabbccddeeff\n")
    assert preflight(write(key), environ={}).config.multicast.enabled
