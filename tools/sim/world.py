"""A simulated city for the fleet simulator: streets of Aarhus, bins, lamps, road users, a truck.

The world knows nothing about LoRaWAN. It holds the physical state that the firmware's sensor
drivers read (distance to the bin's contents, temperature, tilt, presence, the lamp's meter) and it
moves forward in simulated time when :meth:`World.advance` is called with a simulated Unix time.

Sources for the models:

- Street geometry: the centre lines of a few streets of central Aarhus, traced by hand from
  OpenStreetMap (© OpenStreetMap contributors, ODbL) to about 20 m; good enough for a demo map,
  not for navigation.
- Sunrise and sunset: the firmware's ``drivers.sun`` (NOAA solar calculator), the same the lamps
  run their astronomical profile steps on.
- Bins: ultrasonic level sensors measure the distance from the lid to the contents, so the
  distance the driver reads is ``sensor_offset_cm + (1 - fill) * container_height_cm``
  (the uCIFI 3419 "filling level" object measures it the same way, OMA LwM2M registry).
- Road users: a Poisson arrival process per street whose rate follows the hour of the day, with
  walking, cycling and driving speeds; a lamp "sees" a road user inside its detection radius
  (TALQ ``PresenceSensorFunction``).
"""

from __future__ import annotations

import importlib
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# Metres per degree of latitude; a degree of longitude is this times cos(latitude).
_M_PER_DEG_LAT = 111_195.0

AARHUS_LATITUDE = 56.1572
AARHUS_LONGITUDE = 10.2107


class WorldError(Exception):
    """A request the world cannot satisfy (an unknown device, a street that does not exist)."""


@dataclass(frozen=True, slots=True)
class Street:
    """A street as a polyline of (latitude, longitude) points."""

    name: str
    points: tuple[tuple[float, float], ...]

    def segment_lengths_m(self) -> list[float]:
        return [distance_m(a, b) for a, b in zip(self.points, self.points[1:], strict=False)]

    @property
    def length_m(self) -> float:
        return sum(self.segment_lengths_m())

    def position_at(self, along_m: float) -> tuple[float, float]:
        """The (latitude, longitude) ``along_m`` metres from the street's first point."""
        along_m = min(max(along_m, 0.0), self.length_m)
        for (a, b), length in zip(
            zip(self.points, self.points[1:], strict=False), self.segment_lengths_m(), strict=True
        ):
            if along_m <= length or length == 0:
                t = 0.0 if length == 0 else along_m / length
                return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
            along_m -= length
        return self.points[-1]


def slug(text: str) -> str:
    """An ASCII name part for a street: ``"Nørre Allé"`` → ``"norre-alle"``."""
    table = str.maketrans({"æ": "ae", "ø": "o", "å": "aa", "é": "e", " ": "-"})
    return "".join(
        c for c in text.lower().translate(table) if c.isascii() and (c.isalnum() or c == "-")
    )


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular distance in metres; within a city the error is far below a metre."""
    mean_lat = math.radians((a[0] + b[0]) / 2)
    dy = (b[0] - a[0]) * _M_PER_DEG_LAT
    dx = (b[1] - a[1]) * _M_PER_DEG_LAT * math.cos(mean_lat)
    return math.hypot(dx, dy)


# Central Aarhus, traced from OpenStreetMap (see the module docstring).
AARHUS_STREETS: tuple[Street, ...] = (
    Street(
        "Søndergade",
        ((56.15044, 10.20448), (56.15221, 10.20617), (56.15420, 10.20800), (56.15562, 10.20929)),
    ),
    Street(
        "Mejlgade",
        ((56.15772, 10.21180), (56.15950, 10.21215), (56.16139, 10.21257), (56.16310, 10.21290)),
    ),
    Street(
        "Jægergårdsgade",
        ((56.14930, 10.20050), (56.14865, 10.20420), (56.14812, 10.20760), (56.14770, 10.21050)),
    ),
    Street(
        "Nørre Allé",
        ((56.15805, 10.20602), (56.16012, 10.20480), (56.16220, 10.20360), (56.16400, 10.20250)),
    ),
    Street(
        "Frederiks Allé",
        ((56.15248, 10.20178), (56.15090, 10.19905), (56.14930, 10.19640), (56.14800, 10.19430)),
    ),
    Street(
        "Vestergade",
        ((56.15680, 10.20510), (56.15640, 10.20230), (56.15598, 10.19940), (56.15560, 10.19700)),
    ),
)

# Where the simulated LoRa gateways stand (roof tops around the centre).
AARHUS_GATEWAYS: tuple[tuple[str, float, float, float], ...] = (
    ("a840411d4e5c0001", 56.15390, 10.20390, 42.0),  # near Aarhus Rådhus
    ("a840411d4e5c0002", 56.16100, 10.20900, 35.0),  # near the university's south end
    ("a840411d4e5c0003", 56.14860, 10.19800, 30.0),  # Frederiksbjerg
)


def _firmware_sun() -> Any:
    """``drivers.sun`` from the firmware: the lamps schedule on it, so the world agrees."""
    from tools.sim.fleet import firmware_path

    firmware_path()
    return importlib.import_module("drivers.sun")


def sun_times(unix_time: float, latitude: float, longitude: float) -> tuple[float, float]:
    """Sunrise and sunset (Unix seconds, UTC) of the UTC day containing ``unix_time``.

    Computed by the firmware's own ``drivers.sun`` (NOAA solar calculator), so the simulated
    dusk is the one the lamps switch on at. Polar day or night (no event) is returned as a
    sunrise at 00:00 and a sunset at 24:00 (day) or both at noon (night).
    """
    day = math.floor(unix_time / 86400.0)
    rise, set_ = _firmware_sun().sunrise_sunset_utc(day, latitude, longitude)
    if rise is None or set_ is None:
        noon_decl_positive = time.gmtime(day * 86400).tm_mon in (4, 5, 6, 7, 8, 9)
        polar_day = noon_decl_positive == (latitude > 0)
        rise, set_ = (0.0, 1440.0) if polar_day else (720.0, 720.0)
    return day * 86400.0 + rise * 60.0, day * 86400.0 + set_ * 60.0


def is_dark(
    unix_time: float, latitude: float = AARHUS_LATITUDE, longitude: float = AARHUS_LONGITUDE
) -> bool:
    sunrise, sunset = sun_times(unix_time, latitude, longitude)
    return not sunrise <= unix_time < sunset


def ambient_temperature_c(unix_time: float) -> float:
    """A late-autumn Aarhus day: 3 °C before dawn, 8 °C at 14:00 local (UTC+1)."""
    local_hour = ((unix_time / 3600.0) + 1.0) % 24.0
    return 5.5 + 2.5 * math.cos((local_hour - 14.0) / 24.0 * 2 * math.pi)


def traffic_per_hour(unix_time: float) -> float:
    """Road users per hour entering one street, by local hour: busy evenings, quiet nights."""
    local_hour = int(((unix_time / 3600.0) + 1.0) % 24.0)
    profile = (
        12, 8, 5, 4, 4, 10, 40, 120, 180, 140, 110, 120,
        140, 130, 130, 150, 200, 220, 170, 120, 90, 70, 45, 25,
    )  # fmt: skip
    return float(profile[local_hour])


@dataclass(slots=True)
class SimBin:
    """A street bin with an ultrasonic fill sensor, a temperature probe and a tilt sensor."""

    dev_eui: str
    name: str
    street: str
    along_m: float
    latitude: float
    longitude: float
    fill_rate_percent_per_h: float
    fill_percent: float = 0.0
    container_height_cm: float = 100.0
    sensor_offset_cm: float = 30.0  # above the full line: JSN-SR04T's 20-25 cm blind zone
    temperature_c: float = 5.0
    tilt_deg: float = 0.0
    on_fire: bool = False
    pickups: int = 0

    def distance_cm(self) -> float:
        """What the level sensor measures: lid to contents."""
        empty_part = 1.0 - self.fill_percent / 100.0
        return self.sensor_offset_cm + empty_part * self.container_height_cm


@dataclass(slots=True)
class SimLamp:
    """A street lamp with a presence sensor, a dimmer driven by the firmware and a meter."""

    dev_eui: str
    name: str
    street: str
    along_m: float
    latitude: float
    longitude: float
    rated_power_w: float = 60.0
    detection_radius_m: float = 18.0
    dim_level: int = 0  # what the firmware last set on the dimmer
    present: bool = False  # a road user is inside the detection radius now
    passes: int = 0  # road users that have entered the radius, ever
    energy_wh: float = 0.0
    lamp_failure: bool = False
    _inside: set[int] = field(default_factory=set)

    @property
    def users_inside(self) -> int:
        """Road users inside the detection radius now."""
        return len(self._inside)

    def active_power_w(self) -> float:
        if self.lamp_failure or self.dim_level <= 0:
            return 0.0
        # A dimmed LED driver keeps about 8 % overhead (typical 1-10 V / DALI drivers).
        return round(self.rated_power_w * (0.08 + 0.92 * self.dim_level / 100.0), 1)


@dataclass(slots=True)
class RoadUser:
    ident: int
    kind: str  # "pedestrian" | "cyclist" | "car"
    street: str
    along_m: float
    speed_mps: float
    direction: int  # +1 from the first point, -1 from the last


# road users: walking, cycling, driving speeds and shares (also used by tools/sim/weeklight.py)
SPEEDS_MPS = {"pedestrian": 1.4, "cyclist": 5.0, "car": 9.0}
KIND_WEIGHTS = (("pedestrian", 0.5), ("cyclist", 0.3), ("car", 0.2))


@dataclass(slots=True)
class WorldEvent:
    """Something that happened in the world, for the terminal view and the logs."""

    time: float
    kind: str  # "pickup", "fire", "tilt", "road_user", "truck_round"
    subject: str  # a devEui, a street or "truck"
    detail: str


class WorldObserver(Protocol):
    """What :class:`World` tells an observer (tools/sim/outcomes.py counts the city's outcomes)."""

    def on_step(self, world: World, dt: float) -> None: ...
    def on_pickup(self, world: World, sim_bin: SimBin, fill_before: float) -> None: ...
    def on_truck_moved(self, world: World, metres: float) -> None: ...
    def on_fire(self, world: World, sim_bin: SimBin) -> None: ...
    def on_lamp_reached(self, world: World, lamp: SimLamp, user: RoadUser) -> None: ...


@dataclass(slots=True)
class Truck:
    """A collection truck: drives to each bin of its round in order and empties it."""

    speed_mps: float = 8.0
    service_s: float = 45.0
    position: tuple[float, float] = (AARHUS_LATITUDE, AARHUS_LONGITUDE)
    route: list[str] = field(default_factory=list)
    busy_until: float = 0.0
    rounds: int = 0
    emptied: int = 0

    @property
    def active(self) -> bool:
        return bool(self.route)


class World:
    """The simulated city. Deterministic for a given seed.

    Build it with :meth:`aarhus` (or add bins, lamps and streets by hand), then call
    :meth:`advance` with increasing simulated Unix times. Sensor drivers read the
    :class:`SimBin` / :class:`SimLamp` objects; lamps get their dimmer level written back by the
    firmware through :meth:`set_dim_level`.
    """

    def __init__(
        self,
        *,
        streets: Sequence[Street] = AARHUS_STREETS,
        seed: int = 1,
        start_time: float = 0.0,
        traffic_scale: float = 1.0,
        step_s: float = 1.0,
        on_event: Callable[[WorldEvent], None] | None = None,
    ) -> None:
        self.step_s = step_s  # longest simulation step; road users move at most this far apart
        self.on_presence: Callable[[SimLamp], None] | None = None  # a road user entered a lamp
        self.observer: WorldObserver | None = None  # outcome accounting (tools/sim/outcomes.py)
        self.streets = {s.name: s for s in streets}
        self.rng = random.Random(seed)
        self.time = start_time
        self.traffic_scale = traffic_scale
        self.bins: dict[str, SimBin] = {}
        self.lamps: dict[str, SimLamp] = {}
        self.road_users: list[RoadUser] = []
        self.truck = Truck()
        self.events: list[WorldEvent] = []
        self.on_event = on_event  # called with each WorldEvent as it happens (the demo sets it)
        self._next_user = 0
        self._lamps_by_street: dict[str, list[SimLamp]] = {}

    # --- building -------------------------------------------------------------------------

    @classmethod
    def aarhus(
        cls,
        *,
        bins: int,
        lamps: int,
        seed: int = 1,
        start_time: float = 0.0,
        dev_euis: Iterable[str] | None = None,
        traffic_scale: float = 1.0,
        step_s: float = 1.0,
        fill_rate_range: tuple[float, float] = (0.6, 4.0),
    ) -> World:
        """A city of ``bins`` bins and ``lamps`` lamps spread along :data:`AARHUS_STREETS`.

        ``fill_rate_range`` is in percent per hour (a street bin fills in one to a few days).
        ``dev_euis`` gives the EUIs in order (bins first, then lamps); otherwise EUIs are made
        from a locally administered prefix (02c17a0b bins, 02c17a0c lamps) and the index, so
        the same arguments always give the same city.
        """
        world = cls(seed=seed, start_time=start_time, traffic_scale=traffic_scale, step_s=step_s)
        euis = list(dev_euis) if dev_euis is not None else []
        if euis and len(euis) < bins + lamps:
            raise WorldError(f"{len(euis)} DevEUIs given for {bins + lamps} nodes")
        streets = list(world.streets.values())
        for index in range(bins):
            street = streets[index % len(streets)]
            slot = index // len(streets)
            per_street = math.ceil(bins / len(streets))
            along = street.length_m * (slot + 0.5) / per_street
            eui = euis[index] if euis else f"02c17a0b{index:08x}"
            world.add_bin(
                eui,
                street.name,
                along,
                name=f"bin-{slug(street.name)}-{slot + 1:02d}",
                fill_rate_percent_per_h=world.rng.uniform(*fill_rate_range),
                fill_percent=world.rng.uniform(0.0, 60.0),
            )
        for index in range(lamps):
            street = streets[index % len(streets)]
            slot = index // len(streets)
            per_street = math.ceil(lamps / len(streets))
            along = street.length_m * (slot + 0.5) / per_street
            eui = euis[bins + index] if euis else f"02c17a0c{index:08x}"
            world.add_lamp(
                eui,
                street.name,
                along,
                name=f"lamp-{slug(street.name)}-{slot + 1:02d}",
            )
        return world

    def add_bin(
        self,
        dev_eui: str,
        street: str,
        along_m: float,
        *,
        name: str | None = None,
        fill_rate_percent_per_h: float = 2.0,
        fill_percent: float = 0.0,
    ) -> SimBin:
        lat, lon = self._street(street).position_at(along_m)
        sim_bin = SimBin(
            dev_eui=dev_eui.lower(),
            name=name or f"bin-{dev_eui[-4:]}",
            street=street,
            along_m=along_m,
            latitude=lat,
            longitude=lon,
            fill_rate_percent_per_h=fill_rate_percent_per_h,
            fill_percent=fill_percent,
            temperature_c=ambient_temperature_c(self.time),
        )
        self.bins[sim_bin.dev_eui] = sim_bin
        return sim_bin

    def add_lamp(
        self, dev_eui: str, street: str, along_m: float, *, name: str | None = None
    ) -> SimLamp:
        lat, lon = self._street(street).position_at(along_m)
        lamp = SimLamp(
            dev_eui=dev_eui.lower(),
            name=name or f"lamp-{dev_eui[-4:]}",
            street=street,
            along_m=along_m,
            latitude=lat,
            longitude=lon,
        )
        self.lamps[lamp.dev_eui] = lamp
        self._lamps_by_street.setdefault(street, []).append(lamp)
        self._lamps_by_street[street].sort(key=lambda item: item.along_m)
        return lamp

    def lamps_on(self, street: str) -> list[SimLamp]:
        """The lamps of a street in order along it."""
        return list(self._lamps_by_street.get(street, []))

    def position_of(self, dev_eui: str) -> tuple[float, float]:
        node = self.bins.get(dev_eui) or self.lamps.get(dev_eui)
        if node is None:
            raise WorldError(f"no node {dev_eui} in the world")
        return node.latitude, node.longitude

    # --- things that happen -----------------------------------------------------------------

    def set_fire(self, dev_eui: str, temperature_c: float = 85.0) -> None:
        sim_bin = self._bin(dev_eui)
        sim_bin.on_fire = True
        sim_bin.temperature_c = temperature_c
        if self.observer is not None:
            self.observer.on_fire(self, sim_bin)
        self._event("fire", dev_eui, f"{temperature_c:.0f} °C in {sim_bin.name}")

    def extinguish(self, dev_eui: str) -> None:
        sim_bin = self._bin(dev_eui)
        sim_bin.on_fire = False
        sim_bin.temperature_c = ambient_temperature_c(self.time)

    def tip_over(self, dev_eui: str, tilt_deg: float = 80.0) -> None:
        sim_bin = self._bin(dev_eui)
        sim_bin.tilt_deg = tilt_deg
        self._event("tilt", dev_eui, f"{sim_bin.name} knocked over ({tilt_deg:.0f}°)")

    def empty_bin(self, dev_eui: str) -> None:
        """The truck empties a bin: a little is always left at the bottom."""
        sim_bin = self._bin(dev_eui)
        before = sim_bin.fill_percent
        sim_bin.fill_percent = self.rng.uniform(0.0, 4.0)
        sim_bin.tilt_deg = 0.0  # the crew stands a knocked-over bin up again
        sim_bin.pickups += 1
        self.truck.emptied += 1
        if self.observer is not None:
            self.observer.on_pickup(self, sim_bin, before)
        self._event("pickup", dev_eui, f"{sim_bin.name} emptied at {before:.0f} %")

    def spawn_road_user(
        self,
        street: str,
        *,
        kind: str = "pedestrian",
        direction: int = 1,
        along_m: float | None = None,
    ) -> RoadUser:
        length = self._street(street).length_m
        start = along_m if along_m is not None else (0.0 if direction > 0 else length)
        user = RoadUser(self._next_user, kind, street, start, SPEEDS_MPS[kind], direction)
        self._next_user += 1
        self.road_users.append(user)
        self._update_presence(user)
        return user

    def set_dim_level(self, dev_eui: str, dim_level: int) -> None:
        """Called by the simulated dimmer driver when the firmware sets a level."""
        self._lamp(dev_eui).dim_level = max(0, min(100, int(dim_level)))

    def dispatch_truck(self, dev_euis: Iterable[str], *, in_order: bool = False) -> list[str]:
        """Start a collection round over ``dev_euis`` (those that are bins): in the order given
        when ``in_order`` (a planned route, gateway/routes.py), else nearest first."""
        wanted = list(dict.fromkeys(eui.lower() for eui in dev_euis if eui.lower() in self.bins))
        route: list[str] = wanted if in_order else []
        here = self.truck.position
        remaining = set() if in_order else set(wanted)
        while remaining:  # nearest-neighbour tour: short and deterministic
            nxt = min(remaining, key=lambda e: (distance_m(here, self.position_of(e)), e))
            route.append(nxt)
            here = self.position_of(nxt)
            remaining.remove(nxt)
        self.truck.route = route
        self.truck.busy_until = self.time
        if route:
            self.truck.rounds += 1
            self._event("truck_round", "truck", f"round {self.truck.rounds}: {len(route)} bins")
        return route

    # --- time -------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Move the world to simulated Unix time ``now`` (never backwards)."""
        dt = now - self.time
        if dt <= 0:
            return
        # Long gaps are taken in steps so road users do not jump past lamps unseen.
        while dt > 0:
            chunk = min(dt, self.step_s)
            self._step(chunk)
            dt -= chunk

    def _step(self, dt: float) -> None:
        self.time += dt
        ambient = ambient_temperature_c(self.time)
        for sim_bin in self.bins.values():
            sim_bin.fill_percent = min(
                100.0, sim_bin.fill_percent + sim_bin.fill_rate_percent_per_h * dt / 3600.0
            )
            if not sim_bin.on_fire:
                sim_bin.temperature_c = ambient
        for lamp in self.lamps.values():
            lamp.energy_wh += lamp.active_power_w() * dt / 3600.0
        self._move_road_users(dt)
        self._move_truck()
        if self.observer is not None:
            self.observer.on_step(self, dt)

    def _move_road_users(self, dt: float) -> None:
        rate_per_s = traffic_per_hour(self.time) * self.traffic_scale / 3600.0
        for street in self.streets:
            if not self._lamps_by_street.get(street):
                continue
            if self.rng.random() < rate_per_s * dt:
                kind = self.rng.choices([k for k, _ in KIND_WEIGHTS], [w for _, w in KIND_WEIGHTS])[
                    0
                ]
                self.spawn_road_user(street, kind=kind, direction=self.rng.choice((1, -1)))
        keep: list[RoadUser] = []
        for user in self.road_users:
            before = user.along_m
            user.along_m += user.direction * user.speed_mps * dt
            if self.observer is not None:
                low, high = sorted((before, user.along_m))
                for lamp in self._lamps_by_street.get(user.street, []):
                    if low < lamp.along_m <= high:  # level with the lamp during this step
                        self.observer.on_lamp_reached(self, lamp, user)
            length = self.streets[user.street].length_m
            if user.along_m < -30 or user.along_m > length + 30:
                for lamp in self._lamps_by_street.get(user.street, []):
                    lamp._inside.discard(user.ident)
                    lamp.present = bool(lamp._inside)
                continue
            self._update_presence(user)
            keep.append(user)
        self.road_users = keep

    def _update_presence(self, user: RoadUser) -> None:
        for lamp in self._lamps_by_street.get(user.street, []):
            inside = abs(lamp.along_m - user.along_m) <= lamp.detection_radius_m
            if inside and user.ident not in lamp._inside:
                lamp._inside.add(user.ident)
                lamp.passes += 1
                if self.on_presence is not None:
                    self.on_presence(lamp)
            elif not inside:
                lamp._inside.discard(user.ident)
            lamp.present = bool(lamp._inside)

    def _move_truck(self) -> None:
        truck = self.truck
        while truck.route and self.time >= truck.busy_until:
            target = truck.route[0]
            where = self.position_of(target)
            travel_s = distance_m(truck.position, where) / truck.speed_mps
            if truck.position != where:
                truck.busy_until = self.time + travel_s
                if self.observer is not None:
                    self.observer.on_truck_moved(self, travel_s * truck.speed_mps)
                truck.position = where
                continue
            self.empty_bin(target)
            truck.route.pop(0)
            truck.busy_until = self.time + truck.service_s

    # --- helpers ----------------------------------------------------------------------------

    def _event(self, kind: str, subject: str, detail: str) -> None:
        event = WorldEvent(self.time, kind, subject, detail)
        self.events.append(event)
        del self.events[:-200]
        if self.on_event is not None:
            self.on_event(event)

    def _street(self, name: str) -> Street:
        try:
            return self.streets[name]
        except KeyError:
            raise WorldError(f"no street {name!r}; known: {', '.join(self.streets)}") from None

    def _bin(self, dev_eui: str) -> SimBin:
        try:
            return self.bins[dev_eui.lower()]
        except KeyError:
            raise WorldError(f"no bin {dev_eui} in the world") from None

    def _lamp(self, dev_eui: str) -> SimLamp:
        try:
            return self.lamps[dev_eui.lower()]
        except KeyError:
            raise WorldError(f"no lamp {dev_eui} in the world") from None
