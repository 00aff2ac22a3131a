"""Lamp rules: profiles by config version, lighting ahead of traffic, day-burner, lamp failure.

Messages and fields: docs/interfaces.md (``lamp_status``, ``lamp_presence``, ``lamp_override``,
``lamp_profile``). Vocabulary after TALQ 2.7.1 (reference/domain.md §6.1): a lamp *failure* is a
lit lamp that draws no power or reports a failure flag; a *day burner* draws power in daylight.

Profiles: the desired profile of a lamp is its own (set through a ``lamp_profile`` command) or
its group's from ``[lamps.profiles.<group>]``, else ``[lamps.profiles.default]``. Whenever a lamp
reports a ``config_version`` different from the desired one, :func:`reconcile_profile` plans a
``lamp_profile`` command; the twin shows ``config_in_sync`` once the versions agree.

Lighting ahead of traffic: a ``lamp_presence`` from one lamp plans a short ``lamp_override`` for
its registry neighbours that are lamps (the next lamps along its street), unconfirmed, because a
late light is useless; a newer override replaces an unsent older one (gateway.commands). A report
from a lamp that is off (``dim_level`` 0: daylight by its profile) raises nobody.
"""

from __future__ import annotations

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
    derived = device.derived
    dim = fields.get("dim_level", 0)
    power = fields.get("active_power_w", 0)
    lit = isinstance(dim, int | float) and dim > 0
    reasons = [flag for flag in _FAILURE_FLAGS if fields.get(flag)]
    if lit and isinstance(power, int | float) and power < cfg.min_power_w:
        reasons.append("no_power")
    failed = bool(reasons)
    if failed and not derived.get("lamp_failure"):
        out.event("lamp_failure", reasons=reasons, dim_level=dim, active_power_w=power)
    elif not failed and derived.get("lamp_failure"):
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
    if day_burner and not derived.get("day_burner"):
        out.event("lamp_day_burner", dim_level=dim, active_power_w=power)
    derived["day_burner"] = day_burner
    return out


def apply_lamp_presence(
    device: Device,
    fields: dict[str, Any],
    cfg: LampsConfig,
    lookup: Callable[[str], Device | None],
) -> Outcome:
    out = Outcome()
    raised = []
    # A lamp that reports presence while it is off (dim_level 0) is off because its profile says
    # daylight (lamp_node boosts only while its schedule is lit): the road needs no light ahead,
    # and an override would switch the neighbours on by day.
    reporter_off = fields.get("dim_level") == 0
    for neighbour_eui in [] if reporter_off else device.neighbours:
        neighbour = lookup(neighbour_eui)
        if neighbour is None or neighbour.kind != "lamp" or neighbour.dev_eui == device.dev_eui:
            continue
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
            )
        )
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
        device.desired["lamp_profile"] = profile
        device.desired_version = version
    if version != reported_version:
        fields = {k: v for k, v in profile.items() if k != "command_id"}
        out.commands.append(PlannedCommand(device.dev_eui, "lamp_profile", fields, confirmed=True))
    return out
