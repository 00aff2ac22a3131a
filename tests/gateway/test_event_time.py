"""The gateway's rules on ChirpStack's clock, and events it accepts and ignores; no broker: the
gateway's own processing path (``Gateway.process`` then ``flush``) on a SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.metrics import read
from gateway.service import Gateway
from protocol import codec
from tests.gateway import events as ev

APP = "0b8e3c2a-7d61-4f0e-9b8e-5c1d2a3f4e5d"
BIN = "a84041000181c0a1"
LAMP = "a84041000181d0b1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_772_446_542.0

    def __call__(self) -> float:
        return self.now


async def _gateway(tmp_path: Path, clock: Clock, **sections: Any) -> Gateway:
    doc: dict[str, Any] = {
        "mqtt": {"url": "mqtt://127.0.0.1:1", "application_id": APP},
        "store": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        **sections,
    }
    gateway = Gateway(parse_config(doc, environ={}), clock=clock)
    await gateway.open()
    gateway.upsert_device(BIN, {"kind": "bin"})
    gateway.upsert_device(LAMP, {"kind": "lamp"})
    await gateway.flush()
    return gateway


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def gateway(tmp_path: Path, clock: Clock) -> AsyncIterator[Gateway]:
    gw = await _gateway(tmp_path, clock)
    yield gw
    await gw.close()


async def _up(
    gw: Gateway, dev_eui: str, f_cnt: int, message: str, fields: dict[str, Any], **kw: Any
) -> None:
    f_port, data = codec.encode(message, fields)
    doc = ev.up(APP, dev_eui, f_cnt=f_cnt, f_port=f_port, data=data, **kw)
    await gw.process(ev.topic(APP, dev_eui, "up"), ev.dumps(doc))
    await gw.flush()


def _bin_status(fill: int) -> dict[str, Any]:
    return {"fill_percent": fill, "temperature_c": 18, "battery_percent": 85}


async def test_fill_rate_uses_chirpstack_time_not_arrival(gateway: Gateway, clock: Clock) -> None:
    # a backlog after a restart: readings taken an hour apart arrive 0.6 s apart
    for i, fill in enumerate((20, 30, 40)):
        await _up(
            gateway,
            BIN,
            i + 1,
            "bin_status",
            _bin_status(fill),
            time=f"2026-03-02T{10 + i:02d}:00:00.000000+00:00",
        )
        clock.now += 0.6
    derived = gateway.devices[BIN].derived
    assert derived["fill_rate_percent_per_h"] == 10.0
    # 40 % at 12:00, 10 %/h, full at 80 %: 16:00 on ChirpStack's clock
    assert derived["forecast_full_at"] == 1_772_467_200  # 2026-03-02T16:00:00Z


async def test_without_a_time_the_receive_time_counts(gateway: Gateway, clock: Clock) -> None:
    for i, fill in enumerate((20, 25)):
        await _up(gateway, BIN, i + 1, "bin_status", _bin_status(fill), time="")
        clock.now += 1800  # half an hour between arrivals
    assert gateway.devices[BIN].derived["fill_rate_percent_per_h"] == 10.0


async def test_day_burner_on_chirpstack_time(tmp_path: Path, clock: Clock) -> None:
    # the gateway's clock says night (02:00 UTC); the lamp's report was taken at noon
    clock.now = 1_772_416_800.0  # 2026-03-02T02:00:00Z
    gw = await _gateway(tmp_path, clock, lamps={"day_start_hour_utc": 10, "day_end_hour_utc": 14})
    try:
        fields = {"dim_level": 70, "active_power_w": 42}
        await _up(gw, LAMP, 1, "lamp_status", fields, time="2026-03-02T12:00:00+00:00")
        assert gw.devices[LAMP].derived["day_burner"] is True
        await _up(gw, LAMP, 2, "lamp_status", fields, time="2026-03-02T22:00:00+00:00")
        assert gw.devices[LAMP].derived["day_burner"] is False
    finally:
        await gw.close()


async def test_protobuf_integration_event_is_accepted_and_ignored(
    tmp_path: Path, clock: Clock
) -> None:
    gw = await _gateway(
        tmp_path,
        clock,
        mqtt={"url": "mqtt://127.0.0.1:1", "application_id": APP, "marshaler": "protobuf"},
    )
    try:
        # a pre-4.15 IntegrationEvent (field 2, integration_name "test"): not decoded at all
        payload = b"\x12\x04test"
        await gw.process(ev.topic(APP, BIN, "integration"), payload)
        await gw.flush()
        assert read(gw.metrics.events, event="integration") == 1
        assert read(gw.metrics.uplinks, outcome="invalid_event") == 0
        assert await gw.store.dead_letters() == []
    finally:
        await gw.close()
