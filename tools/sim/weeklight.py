"""A week of street lighting in a model city: full on, a static dimming profile, or citypack.

Model level (event driven, not the firmware sim): road users walk, cycle and drive along the
streets of :data:`tools.sim.world.AARHUS_STREETS` with the world's speeds and hourly traffic
profile; lamps stand every ``spacing_m``. What decides the light is real project code:

- the night programs are evaluated by the lamp firmware's own ``profile_level``
  (firmware/apps/lamp_node.py, sunset/sunrise from ``drivers.sun``);
- citypack's presence boost follows lamp_node: ``boost_level`` from a detection until
  ``hold_time_s`` after it, only while the program is lit, reached after ``boost_fade_ms``;
  presence reports are rate-limited to one per ``presence_report_min_s`` (a detection inside the
  limit is reported when it ends);
- every report goes through :func:`gateway.rules.lamps.apply_lamp_presence`, whose
  ``lamp_override`` commands reach the neighbours after the uplink's and the class C downlink's
  time on air (protocol.lorawan.airtime, EU868 RX2 at DR0 as RP002 sets it), each LoRa gateway
  sending one downlink at a time within the 10 % duty cycle of the 869.4–869.65 MHz sub-band
  (ERC Recommendation 70-03, annex 1, band h1.7); a newer override for a lamp whose previous one
  is still queued replaces it (gateway/commands.py), and one whose turn comes after its
  ``expiresAt`` (the override's own hold, gateway/rules/lamps.py) is dropped unsent, as
  ChirpStack drops an expired queue item.

Counted for each strategy: lamp energy (kWh, the world's LED driver power model), and for every
road user reaching a lamp in the dark whether it was at boost level then ("lit ahead").
Parameters and sources: tools/sim/README.md "Outcomes, and the week of city_outcomes".
"""

from __future__ import annotations

import bisect
import functools
import importlib
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.config import LampsConfig
from gateway.rules.lamps import apply_lamp_presence
from gateway.store.base import Device
from protocol import codec
from protocol.lorawan.airtime import time_on_air_s
from protocol.lorawan.region.eu868 import EU868
from tools.sim.outcomes import LightOutcomes
from tools.sim.weekwaste import WEEK_START
from tools.sim.world import (
    AARHUS_GATEWAYS,
    AARHUS_LATITUDE,
    AARHUS_LONGITUDE,
    AARHUS_STREETS,
    KIND_WEIGHTS,
    SPEEDS_MPS,
    distance_m,
    sun_times,
    traffic_per_hour,
)

__all__ = ["PROFILES", "LightWorld", "ideal_presence_kwh", "simulate_light"]

_DAY = 86_400.0

# The three ways of running the same lamps (TALQ ControlProgram steps, lamp_node's format).
PROFILES: dict[str, dict[str, Any]] = {
    "full_on": {
        "base_level": 100,
        "boost_level": 100,
        "steps": [
            {"anchor": "sunset", "offset_min": 0, "dim_level": 100},
            {"anchor": "sunrise", "offset_min": 0, "dim_level": 0},
        ],
    },
    # part-night dimming without sensors: full in the evening, half from 22:00 to 06:00
    "static": {
        "base_level": 100,
        "boost_level": 100,
        "steps": [
            {"anchor": "sunset", "offset_min": 0, "dim_level": 100},
            {"anchor": "clock", "offset_min": 22 * 60, "dim_level": 50},
            {"anchor": "clock", "offset_min": 6 * 60, "dim_level": 100},
            {"anchor": "sunrise", "offset_min": 0, "dim_level": 0},
        ],
    },
    # citypack: a low floor while nobody is there, full light around and ahead of road users
    "citypack": {
        "base_level": 100,
        "boost_level": 100,
        "hold_time_s": 60,
        "steps": [
            {"anchor": "sunset", "offset_min": 0, "dim_level": 20},
            {"anchor": "sunrise", "offset_min": 0, "dim_level": 0},
        ],
    },
}


@dataclass(frozen=True, slots=True)
class LightWorld:
    days: int = 7
    spacing_m: float = 30.0  # lamp every 30 m along each street
    rated_power_w: float = 60.0  # SimLamp's LED luminaire
    detection_radius_m: float = 18.0  # SimLamp's presence sensor
    detection_probability: float = 0.95  # a road user inside the radius is seen (per lamp)
    traffic_scale: float = 1.0  # x the world's hourly profile per street
    boost_fade_s: float = 0.5  # lamp_node boost_fade_ms
    presence_report_min_s: float = 120.0  # lamp_node presence_report_min_s
    network_s: float = 0.25  # ChirpStack de-duplication and the gateway's batch before a command
    duty_cycle: float = 0.10  # ERC 70-03 h1.7: 869.4-869.65 MHz, 10 %
    rx2_dr: int = EU868.rx2_data_rate  # class C downlinks: RP002-1.0.4's EU868 RX2 default (DR0)
    neighbours_each_side: int = 2  # tools/sim/city.py registers two lamps either side
    lamps: LampsConfig = field(default_factory=LampsConfig)  # the gateway's [lamps] defaults

    def describe(self) -> dict[str, object]:
        doc = asdict(self)
        doc["lamps"] = {
            "presence_dim_level": self.lamps.presence_dim_level,
            "presence_duration_s": self.lamps.presence_duration_s,
            "presence_fade_s": self.lamps.presence_fade_s,
        }
        return doc


@dataclass(slots=True)
class _Lamp:
    dev_eui: str
    street: str
    along_m: float
    latitude: float
    longitude: float
    gateway: int
    detections: list[float] = field(default_factory=list)
    boosts: list[tuple[float, float]] = field(default_factory=list)  # [from, to) at boost


def _lamp_node() -> Any:
    from tools.sim.fleet import firmware_path

    firmware_path()
    return importlib.import_module("apps.lamp_node")


def _segments(profile: dict[str, Any], start: float, end: float) -> list[tuple[float, float, int]]:
    """The program as ``(from, to, level)`` pieces, by the firmware's own ``profile_level``."""
    node = _lamp_node()
    out: list[tuple[float, float, int]] = []
    t = start
    cache: dict[int, Any] = {}
    while t < end:
        level, next_t = node.profile_level(
            profile["steps"], int(t), AARHUS_LATITUDE, AARHUS_LONGITUDE, cache=cache
        )
        upto = end if next_t is None else min(end, float(next_t))
        if upto <= t:
            upto = t + 60.0
        out.append((t, upto, int(level if level is not None else profile["base_level"])))
        t = upto
    return out


def _power_w(world: LightWorld, level: float) -> float:
    if level <= 0:
        return 0.0
    return world.rated_power_w * (0.08 + 0.92 * level / 100.0)  # SimLamp.active_power_w


def _level_at(segments: list[tuple[float, float, int]], starts: list[float], t: float) -> int:
    i = bisect.bisect_right(starts, t) - 1
    return segments[i][2] if i >= 0 else 0


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _lamps(world: LightWorld) -> list[_Lamp]:
    lamps: list[_Lamp] = []
    for street in AARHUS_STREETS:
        count = max(1, int(street.length_m // world.spacing_m))
        for k in range(count):
            along = (k + 0.5) * street.length_m / count
            lat, lon = street.position_at(along)
            gw = min(
                range(len(AARHUS_GATEWAYS)),
                key=lambda g: distance_m((lat, lon), AARHUS_GATEWAYS[g][1:3]),
            )
            eui = f"02c17a0c{len(lamps):08x}"
            lamps.append(_Lamp(eui, street.name, along, lat, lon, gw))
    return lamps


@dataclass(slots=True)
class _Passing:
    lamp: int
    reach_s: float  # level with the lamp
    seen_s: float  # entered its detection radius


def _traffic(world: LightWorld, lamps: list[_Lamp], seed: int) -> list[_Passing]:
    """Every road user of the week, and when they reach and enter each lamp of their street."""
    rng = random.Random(seed)
    by_street: dict[str, list[int]] = {}
    for i, lamp in enumerate(lamps):
        by_street.setdefault(lamp.street, []).append(i)
    passings: list[_Passing] = []
    end = WEEK_START + world.days * _DAY
    kinds = [k for k, _ in KIND_WEIGHTS]
    weights = [w for _, w in KIND_WEIGHTS]
    for street in AARHUS_STREETS:
        t = WEEK_START
        while True:  # Poisson arrivals at the hour's rate (thinning against the peak rate)
            peak = 230.0 * world.traffic_scale / 3600.0
            t += rng.expovariate(peak)
            if t >= end:
                break
            if rng.random() > traffic_per_hour(t) * world.traffic_scale / 3600.0 / peak:
                continue
            kind = rng.choices(kinds, weights)[0]
            speed = SPEEDS_MPS[kind]
            forward = rng.random() < 0.5
            for i in by_street[street.name]:
                lamp = lamps[i]
                from_start = lamp.along_m if forward else street.length_m - lamp.along_m
                reach = t + from_start / speed
                seen = t + max(0.0, from_start - world.detection_radius_m) / speed
                passings.append(_Passing(i, reach, seen))
    passings.sort(key=lambda p: p.reach_s)
    return passings


def _overrides(
    world: LightWorld, lamps: list[_Lamp], profile_level_at: Callable[[float], int]
) -> list[list[tuple[float, float]]]:
    """Presence reports -> gateway rule -> class C overrides: ``[lamp] -> [(from, to)]``."""
    devices = {}
    by_street: dict[str, list[int]] = {}
    for i, lamp in enumerate(lamps):
        by_street.setdefault(lamp.street, []).append(i)
    for street_lamps in by_street.values():
        for pos, i in enumerate(street_lamps):
            n = world.neighbours_each_side
            near = street_lamps[max(0, pos - n) : pos] + street_lamps[pos + 1 : pos + 1 + n]
            devices[lamps[i].dev_eui] = Device(
                lamps[i].dev_eui,
                kind="lamp",
                street=lamps[i].street,
                latitude=lamps[i].latitude,
                longitude=lamps[i].longitude,
                neighbours=[lamps[j].dev_eui for j in near],
            )
    index = {lamp.dev_eui: i for i, lamp in enumerate(lamps)}
    reports: list[tuple[float, int]] = []  # (time, lamp)
    for i, lamp in enumerate(lamps):
        last: float | None = None
        pending: float | None = None
        for seen in lamp.detections:
            if pending is not None and seen >= pending:
                reports.append((pending, i))
                last, pending = pending, None
            if last is None or seen - last >= world.presence_report_min_s:
                reports.append((seen, i))
                last = seen
            elif pending is None:
                pending = last + world.presence_report_min_s
        if pending is not None:
            reports.append((pending, i))
    reports.sort()
    up_s = time_on_air_s(
        EU868, 5, 13 + len(codec.encode("lamp_presence", {"road_users": 1, "dim_level": 100})[1])
    )
    example = {"dim_level": 100, "duration_s": 60, "fade_s": 2, "resume_schedule": False}
    example["command_id"] = 1  # the gateway numbers every command (gateway/commands.py)
    down_s = time_on_air_s(
        EU868,
        world.rx2_dr,
        13 + len(codec.encode("lamp_override", example)[1]),
        uplink=False,
    )
    free_at = [0.0] * len(AARHUS_GATEWAYS)
    queued_until: dict[int, float] = {}  # lamp -> when its queued override goes out
    out: list[list[tuple[float, float]]] = [[] for _ in lamps]
    for at, i in reports:
        # the level the lamp reports: boosted by its own sensor or held by an override that
        # reached it before now (overrides are planned in report order, so those are known)
        level = _boost_level_at(lamp := lamps[i], at) or _override_level_at(out[i], at)
        fields = {"road_users": 1, "dim_level": level or profile_level_at(at)}
        reporter = devices[lamp.dev_eui]
        ready = at + up_s + world.network_s
        reporter.last_seen = ready  # the gateway's receive time (gateway.rules.availability)
        plan = apply_lamp_presence(reporter, fields, world.lamps, devices.get, seen_at=ready)
        plan.twin.apply(reporter)  # what the service does with a rule's twin change
        for command in plan.commands:
            j = index[command.dev_eui]
            if queued_until.get(j, -1.0) > ready:
                continue  # replaces the one still queued: that one carries these fields
            g = lamps[j].gateway
            send = max(ready, free_at[g])
            if command.expires_in_s is not None and send >= ready + command.expires_in_s:
                continue  # expired waiting for the gateway: ChirpStack drops it (log EXPIRED)
            free_at[g] = send + down_s / world.duty_cycle
            queued_until[j] = send
            applied = send + down_s + float(command.fields["fade_s"])
            out[j].append((applied, send + down_s + float(command.fields["duration_s"])))
    return out


def _program_level(program: list[tuple[float, tuple[float, float, int]]], t: float) -> int:
    i = bisect.bisect_right(program, (t, (math.inf, math.inf, 0))) - 1
    return program[i][1][2] if i >= 0 else 0


def _override_level_at(spans: list[tuple[float, float]], t: float) -> int:
    """100 while one of a lamp's gateway overrides (``(applied, until)``) holds it at ``t``."""
    return 100 if any(a <= t < b for a, b in spans[-8:]) else 0


def _boost_level_at(lamp: _Lamp, t: float) -> int:
    """100 while the lamp is boosted by its own sensor at ``t`` (it just saw someone), else 0."""
    k = bisect.bisect_right(lamp.boosts, (t + 1.0, math.inf)) - 1
    return 100 if k >= 0 and lamp.boosts[k][0] - 1.0 <= t <= lamp.boosts[k][1] else 0


def simulate_light(world: LightWorld, seed: int) -> dict[str, LightOutcomes]:
    """The same week of road users under the three :data:`PROFILES`."""
    rng = random.Random(seed * 104_729 + 3)
    lamps = _lamps(world)
    passings = _traffic(world, lamps, seed)
    start, end = WEEK_START, WEEK_START + world.days * _DAY
    dark_days = {}
    for d in range(world.days + 1):
        dark_days[d] = sun_times(start + d * _DAY + 43_200, AARHUS_LATITUDE, AARHUS_LONGITUDE)

    def dark(t: float) -> bool:
        sunrise, sunset = dark_days[int((t - start) // _DAY)]
        return not sunrise <= t < sunset

    results: dict[str, LightOutcomes] = {}
    for name, profile in PROFILES.items():
        segments = _segments(profile, start, end)
        starts = [s[0] for s in segments]
        outcome = LightOutcomes()
        boosts_by_lamp: list[list[tuple[float, float]]] = [[] for _ in lamps]
        if name == "citypack":
            hold = float(profile["hold_time_s"])
            for lamp in lamps:
                lamp.detections.clear()
                lamp.boosts.clear()
            for p in passings:
                if rng.random() < world.detection_probability:
                    lamps[p.lamp].detections.append(p.seen_s)
            for lamp in lamps:
                lamp.detections.sort()
                for seen in lamp.detections:
                    if _level_at(segments, starts, seen) > 0:  # lamp_node boosts only when lit
                        lamp.boosts.append((seen + world.boost_fade_s, seen + hold))
            program = list(zip(starts, segments, strict=True))
            overrides = _overrides(world, lamps, functools.partial(_program_level, program))
            for i, lamp in enumerate(lamps):
                boosts_by_lamp[i] = _merge(lamp.boosts + overrides[i])
        for p in passings:
            if not dark(p.reach_s) or p.reach_s >= end:
                continue
            outcome.users_reached += 1
            level = _level_at(segments, starts, p.reach_s)
            lit = level >= int(profile["boost_level"])
            if not lit and boosts_by_lamp[p.lamp]:
                spans = boosts_by_lamp[p.lamp]
                k = bisect.bisect_right(spans, (p.reach_s, math.inf)) - 1
                lit = k >= 0 and spans[k][0] <= p.reach_s < spans[k][1]
            outcome.users_lit_ahead += lit
        outcome.energy_kwh = _energy_kwh(world, segments, starts, boosts_by_lamp, end)
        results[name] = outcome
    return results


def _energy_kwh(
    world: LightWorld,
    segments: list[tuple[float, float, int]],
    starts: list[float],
    held: list[list[tuple[float, float]]],
    end: float,
) -> float:
    """The week's lamp energy: every lamp (one list in ``held`` each) on the program, and at
    full over its own ``held`` spans (merged, no overlaps) besides."""
    lit_wh = sum(_power_w(world, lvl) * (b - a) for a, b, lvl in segments) / 3600.0
    extra_wh = 0.0
    for spans in held:
        for a, b in spans:
            extra_wh += _extra_wh(world, segments, starts, a, min(b, end))
    return (lit_wh * len(held) + extra_wh) / 1000.0


def _extra_wh(
    world: LightWorld,
    segments: list[tuple[float, float, int]],
    starts: list[float],
    a: float,
    b: float,
) -> float:
    """Energy above the program while a lamp is held at full from ``a`` to ``b``."""
    if b <= a:
        return 0.0
    i = max(0, bisect.bisect_right(starts, a) - 1)
    extra = 0.0
    while i < len(segments) and segments[i][0] < b:
        lo, hi, level = segments[i]
        overlap = min(hi, b) - max(lo, a)
        if overlap > 0:
            extra += (_power_w(world, 100) - _power_w(world, level)) * overlap
        i += 1
    return extra / 3600.0


def ideal_presence_kwh(world: LightWorld, seed: int, *, until: str) -> dict[str, float]:
    """Lamp energy (kWh) of the same week if citypack's lamps knew every road user: full from
    the moment each enters a lamp's detection radius (every one seen, after the boost fade)
    until ``"reach"``, when they are level with the lamp (and not a moment after: the least
    any strategy lighting from the sensor's radius can burn), or ``"leave"``, when they leave
    the radius on the far side; the profile's floor otherwise. Also ``full_on`` and ``static``
    for the ratios. A bound for the analysis (tools/sim/README.md), not a strategy: nothing
    in it could be deployed."""
    if until not in ("reach", "leave"):
        raise ValueError(f"until {until!r}: 'reach' or 'leave'")
    lamps = _lamps(world)
    passings = _traffic(world, lamps, seed)
    start, end = WEEK_START, WEEK_START + world.days * _DAY
    out: dict[str, float] = {}
    for name, profile in PROFILES.items():
        segments = _segments(profile, start, end)
        starts = [s[0] for s in segments]
        spans: list[list[tuple[float, float]]] = [[] for _ in lamps]
        if name == "citypack":
            for p in passings:
                if _level_at(segments, starts, p.seen_s) > 0:  # lamp_node boosts only when lit
                    off = p.reach_s if until == "reach" else 2 * p.reach_s - p.seen_s
                    spans[p.lamp].append((p.seen_s + world.boost_fade_s, off))
        held = [_merge(lamp_spans) for lamp_spans in spans]
        out[name] = _energy_kwh(world, segments, starts, held, end)
    return out


if __name__ == "__main__":  # python -m tools.sim.weeklight: the bounds of tools/sim/README.md
    for edge, meaning in (("reach", "are level with the lamp"), ("leave", "leave its radius")):
        kwh = ideal_presence_kwh(LightWorld(), seed=1, until=edge)
        print(
            f"every road user seen, full until they {meaning}: {kwh['citypack']:.1f} kWh, "
            f"{kwh['citypack'] / kwh['full_on']:.3f} of full on ({kwh['full_on']:.1f} kWh), "
            f"{kwh['citypack'] / kwh['static']:.3f} of static ({kwh['static']:.1f} kWh)"
        )
