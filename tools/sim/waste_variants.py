"""Bin-selection variants set against citypack's own rule for issue 21's km goal, each a whole
week of :func:`tools.sim.weekwaste.simulate_waste` on the same world and seeds (tools/sim/README.md,
"Third pass"). Analysis only: the gateway does not use them.

    python -m tools.sim.waste_variants                    # every variant, seeds 1-3
    python -m tools.sim.waste_variants risk-0.75 --seeds 1

Each row: km and its ratio to the fixed schedule, overflow bin-hours (the fixed schedule's in
brackets), stops, and the most one truck really carried in a round (capacity 150 bins).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from gateway.config import BinsConfig
from gateway.rules import Outcome
from gateway.rules.bins import apply_bin_status
from gateway.store.base import Device
from tools.sim.weekwaste import WEEK_START, WasteWorld, arriving_percent, city, simulate_waste

__all__ = ["VARIANTS", "KnownFuture", "LearnedRate", "Variant", "run_variant"]

_DAY_S = 86_400.0
_STATE = "_learned"  # [window start, rise in window, mean daily rise, days, last report, variance]


class _OwnForecast:
    """The gateway's bin rule (:func:`gateway.rules.bins.apply_bin_status`: events, pickups,
    twin) with the fill rate and forecast it derives replaced by :meth:`forecast`'s."""

    def __call__(
        self, device: Device, fields: dict[str, Any], cfg: BinsConfig, now: float
    ) -> Outcome:
        out = apply_bin_status(device, fields, cfg, now)
        self.forecast(device, out.twin.derived, float(fields.get("fill_percent", 0)), now)
        return out

    def forecast(self, device: Device, derived: dict[str, Any], fill: float, now: float) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class LearnedRate(_OwnForecast):
    """A bin rule: the gateway's own (:func:`gateway.rules.bins.apply_bin_status`: events, pickups,
    twin) with its fill rate and forecast replaced by ones learned over whole days.

    The rise is summed report to report over windows of a whole day (the daily rhythm of use
    cancels out); the report interval holding an emptying adds the learned rate instead of the
    drop. A window's rise updates the mean daily rise: a running mean over the first ``days``
    windows, then an exponential one with weight 1/``days``; the squared deviations from the
    mean before it, the same way, give the spread.

    ``z`` None: ``forecast_full_at`` is when the mean rate takes the bin to its threshold (the
    gateway's rule with the learned rate). A number: when the bin *may* overflow, the first
    ``x`` days from now with ``fill + m x + z s sqrt(x) >= 100`` (``m`` the mean daily rise,
    ``s`` its spread, which starts at ``spread * m`` worth ``prior_days`` windows); the
    threshold still makes a bin full. Until a first whole day is measured, the gateway's own
    forecast stands."""

    days: int = 4
    z: float | None = None
    spread: float = 0.3
    prior_days: float = 2.0

    def forecast(self, device: Device, derived: dict[str, Any], fill: float, now: float) -> None:
        state = self._learn(device, derived, fill, now)
        derived[_STATE] = state
        mean, n, variance = state[2], state[3], state[5]
        if mean is None:
            return
        threshold = float(derived["full_threshold_percent"])
        derived["fill_rate_percent_per_h"] = round(mean / 24.0, 3)
        if fill >= threshold:
            derived["forecast_full_at"] = now
        elif mean <= 0:
            derived["forecast_full_at"] = None
        elif self.z is None:
            derived["forecast_full_at"] = round(now + (threshold - fill) / mean * _DAY_S)
        else:
            seen = max(0, n - 1)  # deviations measured: one fewer than windows
            prior = self.prior_days * (self.spread * mean) ** 2
            spread = math.sqrt((prior + seen * variance) / (self.prior_days + seen))
            # fill + mean x + z spread sqrt(x) = 100, a quadratic in sqrt(x)
            b = self.z * spread
            root = (-b + math.sqrt(b * b + 4.0 * mean * max(0.0, 100.0 - fill))) / (2.0 * mean)
            derived["forecast_full_at"] = round(now + root * root * _DAY_S)

    def _learn(self, device: Device, derived: dict[str, Any], fill: float, now: float) -> list[Any]:
        state = device.derived.get(_STATE)
        if state is None:
            return [now, 0.0, None, 0, now, 0.0]
        start, rise, mean, n, last, variance = state
        if derived.get("last_pickup_at") == now:  # emptied since the last report
            rise += (mean or 0.0) * (now - last) / _DAY_S
        else:
            previous = device.derived.get("fill_percent")
            if isinstance(previous, int | float):
                rise += fill - previous
        span = now - start
        if span >= _DAY_S - 1.0:  # a whole day, give or take the report's rounding
            daily = rise * _DAY_S / span
            n += 1
            if mean is None:
                mean = daily
            else:
                weight = 1.0 / min(n, self.days)
                deviation = (daily - mean) ** 2
                variance = deviation if n == 2 else variance + weight * (deviation - variance)
                mean += weight * (daily - mean)
            start, rise = now, 0.0
        return [start, rise, mean, n, now, variance]


class KnownFuture(_OwnForecast):
    """A bin rule that knows the world's future (a bound for the analysis, not a forecast
    anyone could make): the gateway's own rule, with ``forecast_full_at`` the step in which
    the waste that will really come takes the bin from its reading to 100 %, and the fill rate
    the waste that will really come over the next ``next_round_h`` (so a bin marked for the
    late half of the shift is one that will really refill to its threshold before the next
    round, and its planned load is what will really be in it). The threshold still makes a
    bin full. ``grace_h`` moves ``forecast_full_at`` that much later: a bin waits for a later
    round when it would have overflowed for no longer than that by the end of the next
    round's shift (overflow traded for km, knowing exactly how much). Built for one world and
    seed: the waste comes from :func:`city`'s factors through :func:`arriving_percent`, as in
    the week itself."""

    def __init__(
        self, world: WasteWorld, seed: int, *, grace_h: float = 0.0, look_ahead_days: float = 4.0
    ) -> None:
        bins, self._factors = city(world, seed)
        self._grace_s = grace_h * 3600.0
        self._world = world
        self._rates = {b.dev_eui: (i, b.rate_per_day) for i, b in enumerate(bins)}
        self._start = world_start = WEEK_START - world.warmup_days * _DAY_S
        self._end = world_start + (world.warmup_days + 7) * _DAY_S
        self._look = look_ahead_days * _DAY_S

    def arriving(self, dev_eui: str, after: float, until: float) -> list[tuple[float, float]]:
        """``(step, percent)`` for the steps of the week in which waste reaches the bin, from
        the first step after a report at ``after`` up to ``until``."""
        world = self._world
        i, rate = self._rates[dev_eui]
        # the week adds a step's waste before the reports it covers (weekwaste.py), so a
        # report at ``after`` has seen every step before it
        t = self._start + math.ceil((after - self._start) / world.step_s) * world.step_s
        out = []
        while t < min(until, self._end):
            out.append((t, arriving_percent(world, rate, self._factors, i, t)))
            t += world.step_s
        return out

    def forecast(self, device: Device, derived: dict[str, Any], fill: float, now: float) -> None:
        threshold = float(derived["full_threshold_percent"])
        horizon_s = self._world.next_round_h * 3600.0
        coming = self.arriving(device.dev_eui, now, now + max(self._look, horizon_s))
        derived["fill_rate_percent_per_h"] = round(
            sum(p for t, p in coming if t < now + horizon_s) / self._world.next_round_h, 3
        )
        if fill >= threshold:
            derived["forecast_full_at"] = now
            return
        level, full_at = fill, None
        for t, percent in coming:
            level += percent
            if level >= 100.0:
                full_at = t
                break
        derived["forecast_full_at"] = None if full_at is None else full_at + self._grace_s


Variant = Callable[[WasteWorld, int], tuple[WasteWorld, dict[str, Any]]]


def _keywords(changes: dict[str, Any] | None = None, **keywords: Any) -> Variant:
    return lambda world, seed: (dataclasses.replace(world, **(changes or {})), keywords)


def _known_future(grace_h: float = 0.0, threshold: float | None = None) -> Variant:
    def variant(world: WasteWorld, seed: int) -> tuple[WasteWorld, dict[str, Any]]:
        rule = KnownFuture(world, seed, grace_h=grace_h)
        return world, {"bin_rule": rule, "full_threshold_percent": threshold}

    return variant


# name -> what it changes for a world and seed: the world, and simulate_waste's keywords
VARIANTS: dict[str, Variant] = {
    "citypack": _keywords(),
    "learned-2": _keywords(bin_rule=LearnedRate(days=2)),
    "learned-4": _keywords(bin_rule=LearnedRate(days=4)),
    "learned-8": _keywords(bin_rule=LearnedRate(days=8)),
    # z = 1.645: a 5 % chance of overflow, the fixed schedule's own level (weekwaste.py)
    "risk-1.645": _keywords(bin_rule=LearnedRate(days=4, z=1.645)),
    "risk-1.0": _keywords(bin_rule=LearnedRate(days=4, z=1.0)),
    "risk-0.75": _keywords(bin_rule=LearnedRate(days=4, z=0.75)),
    "risk-0.5": _keywords(bin_rule=LearnedRate(days=4, z=0.5)),
    "risk-0": _keywords(bin_rule=LearnedRate(days=4, z=0.0)),
    # a round every other day: "before the next round" is 48 h + the 8 h shift ahead
    "every-2-days": _keywords({"next_round_h": 56.0}, round_every_days=2),
    # bounds, not rules: the world's own future in place of the forecast
    "known-future": _known_future(),
    "known-future-100": _known_future(threshold=100.0),
    "known-future-100-grace-3h": _known_future(3.0, threshold=100.0),
    "known-future-100-grace-3.5h": _known_future(3.5, threshold=100.0),
    "known-future-100-grace-4h": _known_future(4.0, threshold=100.0),
    "known-future-100-grace-4.5h": _known_future(4.5, threshold=100.0),
}


def run_variant(name: str, seed: int, world: WasteWorld | None = None) -> dict[str, Any]:
    """One week of ``name`` (a key of :data:`VARIANTS`, or ``"fixed"``) on ``seed``."""
    world = world or WasteWorld()
    loads: list[float] = []
    if name == "fixed":
        out, _ = simulate_waste(world, "fixed", seed, truck_loads=loads)
    else:
        varied, keywords = VARIANTS[name](world, seed)
        out, _ = simulate_waste(varied, "citypack", seed, truck_loads=loads, **keywords)
    return {
        "variant": name,
        "seed": seed,
        "truck_km": round(out.truck_km, 1),
        "overflow_bin_hours": out.overflow_bin_hours,
        "stops": out.stops,
        "emptied_under_half": out.emptied_under_half,
        "truck_load_max_bins": round(max(loads, default=0.0), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.sim.waste_variants")
    parser.add_argument("variants", nargs="*", help=f"any of {', '.join(VARIANTS)}; all if none")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {', '.join(unknown)}: one of {', '.join(VARIANTS)}")
    names = args.variants or list(VARIANTS)
    jobs = [("fixed", s) for s in args.seeds] + [(v, s) for v in names for s in args.seeds]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        rows = list(pool.map(run_variant, *zip(*jobs, strict=True)))
    fixed = {r["seed"]: r for r in rows if r["variant"] == "fixed"}
    for r in rows:
        if r["variant"] == "fixed":
            continue
        base = fixed[r["seed"]]
        print(
            f"{r['variant']:<13} seed {r['seed']}: {r['truck_km']:6.1f} km "
            f"({r['truck_km'] / base['truck_km']:.3f} of {base['truck_km']}), overflow "
            f"{r['overflow_bin_hours']:7.2f} ({base['overflow_bin_hours']}) bin-h, "
            f"{r['stops']:,} stops, most carried {r['truck_load_max_bins']} bins",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
