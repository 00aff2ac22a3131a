"""gateway.rules.fill_history: the packed fill history gives the forecast the same points, and
the twin's JSON the same ``[[t, fill], ...]`` as the list it replaced; stored lists still read."""

from __future__ import annotations

import json
from array import array

from gateway.config import BinsConfig
from gateway.rules import bins
from gateway.rules import fill_history as history
from gateway.store.base import Device, device_from_row

T0 = 1_772_446_542


def _bin() -> Device:
    return Device(dev_eui="a840410000000001", kind="bin", registered=True)


def test_pack_points_and_plain_round_trip() -> None:
    pairs = [[T0, 10], [T0 + 900, 13], [T0 + 1800, 16.5]]
    packed = history.pack(pairs)
    assert type(packed) is history.Packed and len(packed) == 24  # 3 x (4 + 4) bytes: 16.5
    assert history.points(packed) == pairs
    assert history.plain(packed) == [[T0, 10], [T0 + 900, 13], [T0 + 1800, 16.5]]
    assert all(type(p[0]) is int for p in history.plain(packed))
    assert type(history.plain(packed)[0][1]) is int  # whole fills stay integers in JSON
    assert history.points([[1, 2], "junk", [3]]) == [[1, 2]]  # a stored list, as read back
    assert history.points(None) == []
    # what would not come back exactly stays doubles: a fill of 1/3, a fractional or negative
    # time, a time past 32 bits
    for odd in ([[T0, 1 / 3]], [[T0 + 0.5, 10]], [[-1, 10]], [[2**32, 10]]):
        kept = history.pack(odd)
        assert isinstance(kept, array) and history.points(kept) == odd
        assert history.plain(kept)[0][1] == (int(odd[0][1]) if odd[0][1] == 10 else 1 / 3)


def test_a_bin_keeps_a_packed_history_and_publishes_the_old_shape() -> None:
    device, cfg = _bin(), BinsConfig()
    for i in range(cfg.forecast_samples + 3):
        out = bins.apply_bin_status(device, {"fill_percent": 3 * i}, cfg, T0 + 900 * i)
        out.twin.apply(device)  # the rule is pure: the service makes its change
    samples = device.derived["_samples"]
    assert isinstance(samples, history.Packed)
    assert len(history.points(samples)) == cfg.forecast_samples
    twin = json.loads(device.twin_json())
    expected = [[T0 + 900 * i, 3 * i] for i in range(3, cfg.forecast_samples + 3)]
    assert twin["derived"]["_samples"] == expected
    assert twin["derived"]["fill_rate_percent_per_h"] == 12.0  # 3 % per 15 min
    assert "_samples" not in device.to_json()["derived"]


def test_a_stored_list_history_goes_on_packed() -> None:
    twin = {"derived": {"_samples": [[T0, 10], [T0 + 900, 13]], "fill_percent": 13}}
    device = device_from_row("a840410000000001", "bin", {"registered": True}, twin)
    out = bins.apply_bin_status(device, {"fill_percent": 16}, BinsConfig(), T0 + 1800)
    out.twin.apply(device)
    assert history.points(device.derived["_samples"]) == [
        [T0, 10],
        [T0 + 900, 13],
        [T0 + 1800, 16],
    ]
    assert device.derived["fill_rate_percent_per_h"] == 12.0


def test_the_one_call_pack_gives_the_same_bytes_as_the_checked_one() -> None:
    import random

    rng = random.Random(17)
    for _ in range(500):
        pairs = [
            [rng.choice([T0 + rng.randint(0, 10**6), 0, 2**32 - 1]), rng.randint(-(2**24), 2**24)]
            for _ in range(rng.randint(0, 12))
        ]
        packed = history.pack(pairs)
        times = array("I", [t for t, _ in pairs])
        small = all(0 <= f <= 255 for _, f in pairs)  # a byte a fill (PackedBytes)
        fills = array("B" if small else "f", [f for _, f in pairs])
        assert packed == times.tobytes() + fills.tobytes()
        assert type(packed) is (history.PackedBytes if small and pairs else history.Packed)
        assert history.points(packed) == pairs
    # an int fill past 2**24 is not exact in 32 bits: the checked path decides
    assert history.points(history.pack([[T0, 2**24 + 1]])) == [[T0, 2**24 + 1]]


def test_whole_percent_fills_take_a_byte_each_and_come_back_the_same() -> None:
    """The usual history (whole seconds, fills 0-255) in 5 bytes a point instead of 8: at
    100,000 bins 4.8 MB less (fill_history docstring, issue 17)."""
    import sys

    pairs = [[T0 + 900 * i, fill] for i, fill in enumerate([0, 1, 99, 100, 254, 255])]
    packed = history.pack(pairs)
    assert type(packed) is history.PackedBytes and isinstance(packed, history.Packed)
    assert len(packed) == 6 * (4 + 1)
    assert history.points(packed) == pairs
    assert history.plain(packed) == pairs and type(history.plain(packed)[0][1]) is int
    twelve = [[T0 + 900 * i, 50] for i in range(12)]
    as_floats = history.Packed(array("I", [T0] * 12).tobytes() + array("f", [50] * 12).tobytes())
    assert sys.getsizeof(history.pack(twelve)) + 36 == sys.getsizeof(as_floats)
    # one fill out of a byte's range keeps the whole history in 32-bit floats
    for odd in (256, -1):
        wider = history.pack([*pairs, [T0 + 9000, odd]])
        assert type(wider) is history.Packed and history.points(wider)[-1] == [T0 + 9000, odd]
    # a bin's twin carries the same points either way
    device = _bin()
    for i, fill in enumerate([10, 20, 30]):
        out = bins.apply_bin_status(device, {"fill_percent": fill}, BinsConfig(), T0 + 900 * i)
        out.twin.apply(device)
    assert type(device.derived["_samples"]) is history.PackedBytes
    assert json.loads(device.twin_json())["derived"]["_samples"] == [
        [T0, 10],
        [T0 + 900, 20],
        [T0 + 1800, 30],
    ]
