"""The ``up`` fast path of :func:`gateway.chirpstack.parse_event` against the general path: for
the reference example and every single-field mutation of it (wrong types, absent, null, out of
range, snake_case, other devEui spellings), both give the same event or the same error."""

from __future__ import annotations

import copy
import json
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


def test_fast_path_takes_the_usual_shape() -> None:
    doc = json.loads(ev.REFERENCE_UP)
    fast = cs._up_fast(doc, ev.REFERENCE_APP, ev.REFERENCE_DEV)
    assert fast is not None and fast.f_cnt == 1287 and fast.rx_info[0].latitude == 52.3702


def test_fast_path_equals_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = list(_cases())
    assert len(cases) > 2000
    fast = [_outcome(payload) for payload in cases]
    monkeypatch.setattr(cs, "_up_fast", lambda *args: None)
    general = [_outcome(payload) for payload in cases]
    mismatches = [
        (payload, a, b)
        for payload, a, b in zip(cases, fast, general, strict=True)
        if _exact(a) != _exact(b)
    ]
    assert not mismatches, mismatches[:3]
    assert any(isinstance(o, tuple) for o in general)  # errors were exercised
    assert sum(isinstance(o, cs.UplinkEvent) for o in general) > 500
