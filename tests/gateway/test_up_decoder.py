"""The one ``up`` decoder of :func:`gateway.chirpstack.parse_event` (msgspec, typed): for the
reference example and every single-field mutation of it (wrong types, absent, null, out of range,
snake_case, other devEui spellings) it gives an event or an :class:`InvalidEvent` naming the
field, never another exception; straight from JSON bytes and through a document (the
snake_case and protobuf route) it gives the same outcome."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import chirpstack as cs
from gateway.errors import InvalidEvent
from tests.gateway import events as ev

TOPIC = ev.topic(ev.REFERENCE_APP, ev.REFERENCE_DEV, "up")
_ABSENT = object()
VALUES: tuple[Any, ...] = (
    _ABSENT,
    None,
    "",
    "x",
    "AQLEAA==",
    "!!",
    "12",
    0,
    -1,
    15,
    16,
    255,
    256,
    2**32 - 1,
    2**32,
    1.0,
    1.5,
    True,
    False,
    [],
    [{}],
    {},
    {"a": "b"},
    {"a": 1},
    "2026-03-02T10:15:42Z",
    "2026-13-02T10:15:42Z",
    ev.REFERENCE_DEV,
    ev.REFERENCE_DEV.upper(),
    "70b3d57ed0051a2e",
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _mutated(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    if value is _ABSENT:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


def _outcome(payload: bytes) -> Any:
    try:
        return cs.parse_event(TOPIC, payload)
    except InvalidEvent as exc:
        return ("error", str(exc))


def _exact(outcome: Any) -> str:
    return repr(outcome)  # 1 == 1.0 and True == 1, but their reprs differ


def _cases() -> Iterator[bytes]:
    base = json.loads(ev.REFERENCE_UP)
    yield json.dumps(base).encode()
    up = ev.up(ev.REFERENCE_APP, ev.REFERENCE_DEV, f_cnt=3, f_port=10, data=b"\x01", gateways=3)
    yield json.dumps(up).encode()
    for doc in (base, up):
        for path in _paths(doc):
            for value in VALUES:
                yield json.dumps(_mutated(doc, path, value)).encode()
    snake = json.dumps(base).replace('"fCnt"', '"f_cnt"').replace('"devEui"', '"dev_eui"')
    yield snake.encode()


def test_the_usual_shape_takes_the_bytes_route() -> None:
    assert cs._SNAKE_KEY.search(ev.REFERENCE_UP.encode()) is None
    event = cs.parse_event(TOPIC, ev.REFERENCE_UP.encode())
    assert isinstance(event, cs.UplinkEvent)
    assert event.f_cnt == 1287 and event.rx_info[0].latitude == 52.3702


def test_every_mutation_gives_an_event_or_invalid_event() -> None:
    cases = list(_cases())
    assert len(cases) > 2000
    outcomes = [_outcome(payload) for payload in cases]  # anything else raises here
    errors = [o for o in outcomes if isinstance(o, tuple)]
    assert errors and sum(isinstance(o, cs.UplinkEvent) for o in outcomes) > 500
    # a wrong type or range names its field
    doc = json.loads(ev.REFERENCE_UP)
    for key, value in (("fCnt", "lots"), ("fPort", 256), ("dr", 16), ("adr", "maybe")):
        outcome = _outcome(json.dumps(_mutated(doc, (key,), value)).encode())
        assert isinstance(outcome, tuple) and outcome[1].startswith(f"{key}: "), outcome
    outcome = _outcome(json.dumps(_mutated(doc, ("rxInfo", 0, "rssi"), "loud")).encode())
    assert isinstance(outcome, tuple) and outcome[1].startswith("rxInfo[0].rssi: ")


def test_bytes_and_document_routes_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = list(_cases())
    direct = [_outcome(payload) for payload in cases]
    # every document through json.loads + msgspec.convert, as snake_case and protobuf go
    monkeypatch.setattr(cs, "_SNAKE_KEY", re.compile(rb""))
    converted = [_outcome(payload) for payload in cases]
    mismatches = [
        (payload, a, b)
        for payload, a, b in zip(cases, direct, converted, strict=True)
        if _exact(a) != _exact(b)
    ]
    assert not mismatches, mismatches[:3]


def test_signal_values_are_one_object_each_across_events() -> None:
    """Every device's twin keeps its last RSSI and SNR: equal values from different events
    are one object (issue 17)."""
    got = []
    for dev in ("70b3d57ed0051a01", "70b3d57ed0051a02"):
        doc = ev.up(ev.REFERENCE_APP, dev, f_cnt=1, f_port=10, data=b"\xa0", rssi=-117, snr=-7.25)
        event = cs.parse_event(ev.topic(ev.REFERENCE_APP, dev, "up"), ev.dumps(doc))
        assert isinstance(event, cs.UplinkEvent)
        got.append((event.best_rssi, event.best_snr))
    (rssi_1, snr_1), (rssi_2, snr_2) = got
    assert (rssi_1, snr_1) == (-117, -7.25)
    assert rssi_1 is rssi_2 and snr_1 is snr_2
