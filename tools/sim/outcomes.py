"""What happened in the simulated city, counted (issue 21): the waste and light outcomes.

Waste: truck kilometres, stops, bins emptied while under half full (a wasted stop), overflow
bin-hours (a bin at 100 % and not yet emptied: it overflows from then on), and for every bin fire
the seconds from the fire starting to the gateway's ``bin_fire`` event.

Light: lamp energy (kWh, from the lamps' meters), and for every road user passing a lamp in the
dark whether the lamp was already at its boost level when they reached it ("lit ahead"; reached =
the road user is level with the lamp, the lamp's own sensor having seen them a detection radius
earlier), and the road-user-seconds spent near a lamp (inside its detection radius) while it was
below the lowest level its night profile ever sets.

:class:`Outcomes` holds the counts; :class:`WorldAccounting` fills one from a
:class:`~tools.sim.world.World` through the world's observer hooks (``citypack demo`` and
``citypack sim``); ``citypack bench city_outcomes`` fills the same counts from its week model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tools.sim.world import RoadUser, SimBin, SimLamp, World, sun_times

__all__ = ["LightOutcomes", "Outcomes", "WasteOutcomes", "WorldAccounting", "profile_minimum"]


@dataclass(slots=True)
class WasteOutcomes:
    truck_km: float = 0.0
    stops: int = 0
    emptied_under_half: int = 0
    overflow_bin_hours: float = 0.0
    fire_alarm_s: list[float] = field(default_factory=list)  # fire started -> gateway event
    fires_unreported: int = 0

    def as_json(self) -> dict[str, Any]:
        alarms = sorted(self.fire_alarm_s)
        return {
            "truck_km": round(self.truck_km, 3),
            "stops": self.stops,
            "emptied_under_half": self.emptied_under_half,
            "overflow_bin_hours": round(self.overflow_bin_hours, 3),
            "fires": len(alarms) + self.fires_unreported,
            "fires_unreported": self.fires_unreported,
            "fire_alarm_s_max": round(alarms[-1], 1) if alarms else None,
            "fire_alarm_s_median": round(alarms[len(alarms) // 2], 1) if alarms else None,
        }


@dataclass(slots=True)
class LightOutcomes:
    energy_kwh: float = 0.0
    users_reached: int = 0  # road user x lamp passings in the dark
    users_lit_ahead: int = 0
    below_minimum_s: float = 0.0  # road-user-seconds near a lamp below its profile minimum

    @property
    def lit_ahead_fraction(self) -> float | None:
        return None if not self.users_reached else self.users_lit_ahead / self.users_reached

    def as_json(self) -> dict[str, Any]:
        fraction = self.lit_ahead_fraction
        return {
            "energy_kwh": round(self.energy_kwh, 4),
            "lamp_passings": self.users_reached,
            "lit_ahead": self.users_lit_ahead,
            "lit_ahead_fraction": None if fraction is None else round(fraction, 5),
            "below_minimum_s": round(self.below_minimum_s, 1),
        }


@dataclass(slots=True)
class Outcomes:
    waste: WasteOutcomes = field(default_factory=WasteOutcomes)
    light: LightOutcomes = field(default_factory=LightOutcomes)

    def as_json(self) -> dict[str, Any]:
        return {"waste": self.waste.as_json(), "light": self.light.as_json()}

    def text(self) -> str:
        w, li = self.waste.as_json(), self.light.as_json()
        fire = (
            f"fire -> gateway event {w['fire_alarm_s_median']:g} s median, "
            f"{w['fire_alarm_s_max']:g} s max over {w['fires']} fires"
            if w["fire_alarm_s_max"] is not None
            else f"{w['fires']} fires, none reported yet"
        )
        lit = li["lit_ahead_fraction"]
        lit_text = "no road user passed a lamp in the dark" if lit is None else f"{lit:.1%}"
        return (
            f"outcomes, waste: {w['truck_km']:.2f} truck km, {w['stops']} stops, "
            f"{w['emptied_under_half']} emptied under half full, "
            f"{w['overflow_bin_hours']:.2f} overflow bin-hours, {fire}\n"
            f"outcomes, light: {li['energy_kwh']:.3f} kWh, lit ahead {lit_text} of "
            f"{li['lamp_passings']} passings, {li['below_minimum_s']:.0f} s near a lamp below "
            "its profile minimum"
        )


def profile_minimum(profile: dict[str, Any] | None) -> int:
    """The lowest level a night profile lights a street at (its lowest non-zero step level;
    0 steps are daylight). Without a profile, the firmware's default is full light all night."""
    if not profile:
        return 100
    levels = [int(s["dim_level"]) for s in profile.get("steps", []) if s.get("dim_level", 0) > 0]
    return min(levels) if levels else int(profile.get("base_level", 100))


class WorldAccounting:
    """Counts :class:`Outcomes` from a world it is attached to (``world.observer = self``)."""

    def __init__(
        self,
        world: World,
        *,
        profile: dict[str, Any] | None = None,
        outcomes: Outcomes | None = None,
    ) -> None:
        self.outcomes = outcomes or Outcomes()
        self.boost_level = int((profile or {}).get("boost_level", 100))
        self.minimum_level = profile_minimum(profile)
        self.fires: dict[str, float] = {}  # bin on fire, not yet reported -> when it started
        self._energy_start_wh = sum(lamp.energy_wh for lamp in world.lamps.values())
        self._world = world
        self._dark_day = -1.0
        self._sun = (0.0, 0.0)
        world.observer = self

    # --- world hooks ------------------------------------------------------------------------

    def dark(self, now: float) -> bool:
        day = math.floor(now / 86400.0)
        if day != self._dark_day:
            self._dark_day = day
            lamps = list(self._world.lamps.values())
            lat, lon = (lamps[0].latitude, lamps[0].longitude) if lamps else (56.1572, 10.2107)
            self._sun = sun_times(now, lat, lon)
        sunrise, sunset = self._sun
        return not sunrise <= now < sunset

    def on_step(self, world: World, dt: float) -> None:
        waste = self.outcomes.waste
        for sim_bin in world.bins.values():
            if sim_bin.fill_percent >= 100.0:
                waste.overflow_bin_hours += dt / 3600.0
        if not self.dark(world.time):
            return
        for lamp in world.lamps.values():
            if lamp.users_inside and lamp.dim_level < self.minimum_level:
                self.outcomes.light.below_minimum_s += dt * lamp.users_inside

    def on_pickup(self, world: World, sim_bin: SimBin, fill_before: float) -> None:
        waste = self.outcomes.waste
        waste.stops += 1
        if fill_before < 50.0:
            waste.emptied_under_half += 1

    def on_truck_moved(self, world: World, metres: float) -> None:
        self.outcomes.waste.truck_km += metres / 1000.0

    def on_fire(self, world: World, sim_bin: SimBin) -> None:
        self.fires.setdefault(sim_bin.dev_eui, world.time)

    def on_lamp_reached(self, world: World, lamp: SimLamp, user: RoadUser) -> None:
        if not self.dark(world.time):
            return
        light = self.outcomes.light
        light.users_reached += 1
        if lamp.dim_level >= self.boost_level and not lamp.lamp_failure:
            light.users_lit_ahead += 1

    # --- from outside the world -------------------------------------------------------------

    def gateway_event(self, event_type: str, dev_eui: str, sim_time: float) -> None:
        """The gateway published an event (heard on MQTT at simulated time ``sim_time``)."""
        if event_type == "bin_fire":
            started = self.fires.pop(dev_eui.lower(), None)
            if started is not None:
                self.outcomes.waste.fire_alarm_s.append(max(0.0, sim_time - started))

    def finish(self) -> Outcomes:
        """Close the books: lamp energy since attaching, fires never reported."""
        world = self._world
        energy = sum(lamp.energy_wh for lamp in world.lamps.values()) - self._energy_start_wh
        self.outcomes.light.energy_kwh = energy / 1000.0
        self.outcomes.waste.fires_unreported = len(self.fires)
        return self.outcomes
