"""The bin-selection variants of tools/sim/waste_variants.py (tools/sim/README.md, "Third pass")
and the knobs of simulate_waste they use: each checked against what its definition makes true."""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise
from typing import Any

import pytest

from gateway.config import BinsConfig
from gateway.rules import Outcome
from gateway.rules.bins import apply_bin_status
from gateway.store.base import Device
from tools.sim.waste_variants import KnownFuture, LearnedRate, main, run_variant
from tools.sim.weekwaste import WEEK_START, WasteWorld, simulate_waste

SMALL = WasteWorld(bins=24, warmup_days=1, radius_m=800.0)
_H = 3600.0
_DAILY = 30.0  # percent a day, coming evenly 07:00-23:00 UTC+1 as in weekwaste.py


def _deposit(t: float) -> float:
    local_h = ((t / _H) + 1.0) % 24.0
    return _DAILY / 16.0 if 7.0 <= local_h < 23.0 else 0.0


def _feed(rule: LearnedRate, hours: int, emptied_at_h: int | None = None) -> Device:
    """Hourly reports of one bin from midnight local, emptied (to 2 %) in hour ``emptied_at_h``."""
    device = Device("02c17a0b00000001", kind="bin", name="bin-1")
    cfg = BinsConfig(forecast_samples=25)
    fill = 10.0
    for h in range(hours + 1):
        t = WEEK_START - _H + h * _H  # 00:00 local
        fields: dict[str, float | int] = {"fill_percent": round(fill, 6)}
        if h == emptied_at_h:
            fill = 2.0
            fields = {"fill_percent": fill, "pickup_count": 1}
        rule(device, fields, cfg, t).twin.apply(device)
        fill += _deposit(t)
    return device


def test_the_learned_rate_is_a_whole_days_rise_and_bridges_an_emptying() -> None:
    # the gateway's own rate right after an emptying is a few daytime hours' slope: steeper
    # than the day's rise, since no night is in it
    device = _feed(LearnedRate(days=4), hours=4 * 24, emptied_at_h=2 * 24 + 10)
    start, _rise, mean, days, _last, _variance = device.derived["_learned"]
    assert days == 4
    # the window holding the emptying counts 1 h at the mean (30/24) for that hour's 30/16
    assert mean == pytest.approx(_DAILY, abs=_DAILY / 16.0 - _DAILY / 24.0)
    assert device.derived["fill_rate_percent_per_h"] == pytest.approx(mean / 24.0, abs=1e-3)
    fill = device.derived["fill_percent"]
    now = start  # the last report closed a window
    expected = now + (80.0 - fill) / mean * 86_400.0
    assert device.derived["forecast_full_at"] == pytest.approx(expected, abs=1.0)


def test_before_a_whole_day_the_gateways_forecast_stands() -> None:
    learned = _feed(LearnedRate(days=4), hours=20)
    plain = Device("02c17a0b00000001", kind="bin", name="bin-1")
    cfg = BinsConfig(forecast_samples=25)
    fill = 10.0
    for h in range(21):
        t = WEEK_START - _H + h * _H
        apply_bin_status(plain, {"fill_percent": round(fill, 6)}, cfg, t).twin.apply(plain)
        fill += _deposit(t)
    assert learned.derived["_learned"][2] is None
    for key in ("fill_rate_percent_per_h", "forecast_full_at"):
        assert learned.derived[key] == plain.derived[key]


@pytest.mark.parametrize("z", [0.5, 1.645])
def test_the_risk_forecast_solves_its_equation_and_comes_before_the_mean_one(z: float) -> None:
    rule = LearnedRate(days=4, z=z, spread=0.3, prior_days=2.0)
    device = _feed(rule, hours=3 * 24 + 3, emptied_at_h=2 * 24 + 10)
    mean_only = _feed(LearnedRate(days=4, z=0.0), hours=3 * 24 + 3, emptied_at_h=2 * 24 + 10)
    _start, _rise, mean, days, last, variance = device.derived["_learned"]
    seen = days - 1
    spread = math.sqrt((2.0 * (0.3 * mean) ** 2 + seen * variance) / (2.0 + seen))
    fill = device.derived["fill_percent"]
    assert fill < 80.0  # below the threshold: a forecast, not "full now"
    x = (device.derived["forecast_full_at"] - last) / 86_400.0
    assert fill + mean * x + z * spread * math.sqrt(x) == pytest.approx(100.0, abs=0.01)
    assert device.derived["forecast_full_at"] < mean_only.derived["forecast_full_at"]
    x0 = (mean_only.derived["forecast_full_at"] - last) / 86_400.0
    assert x0 == pytest.approx((100.0 - fill) / mean, abs=1e-4)


def test_rounds_leave_every_n_days_for_citypack_and_daily_for_the_fixed_schedule() -> None:
    every_other: list[float] = []
    simulate_waste(SMALL, "citypack", seed=3, round_every_days=2, rounds=every_other)
    daily: list[float] = []
    simulate_waste(SMALL, "fixed", seed=3, round_every_days=2, rounds=daily)
    days = SMALL.warmup_days + 7
    assert len(daily) == days and len(every_other) == math.ceil(days / 2)
    assert {b - a for a, b in pairwise(every_other)} == {2 * 86_400.0}
    assert {b - a for a, b in pairwise(daily)} == {86_400.0}
    with pytest.raises(ValueError, match="round_every_days"):
        simulate_waste(SMALL, "citypack", seed=3, round_every_days=0)


def test_a_variant_runs_a_week_and_an_unknown_one_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    row = run_variant("learned-2", seed=3, world=SMALL)
    assert row["variant"] == "learned-2" and row["stops"] > 0 and row["truck_km"] > 0
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-rule"])
    assert exit_info.value.code == 2
    assert "unknown variant no-such-rule" in capsys.readouterr().err


def test_the_known_future_is_the_weeks_own_waste() -> None:
    # fast bins (a few percent a step) with exact sensors: between two readings with no
    # emptying, the waste the bound says will come is what the next reading shows, to the
    # readings' whole-percent rounding
    world = dataclasses.replace(SMALL, median_days_to_full=0.5, sensor_sigma_percent=0.0)
    oracle = KnownFuture(world, seed=3)
    last: dict[str, tuple[float, float]] = {}
    errors: list[float] = []

    def rule(device: Device, fields: dict[str, Any], cfg: BinsConfig, now: float) -> Outcome:
        fill = float(fields["fill_percent"])
        before = last.get(device.dev_eui)
        if before is not None and "pickup_count" not in fields and 0 < fill < 99:
            at, was = before
            if 0 < was < 99:
                coming = sum(p for _, p in oracle.arriving(device.dev_eui, at, now))
                errors.append(abs(was + coming - fill))
        last[device.dev_eui] = (now, fill)
        return oracle(device, fields, cfg, now)

    simulate_waste(world, "citypack", seed=3, bin_rule=rule)
    assert len(errors) > 100
    assert max(errors) <= 1.0  # two readings, each rounded to a whole percent


def test_knowing_the_future_lists_a_bin_when_it_will_overflow() -> None:
    world = dataclasses.replace(SMALL, sensor_sigma_percent=0.0)
    device = Device("02c17a0b00000000", kind="bin", name="bin-0")
    cfg = BinsConfig(forecast_samples=25, full_threshold_percent=100.0)
    now = WEEK_START + 6 * 3600.0  # 07:00 local: the day's waste is all to come
    strict = KnownFuture(world, seed=1)(device, {"fill_percent": 50}, cfg, now)
    graced = KnownFuture(world, seed=1, grace_h=3.0)(device, {"fill_percent": 50}, cfg, now)
    full_at = strict.twin.derived["forecast_full_at"]
    coming = KnownFuture(world, seed=1).arriving(device.dev_eui, now, full_at + 1)
    assert coming[-1][0] == full_at  # the step that takes it to 100 %
    assert 50 + sum(p for _, p in coming) >= 100.0 > 50 + sum(p for _, p in coming[:-1])
    assert graced.twin.derived["forecast_full_at"] == full_at + 3 * 3600.0
