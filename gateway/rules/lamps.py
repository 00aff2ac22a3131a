"""Lamp rules: profiles by config version, lighting ahead of traffic, day-burner, lamp failure.

Messages and fields: docs/interfaces.md (``lamp_status``, ``lamp_presence``, ``lamp_override``,
``lamp_profile``). Vocabulary after the TALQ 2.7.1 data model: a lamp *failure* is a
lit lamp that draws no power or reports a failure flag; a *day burner* draws power in daylight.

Profiles: the desired profile of a lamp is its own (set through a ``lamp_profile`` command) or
its group's from ``[lamps.profiles.<group>]``, else ``[lamps.profiles.default]``. Whenever a lamp
reports a ``config_version`` different from the desired one, :func:`reconcile_profile` plans a
``lamp_profile`` command; the twin shows ``config_in_sync`` once the versions agree.

Lighting ahead of traffic: a ``lamp_presence`` from one lamp plans a short ``lamp_override`` for
its registry neighbours that are lamps (the next lamps along its street) ahead of the road user
(:func:`apply_lamp_presence`), unconfirmed, because a late light is useless; a newer override
replaces an unsent older one (gateway.commands). A report from a lamp that is off (``dim_level``
0: daylight by its profile), or no longer at its boost level (its road users have gone), raises
nobody.

The rules are pure (gateway/rules/__init__.py): they read the device and return its twin changes
(``derived`` flags, the ``desired`` profile) in the outcome, never writing the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.config import LampsConfig
from gateway.rules import Outcome, PlannedCommand
from gateway.store.base import Device

__all__ = ["apply_lamp_presence", "apply_lamp_status", "profile_for", "reconcile_profile"]

_FAILURE_FLAGS = ("lamp_failure", "dimming_failure", "relay_failure", "supply_loss")


def _daytime(now: float, cfg: LampsConfig) -> bool:
    hour = datetime.fromtimestamp(now, UTC).hour
    return cfg.day_start_hour_utc <= hour < cfg.day_end_hour_utc


def apply_lamp_status(
    device: Device, fields: dict[str, Any], cfg: LampsConfig, now: float
) -> Outcome:
    out = Outcome()
    derived = out.twin.derived
    was = device.derived
    dim = fields.get("dim_level", 0)
    power = fields.get("active_power_w", 0)
    lit = isinstance(dim, int | float) and dim > 0
    reasons = [flag for flag in _FAILURE_FLAGS if fields.get(flag)]
    if lit and isinstance(power, int | float) and power < cfg.min_power_w:
        reasons.append("no_power")
    failed = bool(reasons)
    if failed and not was.get("lamp_failure"):
        out.event("lamp_failure", reasons=reasons, dim_level=dim, active_power_w=power)
    elif not failed and was.get("lamp_failure"):
        out.event("lamp_recovered")
    derived["lamp_failure"] = failed
    derived["failure_reasons"] = reasons
    day_burner = bool(fields.get("day_burner")) or (
        _daytime(now, cfg)
        and lit
        and isinstance(power, int | float)
        and power >= cfg.min_power_w
        and fields.get("mode") != "override"
    )
    if day_burner and not was.get("day_burner"):
        out.event("lamp_day_burner", dim_level=dim, active_power_w=power)
    derived["day_burner"] = day_burner
    return out


def _boost_level(device: Device, cfg: LampsConfig) -> float:
    """The level the lamp's own presence boost reaches: its profile's ``boost_level`` when the
    gateway knows its profile, else the level the gateway raises lamps to."""
    profile = profile_for(device, cfg)
    level = profile.get("boost_level") if profile else None
    return float(level) if isinstance(level, int | float) else float(cfg.presence_dim_level)


def _d2(a: Device, b: Device) -> float | None:
    """Squared local-plane distance in degrees of latitude (an order, not metres)."""
    if a.latitude is None or a.longitude is None or b.latitude is None or b.longitude is None:
        return None
    kx = math.cos(math.radians(a.latitude))
    return (a.latitude - b.latitude) ** 2 + ((a.longitude - b.longitude) * kx) ** 2


def _ahead(device: Device, neighbours: list[Device], sources: list[Device]) -> list[Device]:
    """The lamps to raise for a road user ``device`` has just seen.

    Coming from a lamp that reported just before (``sources``): the nearest neighbour farther
    from that lamp than ``device`` is, the next lamp on the way. Direction unknown: the two
    nearest neighbours (one either side in mid-street; the next two into the street at its
    end). Every neighbour when positions are missing. One lamp ahead is enough as the road user
    goes: the next lamp's own report raises the one after it, and every downlink spends the
    gateways' duty cycle (at RX2 DR0 about 15 s of a gateway's time each), which all the lamps
    of a district share (tools/sim/README.md, the week)."""
    near = {n.dev_eui: _d2(n, device) for n in neighbours}
    if any(d is None for d in near.values()):
        return neighbours
    by_distance = sorted(neighbours, key=lambda n: (near[n.dev_eui], n.dev_eui))
    if not sources:
        return by_distance[:2]
    for n in by_distance:
        for src in sources:
            far, here = _d2(n, src), _d2(device, src)
            if far is not None and here is not None and far > here:
                return [n]
    return []


def apply_lamp_presence(
    device: Device,
    fields: dict[str, Any],
    cfg: LampsConfig,
    lookup: Callable[[str], Device | None],
    *,
    seen_at: float | None,
) -> Outcome:
    """Light the road ahead of whoever ``device`` saw: a short override on its lamp neighbours.

    Which neighbours: the next one ahead of the road user (:func:`_ahead`). A neighbour that
    reported presence within ``presence_duration_s`` before this report (the report times are
    ``seen_at``, the gateway's receive time that becomes the device's ``last_seen``,
    gateway.rules.availability; kept in ``derived._presence_at``) most likely saw the
    same road user coming, so the road user goes away from it; with no such report the nearest
    two are raised, and every neighbour when positions are missing. Only this lamp's own state
    changes here (the time of its report); its neighbours are read, never written (each device
    is serialised on its own, gateway/store).

    Nobody is raised when the report says nobody is there any more: a lamp at a level above 0
    but below its boost level has seen nobody for its own hold time, so the report is a count
    held back by the lamp's rate limit (lamp_node ``presence_report_min_s``) and its road
    users have gone on, past the neighbours' own sensors. A lamp that is off (``dim_level`` 0)
    is off because its profile says daylight (lamp_node boosts only while its schedule is
    lit): the road needs no light ahead, and an override would switch the neighbours on by day.
    """
    out = Outcome()
    raised = []
    now = seen_at
    level = fields.get("dim_level")
    reporter_off = level == 0
    gone = isinstance(level, int | float) and 0 < level < _boost_level(device, cfg)
    lamps: list[Device] = []
    for neighbour_eui in [] if reporter_off or gone else device.neighbours:
        neighbour = lookup(neighbour_eui)
        if neighbour is None or neighbour.kind != "lamp" or neighbour.dev_eui == device.dev_eui:
            continue
        lamps.append(neighbour)
    sources = [
        n
        for n in lamps
        if now is not None
        and isinstance(at := n.derived.get("_presence_at"), int | float)
        and 0 <= now - at <= cfg.presence_duration_s
    ]
    for neighbour in _ahead(device, lamps, sources):
        raised.append(neighbour.dev_eui)
        out.commands.append(
            PlannedCommand(
                dev_eui=neighbour.dev_eui,
                message="lamp_override",
                fields={
                    "dim_level": cfg.presence_dim_level,
                    "duration_s": cfg.presence_duration_s,
                    "fade_s": cfg.presence_fade_s,
                    # False: hold dim_level for duration_s, then the lamp returns to its profile
                    # by itself. True would mean "end any override now" and ignore dim_level.
                    "resume_schedule": False,
                },
                confirmed=False,
                # light for a road user seen now: sent later than the hold it asks for, it
                # lights a lamp nobody it was planned for is near, and takes a class C slot
                # (duty cycle) from an override that is still in time (tools/sim/README.md)
                expires_in_s=float(cfg.presence_duration_s),
            )
        )
    if now is not None and not reporter_off and not gone:
        out.twin.derived["_presence_at"] = now
    out.event(
        "lamp_presence",
        road_users=fields.get("road_users"),
        street=device.street,
        raised=raised,
    )
    return out


def profile_for(device: Device, cfg: LampsConfig) -> dict[str, Any] | None:
    own = device.desired.get("lamp_profile")
    if isinstance(own, dict):
        return own
    profile = cfg.profiles.get(device.group) if device.group else None
    if profile is None:
        profile = cfg.profiles.get("default")
    return dict(profile) if isinstance(profile, dict) else None


def reconcile_profile(device: Device, cfg: LampsConfig, reported_version: int | None) -> Outcome:
    """Plan a ``lamp_profile`` when the lamp's reported config version differs from the desired."""
    out = Outcome()
    profile = profile_for(device, cfg)
    if profile is None or reported_version is None:
        return out
    version = profile.get("config_version")
    if not isinstance(version, int):
        return out
    if device.desired_version is None or "lamp_profile" not in device.desired:
        out.twin.desired["lamp_profile"] = profile
        out.twin.attrs["desired_version"] = version
    if version != reported_version:
        fields = {k: v for k, v in profile.items() if k != "command_id"}
        out.commands.append(PlannedCommand(device.dev_eui, "lamp_profile", fields, confirmed=True))
    return out
