"""Reading the whole fleet through the API at city scale: ``GET /api/v1/devices``
(gateway/api/devices.py) is matched and encoded a chunk at a time with the event loop running
between, each device as ``to_json`` gives it, and reading the fleet does not unpack what
``Device.compact`` packed; ``GET /api/v1/collection`` (gateway/api/bins.py) is made a chunk
at a time too, is the list ``collection_list`` makes, and is encoded in chunks in each of its
formats; ``GET /api/v1/stats`` counts the fleet a chunk at a time. No broker: the gateway
is opened on a SQLite file and its app called in process."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.responses import JSONResponse

from gateway.api import bins as bins_api
from gateway.api import devices as devices_api
from gateway.api import stats as stats_api
from gateway.api.app import create_app
from gateway.config import parse_config
from gateway.rules import bins as bin_rules
from gateway.service import Gateway
from gateway.store.base import _UNPACKED, Device
from gateway.turns import in_turns

TOKEN = "listing-test-token-0123456789abcdef"


@asynccontextmanager
async def _opened(tmp_path: Path, **sections: Any) -> AsyncIterator[Gateway]:
    doc = {
        "mqtt": {"url": "mqtt://127.0.0.1:1", "application_id": "app"},
        "store": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        **sections,
    }
    gw = Gateway(parse_config(doc, environ={}), api_token=TOKEN)
    await gw.open()
    try:
        yield gw
    finally:
        await gw.close()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with _opened(tmp_path) as gw:
        yield gw


def _fleet(gateway: Gateway, count: int) -> list[Device]:
    made = []
    for i in range(count):
        device = gateway.upsert_device(
            f"a8404100000{(count - i):05x}",  # registered in the reverse of devEUI order
            {"kind": "lamp" if i % 2 else "bin", "name": f"Gade {i} ø", "street": "Vestergade"},
        )
        device.neighbours = [f"a84041000000{i:04x}"]
        device.reported = {"fill_percent": i, "battery_percent": 90}
        device.derived = {"_samples": [1, 2], "fill_forecast_h": 12.5 + i}
        device.desired_version, device.reported_version = 3, 3 if i % 3 else 2
        made.append(device)
    return made


async def _get(gateway: Gateway, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://gateway",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        return await client.get(path)


async def _get_beside(gateway: Gateway, path: str, turns: list[str]) -> httpx.Response:
    """:func:`_get` while another task takes every turn of the loop it is given, each
    recorded in ``turns`` as "other"."""

    async def other() -> None:
        while True:
            await asyncio.sleep(0)
            turns.append("other")

    task = asyncio.create_task(other())
    try:
        return await _get(gateway, path)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _positions(turns: list[str], what: str) -> list[int]:
    """Where ``what`` was recorded in ``turns``."""
    return [i for i, recorded in enumerate(turns) if recorded == what]


def _loop_ran_between(positions: list[int]) -> list[bool]:
    """For each two consecutive ``positions``, whether another turn was recorded between."""
    return [b != a + 1 for a, b in itertools.pairwise(positions)]


def _record_collection_rows(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The API's chunks made 3 devices: each call of ``collection_rows`` recorded as "rows"
    in the list returned (for :func:`_get_beside` to record the other turns in)."""
    monkeypatch.setattr(bins_api, "_CHUNK", 3)
    turns: list[str] = []
    real = bin_rules.collection_rows

    def rows(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        turns.append("rows")
        return real(*args, **kwargs)

    monkeypatch.setattr(bin_rules, "collection_rows", rows)
    return turns


async def test_each_listed_device_is_its_own_document(gateway: Gateway) -> None:
    made = _fleet(gateway, 7)
    made[2].decommissioned_at = 5.0
    made[4].compact()  # listed from its packed fields
    answer = await _get(gateway, "/api/v1/devices?limit=100")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    listing = answer.json()
    expected = sorted((d for d in made if d.decommissioned_at is None), key=lambda d: d.dev_eui)
    assert listing["count"] == 6
    assert [d["dev_eui"] for d in listing["devices"]] == [d.dev_eui for d in expected]
    for got, device in zip(listing["devices"], expected, strict=True):
        # what GET /devices/{devEui} answers: to_json through the standard library
        assert got == json.loads(json.dumps(device.to_json()))
    assert listing["devices"][0]["derived"] == {"fill_forecast_h": 18.5}  # no "_" scratch
    page = (await _get(gateway, "/api/v1/devices?kind=lamp&limit=2&offset=1")).json()
    lamps = [d.dev_eui for d in expected if d.kind == "lamp"]
    assert page["count"] == len(lamps) and [d["dev_eui"] for d in page["devices"]] == lamps[1:3]
    gone = (await _get(gateway, "/api/v1/devices?decommissioned=true")).json()
    assert [d["dev_eui"] for d in gone["devices"]] == [made[2].dev_eui]


def test_a_lone_surrogate_is_escaped_not_an_error() -> None:
    """The API refuses one in a name (422), but a device's text is encoded whatever it holds:
    as ``json_dumps`` does (gateway/store/base.py), through ``json`` as an escape."""
    device = Device(dev_eui="a840410000000001", name="half \ud800 a surrogate")
    assert json.loads(device.json_bytes()) == json.loads(json.dumps(device.to_json()))


async def test_listing_the_fleet_leaves_packed_devices_packed(gateway: Gateway) -> None:
    made = _fleet(gateway, 4)
    for device in made:
        device.compact()
    _UNPACKED.clear()
    raw = Device.__dict__["reported"].slot.__get__  # the slot behind the packing attribute
    listing = (await _get(gateway, "/api/v1/devices")).json()
    assert [d["reported"]["fill_percent"] for d in listing["devices"]] == [3, 2, 1, 0]
    assert all(type(raw(device)) is tuple for device in made)
    assert not _UNPACKED  # nothing to pack again: no device's memory grew


async def test_the_loop_runs_while_a_large_listing_is_made(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 3 over 20 devices: the matching and the encoding each give the loop turns;
    with one pass (as before: the whole fleet held the loop 12.6 s at 100,000 devices)
    another task would get none while the page is made."""
    _fleet(gateway, 20)
    monkeypatch.setattr(devices_api, "_MATCH_CHUNK", 3)
    monkeypatch.setattr(devices_api, "_ENCODE_CHUNK", 3)
    turns: list[str] = []
    real = Device.json_bytes

    def encoding(device: Device) -> bytes:
        turns.append("encode")
        return real(device)

    monkeypatch.setattr(Device, "json_bytes", encoding)
    body: dict[str, Any] = (await _get_beside(gateway, "/api/v1/devices", turns)).json()
    assert body["count"] == 20 and len(body["devices"]) == 20
    # 7 chunks of encoding: the other task ran between each and the next
    assert sum(_loop_ran_between(_positions(turns, "encode"))) >= 6


async def test_the_collection_list_is_made_in_chunks_with_the_loop_running(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _fleet(gateway, 20)  # bins are the even ones
    now = gateway.clock()
    for i, device in enumerate(made):
        # full, forecast full within the horizon, or neither; ties in fill order by devEUI
        fill = (95, 60, 30)[i % 3] if i < 18 else 95
        device.derived = {"fill_percent": fill, "forecast_full_at": now + 3600.0 * (i % 3)}
    expected = bin_rules.collection_list(made, gateway.config.bins, now, horizon_h=1.5)
    assert {r["reason"] for r in expected} == {"full", "forecast"}
    turns = _record_collection_rows(monkeypatch)
    answer = await _get_beside(gateway, "/api/v1/collection?horizon_h=1.5", turns)
    assert answer.json() == {"count": len(expected), "bins": expected}
    calls = _positions(turns, "rows")
    assert len(calls) == 7  # 20 devices, 3 at a time
    assert all(_loop_ran_between(calls))


async def test_the_route_is_planned_from_the_fleet_looked_at_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /api/v1/collection/route`` takes its bins from the same chunked look at the fleet
    (gateway/route_api.py), then plans off the loop."""
    routes = {"depot_latitude": 56.15, "depot_longitude": 10.2, "trucks": 1}
    async with _opened(tmp_path, routes=routes) as gw:
        made = _fleet(gw, 20)
        for i, device in enumerate(made):
            device.latitude, device.longitude = 56.151 + i / 1000, 10.2
            device.derived = {"fill_percent": 95 if i % 4 == 0 else 10}
        turns = _record_collection_rows(monkeypatch)
        answer = await _get_beside(gw, "/api/v1/collection/route", turns)
        assert answer.status_code == 200, answer.text
        routed = sorted(s["dev_eui"] for r in answer.json()["routes"] for s in r["stops"])
        assert routed == sorted(d.dev_eui for i, d in enumerate(made) if i % 4 == 0)
        calls = _positions(turns, "rows")
        assert len(calls) == 8  # 7 chunks of the fleet, then route_stops on the 5 listed
        assert all(_loop_ran_between(calls[:7]))


async def test_stats_count_the_fleet_in_chunks_with_the_loop_running(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /api/v1/stats`` (gateway/api/stats.py) counts devices 3 at a time here, with
    the loop running between: the same counts a single pass gives."""
    made = _fleet(gateway, 20)
    for i, device in enumerate(made):
        device.availability = ("online", "offline", "unknown")[i % 3]
    made[5].decommissioned_at = 7.0  # counted too, as it always was
    gateway.metrics.uplinks.labels("duplicate").inc(4)
    monkeypatch.setattr(stats_api, "_CHUNK", 3)
    turns: list[str] = []

    async def chunks(items: Any, size: int) -> AsyncIterator[Any]:
        async for part in in_turns(items, size):
            turns.append("chunk")
            yield part

    monkeypatch.setattr(stats_api, "in_turns", chunks)
    body = (await _get_beside(gateway, "/api/v1/stats", turns)).json()
    kinds = [d.kind for d in made]
    availability = [d.availability for d in made]
    assert body["devices"] == 20
    assert body["devices_by_kind"] == {"bin": kinds.count("bin"), "lamp": kinds.count("lamp")}
    assert body["devices_by_availability"] == {a: availability.count(a) for a in set(availability)}
    assert body["devices_by_kind_and_availability"]["lamp"] == {
        a: sum(1 for d in made if d.kind == "lamp" and d.availability == a)
        for a in set(availability)
    }
    assert body["uplinks_since_start"] == {
        "processed": 0,
        "duplicate": 4,
        "undecodable": 0,
        "invalid_event": 0,
    }
    calls = _positions(turns, "chunk")
    assert len(calls) == 7  # 20 devices, 3 at a time
    assert all(_loop_ran_between(calls))


@pytest.mark.parametrize("fmt", ["json", "csv", "geojson"])
async def test_the_collection_is_encoded_in_chunks_as_it_is_sent(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """Each format's body is what encoding the whole list in one go gives (``JSONResponse``'s
    rendering, ``collection_csv``, ``collection_geojson``), made 3 rows a piece with the loop
    running between the pieces."""
    made = _fleet(gateway, 20)
    now = gateway.clock()
    for i, device in enumerate(made):
        device.derived = {"fill_percent": 95 - i, "forecast_full_at": now + 60.0 * i}
    made[0].name = 'Gade "0" =SUM(A1)'  # quoted and formula-like text survive the chunking
    expected = bin_rules.collection_list(made, gateway.config.bins, now, horizon_h=1.0)
    assert len(expected) == 10  # every bin: full, or forecast full within the hour
    monkeypatch.setattr(bins_api, "_ENCODE_CHUNK", 3)
    turns: list[str] = []
    csv_text, json_bytes = bin_rules.collection_csv, bins_api._json

    def rows_csv(rows: Any, *, header: bool = True) -> str:
        turns.append("encode")
        return csv_text(rows, header=header)

    def row_json(doc: dict[str, Any]) -> bytes:
        turns.append("encode")
        return json_bytes(doc)

    monkeypatch.setattr(bin_rules, "collection_csv", rows_csv)
    monkeypatch.setattr(bins_api, "_json", row_json)
    answer = await _get_beside(gateway, f"/api/v1/collection?horizon_h=1&format={fmt}", turns)
    assert answer.status_code == 200
    if fmt == "csv":
        assert answer.headers["content-type"].startswith("text/csv")
        assert answer.text == csv_text(expected)
    else:
        whole = (
            {"count": len(expected), "bins": expected}
            if fmt == "json"
            else bin_rules.collection_geojson(expected)
        )
        assert answer.content == JSONResponse(whole).body
    # 4 pieces of at most 3 rows: the other task ran between each two
    assert sum(_loop_ran_between(_positions(turns, "encode"))) >= 3
