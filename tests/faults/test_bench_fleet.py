"""tools/bench/gateway_fleet.py's stream: what makes the pair's figure a city's (issue 16)."""

from __future__ import annotations

import json

import pytest

from tools.bench import gateway_fleet


def test_each_lap_reports_every_device_once_in_an_order_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gateway_fleet, "STREAM_DEVICES", 100)
    stream = gateway_fleet._stream("app", 300, first_f_cnt=13)
    laps = [stream[lap : lap + 100] for lap in range(0, 300, 100)]
    devices = []
    for number, lap in enumerate(laps):
        docs = [json.loads(payload) for _, payload in lap]
        names = [doc["deviceInfo"]["devEui"] for doc in docs]
        assert len(set(names)) == 100  # every device once a lap
        assert {doc["fCnt"] for doc in docs} == {13 + number}  # frame counters go on by lap
        devices.append(names)
    assert devices[0] != devices[1] != devices[2]
    # a shared subscription hands messages out in turn: the instance (position parity) that
    # gets a device's uplink changes from lap to lap for about half of the devices
    parity = [{name: index % 2 for index, name in enumerate(lap)} for lap in devices]
    moved = sum(parity[0][name] != parity[1][name] for name in parity[0])
    assert 30 <= moved <= 70
    # the same seed gives the same stream: rounds of the bench compare like with like
    again = gateway_fleet._stream("app", 300, first_f_cnt=13)
    assert [topic for topic, _ in again] == [topic for topic, _ in stream]
