"""A week of bin collection in a model city, under a fixed schedule or citypack's own rules.

Model level, not firmware level (the firmware sim runs a few hundred nodes for hours, not a
week): bins fill, report their fill like the bin node does (hourly ``bin_status``, with
``pickup_count`` after an emptying), and trucks empty them. What decides *which* bins are emptied
and *in which order* is the real gateway code: :func:`gateway.rules.bins.apply_bin_status` (fill
rate, forecast, pickup detection), :func:`gateway.routes.route_stops` (full now or forecast full
before the next round) and :func:`gateway.routes.plan_routes` (VROOM). The fixed schedule uses the
same planner for its districts, so both strategies drive the same kind of route.

The world's parameters (:class:`WasteWorld`) and where they come from: tools/sim/README.md
"Outcomes, and the week of city_outcomes".
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from gateway.config import BinsConfig, RoutesConfig
from gateway.routes import Stop, plan_routes, route_stops
from gateway.rules import Outcome
from gateway.rules.bins import apply_bin_status
from gateway.store.base import Device
from tools.sim.outcomes import WasteOutcomes
from tools.sim.world import AARHUS_LATITUDE, AARHUS_LONGITUDE

__all__ = [
    "BinRule",
    "WasteWorld",
    "arriving_percent",
    "city",
    "fixed_interval_days",
    "simulate_waste",
]

# what turns a bin's report into its twin: the gateway's own rule, or a variant to compare
# (tools/sim/waste_variants.py); the same signature as gateway.rules.bins.apply_bin_status
BinRule = Callable[[Device, dict[str, Any], BinsConfig, float], Outcome]

_M_PER_DEG = 111_195.0
_DAY = 86_400.0
WEEK_START = 1_795_996_800.0  # Monday 2026-11-30 00:00 UTC


@dataclass(frozen=True, slots=True)
class WasteWorld:
    bins: int = 400
    radius_m: float = 1500.0  # bins spread over a disc of this radius around the centre
    depot_north_m: float = 3000.0  # the depot, this far north of the centre
    median_days_to_full: float = 4.0  # a bin's mean fill rate: lognormal around this ...
    days_to_full_sigma: float = 0.5  # ... with this log-sd (bins differ by a factor ~3)
    daily_sigma: float = 0.25  # each day's amount varies around the bin's mean (log-sd)
    weekend_factor: float = 1.3  # Friday to Sunday bring this much more
    deposit_hours_local: tuple[int, int] = (7, 23)  # waste arrives between these hours
    report_interval_s: float = 3600.0  # bin_status every hour (the bin node's default)
    sensor_sigma_percent: float = 1.0  # ultrasonic reading noise
    round_hour_local: int = 6  # trucks leave at this hour every day
    utc_offset_h: int = 1  # Denmark in winter
    trucks: int = 2
    capacity_bins: float = 150.0
    service_time_s: float = 60.0
    speed_kmh: float = 20.0
    detour_factor: float = 1.3
    shift_s: float = 8 * 3600.0
    # citypack's settings, from the schedule above (tools/sim/README.md): a day of hourly
    # readings, both ends included, so the rate spans the daily rhythm (gateway.rules.bins);
    # "full before the next round": it leaves in 24 h and may reach a bin up to a shift later
    forecast_samples: int = 25
    next_round_h: float = 32.0  # the 24 h between rounds + the 8 h shift
    warmup_days: int = 3
    step_s: float = 900.0

    def describe(self) -> dict[str, object]:
        return asdict(self)


@dataclass(slots=True)
class _Bin:
    dev_eui: str
    latitude: float
    longitude: float
    rate_per_day: float  # mean percent of the bin per day
    fill: float  # percent; above 100 the rest lies beside the bin
    phase_s: float  # when in the hour it reports
    pickups_since_report: int = 0


def city(world: WasteWorld, seed: int) -> tuple[list[_Bin], list[float]]:
    """The bins, and each day's amount factor per bin (``[day * bins + bin]``, log), from
    ``seed``: the same on every call."""
    rng = random.Random(seed)
    kx = _M_PER_DEG * math.cos(math.radians(AARHUS_LATITUDE))
    bins = []
    for i in range(world.bins):
        r = world.radius_m * math.sqrt(rng.random())
        a = rng.uniform(0, 2 * math.pi)
        days = world.median_days_to_full * math.exp(rng.gauss(0, world.days_to_full_sigma))
        bins.append(
            _Bin(
                dev_eui=f"02c17a0b{i:08x}",
                latitude=AARHUS_LATITUDE + r * math.sin(a) / _M_PER_DEG,
                longitude=AARHUS_LONGITUDE + r * math.cos(a) / kx,
                rate_per_day=100.0 / days,
                fill=rng.uniform(0.0, 60.0),
                phase_s=rng.uniform(0, world.report_interval_s),
            )
        )
    total_days = world.warmup_days + 7
    factors = [rng.gauss(0, world.daily_sigma) for _ in range(total_days * world.bins)]
    return bins, factors


def arriving_percent(
    world: WasteWorld, rate_per_day: float, factors: list[float], i: int, t: float
) -> float:
    """The waste (percent of a bin) that reaches bin ``i`` in the step starting at ``t``:
    by day only, that day's amount, the weekend's more (``factors`` from :func:`city`)."""
    start = WEEK_START - world.warmup_days * _DAY
    local_h = ((t / 3600.0) + world.utc_offset_h) % 24.0
    lo, hi = world.deposit_hours_local
    if not lo <= local_h < hi:
        return 0.0
    day = int((t - start) // _DAY)
    weekday = int(((t + world.utc_offset_h * 3600) // _DAY + 3) % 7)  # 0 = Monday
    week = world.weekend_factor if weekday >= 4 else 1.0
    share = world.step_s / ((hi - lo) * 3600.0)
    amount = math.exp(factors[day * world.bins + i])
    return rate_per_day * week * amount * share


def fixed_interval_days(world: WasteWorld, seed: int) -> int:
    """N of "every bin every N days" as a city would pick it to avoid overflow: the largest
    whole number of days in which at most 5 % of bins fill up at their average rate (weekday
    and weekend averaged), at least 1."""
    bins, _ = city(world, seed)
    week_factor = (4 + 3 * world.weekend_factor) / 7
    days = sorted(100.0 / (b.rate_per_day * week_factor) for b in bins)
    fifth = days[max(0, math.ceil(0.05 * len(days)) - 1)]
    return max(1, math.floor(fifth))


def _routes_config(world: WasteWorld) -> RoutesConfig:
    return RoutesConfig(
        depot_latitude=AARHUS_LATITUDE + world.depot_north_m / _M_PER_DEG,
        depot_longitude=AARHUS_LONGITUDE,
        trucks=world.trucks,
        capacity_bins=world.capacity_bins,
        service_time_s=world.service_time_s,
        speed_kmh=world.speed_kmh,
        detour_factor=world.detour_factor,
        shift_s=world.shift_s,
        next_round_h=world.next_round_h,
        # a cap VROOM never reaches on these rounds (its own search ends first, in 1-4 s): a
        # time limit that cuts the search makes the routes depend on the machine's load, and
        # the same seed must give the same week
        solver_timeout_s=120.0,
    )


def _districts(bins: list[_Bin], n: int, cfg: RoutesConfig) -> list[list[int]]:
    """N districts of equal size, by bearing from the depot (how a city cuts its rounds)."""
    kx = math.cos(math.radians(cfg.depot_latitude))
    order = sorted(
        range(len(bins)),
        key=lambda i: math.atan2(
            bins[i].latitude - cfg.depot_latitude, (bins[i].longitude - cfg.depot_longitude) * kx
        ),
    )
    size = math.ceil(len(order) / n)
    return [order[k * size : (k + 1) * size] for k in range(n)]


def simulate_waste(
    world: WasteWorld,
    strategy: str,
    seed: int,
    *,
    per_bin: dict[str, float] | None = None,
    truck_loads: list[float] | None = None,
    bin_rule: BinRule = apply_bin_status,
    round_every_days: int = 1,
    rounds: list[float] | None = None,
    full_threshold_percent: float | None = None,
) -> tuple[WasteOutcomes, int]:
    """One week (after ``warmup_days`` not counted) under ``"fixed"`` or ``"citypack"``; returns
    the outcomes and N (the fixed interval, also for citypack: the same city). ``per_bin``, when
    given, receives each bin's overflow hours (where the overflow comes from); ``truck_loads``
    what each truck of each counted round really carried, in full bins (the planner's loads are
    forecasts: this shows whether a truck would have been over ``capacity_bins``); ``rounds``
    when each round left. ``bin_rule``, ``round_every_days`` and ``full_threshold_percent`` are
    citypack's: the rule its bins' reports go through (the gateway's, unless a variant is
    compared), how many days apart its rounds leave (the fixed schedule's districts keep one
    round a day) and ``[bins] full_threshold_percent`` (its default unless given)."""
    if strategy not in ("fixed", "citypack"):
        raise ValueError(f"strategy {strategy!r}: 'fixed' or 'citypack'")
    if round_every_days < 1:
        raise ValueError(f"round_every_days {round_every_days}: at least 1")
    bins, factors = city(world, seed)
    n_days = fixed_interval_days(world, seed)
    cfg = _routes_config(world)
    bins_cfg = BinsConfig(forecast_samples=world.forecast_samples)
    if full_threshold_percent is not None:
        bins_cfg = dataclasses.replace(bins_cfg, full_threshold_percent=full_threshold_percent)
    devices = [
        Device(b.dev_eui, kind="bin", name=f"bin-{i}", latitude=b.latitude, longitude=b.longitude)
        for i, b in enumerate(bins)
    ]
    districts = _districts(bins, n_days, cfg)
    rng = random.Random(seed * 7919 + 1)
    out = WasteOutcomes()
    start = WEEK_START - world.warmup_days * _DAY
    counted_from = WEEK_START
    end = WEEK_START + 7 * _DAY
    pending: list[tuple[float, int, int]] = []  # (when the truck reaches it, bin, load slot)
    carried: list[float] = []  # percent of one bin, per truck and round
    next_report = [start + b.phase_s for b in bins]
    t = start
    while t < end:
        day = int((t - start) // _DAY)
        local_h = ((t / 3600.0) + world.utc_offset_h) % 24.0
        round_day = strategy == "fixed" or day % round_every_days == 0
        if local_h == world.round_hour_local and round_day:
            if rounds is not None:
                rounds.append(t)
            if strategy == "citypack":
                stops, _ = route_stops(devices, bins_cfg, cfg, t)
            else:
                members = districts[day % n_days]
                stops = [
                    Stop(
                        bins[i].dev_eui,
                        devices[i].name,
                        bins[i].latitude,
                        bins[i].longitude,
                        round(min(100.0, bins[i].fill)),
                        max(1, math.ceil(min(100.0, bins[i].fill))),
                    )
                    for i in members
                ]
            plan = plan_routes(stops, cfg)
            index = {b.dev_eui: i for i, b in enumerate(bins)}
            for route in plan["routes"]:
                if t >= counted_from:
                    out.truck_km += route["km"]
                    carried.append(0.0)
                slot = len(carried) - 1 if t >= counted_from else -1
                for stop in route["stops"]:
                    pending.append((t + stop["arrival_s"], index[stop["dev_eui"]], slot))
        # the truck empties what it reached by now
        keep = []
        for when, i, slot in pending:
            if when > t:
                keep.append((when, i, slot))
                continue
            b = bins[i]
            if slot >= 0:
                carried[slot] += b.fill
            if when >= counted_from:
                out.stops += 1
                out.emptied_under_half += b.fill < 50.0
            b.fill = rng.uniform(0.0, 4.0)
            b.pickups_since_report += 1
        pending = keep
        # waste arrives
        for i, b in enumerate(bins):
            b.fill += arriving_percent(world, b.rate_per_day, factors, i, t)
        if t >= counted_from:
            for b in bins:
                if b.fill >= 100.0:
                    out.overflow_bin_hours += world.step_s / 3600.0
                    if per_bin is not None:
                        per_bin[b.dev_eui] = per_bin.get(b.dev_eui, 0.0) + world.step_s / 3600.0
        # hourly reports through the gateway's own bin rule
        if strategy == "citypack":
            for i, b in enumerate(bins):
                if next_report[i] <= t + world.step_s:
                    at = next_report[i]
                    reading = min(
                        100.0, max(0.0, b.fill + rng.gauss(0, world.sensor_sigma_percent))
                    )
                    fields = {"fill_percent": round(reading)}
                    if b.pickups_since_report:
                        fields["pickup_count"] = b.pickups_since_report
                        b.pickups_since_report = 0
                    # the rule is pure: its twin change made as the service does
                    bin_rule(devices[i], fields, bins_cfg, at).twin.apply(devices[i])
                    next_report[i] = at + world.report_interval_s
        t += world.step_s
    if truck_loads is not None:
        truck_loads.extend(load / 100.0 for load in carried)
    return out, n_days
