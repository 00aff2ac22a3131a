"""Rules without I/O: bins, lamps, availability.

The rules are pure (gateway/rules/__init__.py): every call here goes through :func:`run`, which
checks that the rule left the device as it was and then makes the returned twin change on it,
as the service does (gateway/service.py ``_carry_out``), so a sequence of reports sees the state
the previous ones left."""

from __future__ import annotations

import copy
import csv
import io
from collections.abc import Callable
from typing import Any

import pytest

from gateway.config import AvailabilityConfig, BinsConfig, LampsConfig
from gateway.rules import Outcome, availability, bins, lamps
from gateway.store.base import Device

H = 3600.0
NIGHT = 1_772_400_000.0  # 21:20 UTC
NOON = 1_772_452_800.0  # 12:00 UTC


def status(fill: int, **extra: object) -> dict[str, object]:
    return {
        "fill_percent": fill,
        "temperature_c": 15,
        "battery_percent": 90,
        "tilt": False,
        "fire": False,
        "sensor_fault": False,
        "pickup_count": 0,
        **extra,
    }


def types(outcome: Outcome) -> list[str]:
    return [t for t, _ in outcome.events]


def run(rule: Callable[..., Outcome], device: Device, *args: Any, **kwargs: Any) -> Outcome:
    """``rule(device, *args)``; the device must come back untouched, then the outcome's twin
    change is made on it (the service's part)."""
    before = copy.deepcopy(device)
    out = rule(device, *args, **kwargs)
    assert device == before, f"{rule.__name__} changed the device in place"
    out.twin.apply(device)
    return out


def test_full_fires_once_per_filling_at_the_bins_own_threshold() -> None:
    cfg = BinsConfig()
    device = Device("01", kind="bin")
    device.desired["bin_config"] = {"full_threshold_percent": 60}
    assert types(run(bins.apply_bin_status, device, status(55), cfg, 0)) == []
    assert types(run(bins.apply_bin_status, device, status(61), cfg, H)) == ["bin_full"]
    assert types(run(bins.apply_bin_status, device, status(70), cfg, 2 * H)) == []
    other = Device("02", kind="bin")
    assert types(run(bins.apply_bin_status, other, status(61), cfg, 0)) == []  # default 80


def test_fill_rate_forecast_and_pickup() -> None:
    cfg = BinsConfig(full_threshold_percent=80, pickup_drop_percent=30)
    device = Device("01", kind="bin")
    for hour, fill in enumerate((10, 20, 30, 40)):
        run(bins.apply_bin_status, device, status(fill), cfg, hour * H)
    assert device.derived["fill_rate_percent_per_h"] == pytest.approx(10.0)
    assert device.derived["forecast_full_at"] == pytest.approx(3 * H + 4 * H)
    out = run(bins.apply_bin_status, device, status(3), cfg, 4 * H)
    assert types(out) == ["bin_pickup"]
    assert out.events[0][1]["drop_percent"] == 37
    assert device.derived["fill_rate_percent_per_h"] is None  # one sample since the pickup
    assert bins.fill_rate_per_h([[0, 5]]) is None and bins.fill_rate_per_h([[1, 5], [1, 6]]) is None


def test_fill_rate_over_a_whole_day_is_the_days_rise() -> None:
    # waste by day only: 07:00-23:00 at 5 %/h, nothing at night; hourly readings from 06:00 to
    # 06:00 the next day rise 80 % in 24 h
    day = [[h * H, 5.0 * min(16, max(0, h - 1))] for h in range(25)]
    assert bins.fill_rate_per_h(day) == pytest.approx(80 / 24)
    slope = bins.fill_rate_per_h(day[:-1])  # 23 h: the least-squares line, steeper than that
    assert slope is not None and slope > 1.05 * 80 / 24


def test_pickup_reported_by_the_node_counts_since_the_previous_status() -> None:
    cfg = BinsConfig(pickup_drop_percent=50)
    device = Device("01", kind="bin")
    run(bins.apply_bin_status, device, status(40, pickup_count=0), cfg, 0)
    # a 30 % drop is under the gateway's own threshold, but the node saw the truck
    out = run(bins.apply_bin_status, device, status(10, pickup_count=1), cfg, H)
    assert types(out) == ["bin_pickup"]
    # the next report carries 0 again (pickups since the previous status): no second pickup
    assert types(run(bins.apply_bin_status, device, status(12, pickup_count=0), cfg, 2 * H)) == []
    # a second pickup in a row reports 1 again and is a pickup again
    run(bins.apply_bin_status, device, status(45, pickup_count=0), cfg, 3 * H)
    assert types(run(bins.apply_bin_status, device, status(5, pickup_count=1), cfg, 4 * H)) == [
        "bin_pickup"
    ]


def test_fire_and_tilt_on_transition_and_from_alarms() -> None:
    cfg = BinsConfig(fire_threshold_c=70)
    device = Device("01", kind="bin")
    assert types(run(bins.apply_bin_status, device, status(10, temperature_c=75), cfg, 0)) == [
        "bin_fire"
    ]
    assert types(run(bins.apply_bin_status, device, status(10, temperature_c=80), cfg, 1)) == []
    assert types(run(bins.apply_bin_status, device, status(10, tilt=True), cfg, 2)) == ["bin_tilt"]
    alarm = run(
        bins.apply_bin_alarm, device, {"alarm": "fire", "value": 90, "fill_percent": 10}, cfg, 3
    )
    assert types(alarm) == ["bin_fire"] and alarm.events[0][1]["temperature_c"] == 90
    pickup = run(
        bins.apply_bin_alarm, device, {"alarm": "pickup", "value": 70, "fill_percent": 2}, cfg, 4
    )
    assert types(pickup) == ["bin_pickup"] and device.derived["fill_percent"] == 2


def test_fire_alarm_once_per_fire_and_tilt_alarm_against_the_threshold() -> None:
    cfg = BinsConfig(fire_threshold_c=70, tilt_threshold_deg=60)
    device = Device("01", kind="bin")
    assert types(run(bins.apply_bin_status, device, status(10, temperature_c=75), cfg, 0)) == [
        "bin_fire"
    ]
    fire = {"alarm": "fire", "value": 90, "fill_percent": 10}
    assert types(run(bins.apply_bin_alarm, device, fire, cfg, 1)) == []  # the same fire
    assert types(run(bins.apply_bin_alarm, device, fire, cfg, 2)) == []
    assert device.derived["fire"] is True
    run(bins.apply_bin_status, device, status(10, temperature_c=20), cfg, 3)  # out
    assert types(run(bins.apply_bin_alarm, device, fire, cfg, 4)) == ["bin_fire"]  # a new one
    tilt = {"alarm": "tilt", "value": 50, "fill_percent": 10}
    assert types(run(bins.apply_bin_alarm, device, tilt, cfg, 5)) == []  # below 60 degrees
    assert device.derived["tilt"] is False
    tilt["value"] = 60
    assert types(run(bins.apply_bin_alarm, device, tilt, cfg, 6)) == ["bin_tilt"]
    assert device.derived["tilt"] is True
    tilt["value"] = 90
    assert types(run(bins.apply_bin_alarm, device, tilt, cfg, 7)) == []  # still tilted


def test_collection_list_and_formats() -> None:
    cfg = BinsConfig(collection_horizon_h=24)
    full = Device("0a", kind="bin", name="Full", latitude=56.1, longitude=10.2, street="S")
    soon = Device("0b", kind="bin", name="Soon")
    later = Device("0c", kind="bin")
    lamp = Device("0d", kind="lamp")
    run(bins.apply_bin_status, full, status(95), cfg, 0)
    for hour, fill in enumerate((50, 60)):
        run(bins.apply_bin_status, soon, status(fill), cfg, hour * H)  # 10 %/h -> full in 2 h
    for day, fill in enumerate((10, 11)):
        run(bins.apply_bin_status, later, status(fill), cfg, day * 86400)
    rows = bins.collection_list([lamp, later, soon, full], cfg, 1 * H)
    assert [(r["dev_eui"], r["reason"]) for r in rows] == [("0a", "full"), ("0b", "forecast")]
    assert [r["dev_eui"] for r in bins.collection_list([soon], cfg, H, horizon_h=1)] == []
    csv_text = bins.collection_csv(rows)
    assert csv_text.splitlines()[0].split(",")[:3] == ["dev_eui", "name", "street"]
    assert len(csv_text.splitlines()) == 3
    parsed = list(csv.DictReader(io.StringIO(csv_text)))
    assert parsed[0]["forecast_full_at"] == "1970-01-01T00:00:00Z"  # full when it reported
    assert parsed[0]["fire"] == "false"
    # 50 % at 0 h, 60 % at 1 h: 80 % at 3 h, i.e. 1970-01-01T03:00:00Z
    assert parsed[1]["forecast_full_at"] == "1970-01-01T03:00:00Z"
    assert parsed[1]["tilt"] == "false" and "False" not in csv_text
    geo = bins.collection_geojson(rows)
    assert geo["features"][0]["geometry"]["coordinates"] == [10.2, 56.1]
    assert geo["features"][1]["properties"]["forecast_full_at"] == "1970-01-01T03:00:00Z"
    assert geo["features"][1]["properties"]["fire"] is False
    assert geo["features"][1]["geometry"] is None


def test_lamp_failure_day_burner_and_recovery() -> None:
    cfg = LampsConfig(min_power_w=3, day_start_hour_utc=10, day_end_hour_utc=14)
    lamp = Device("01", kind="lamp")
    out = run(lamps.apply_lamp_status, lamp, {"dim_level": 80, "active_power_w": 0}, cfg, NIGHT)
    assert types(out) == ["lamp_failure"] and out.events[0][1]["reasons"] == ["no_power"]
    out = run(
        lamps.apply_lamp_status,
        lamp,
        {"dim_level": 80, "active_power_w": 0, "relay_failure": True},
        cfg,
        NIGHT,
    )
    assert types(out) == []
    out = run(lamps.apply_lamp_status, lamp, {"dim_level": 80, "active_power_w": 40}, cfg, NIGHT)
    assert types(out) == ["lamp_recovered"]
    out = run(lamps.apply_lamp_status, lamp, {"dim_level": 80, "active_power_w": 40}, cfg, NOON)
    assert types(out) == ["lamp_day_burner"]
    out = run(lamps.apply_lamp_status, lamp, {"dim_level": 0, "active_power_w": 0}, cfg, NOON)
    assert types(out) == [] and lamp.derived["day_burner"] is False
    flagged = Device("02", kind="lamp")
    out = run(
        lamps.apply_lamp_status,
        flagged,
        {"dim_level": 0, "active_power_w": 0, "day_burner": True},
        cfg,
        NIGHT,
    )
    assert types(out) == ["lamp_day_burner"]


def test_presence_raises_only_neighbouring_lamps() -> None:
    cfg = LampsConfig(presence_dim_level=90, presence_duration_s=45)
    registry = {
        "01": Device("01", kind="lamp", street="A", neighbours=["02", "03", "99", "01"]),
        "02": Device("02", kind="lamp"),
        "03": Device("03", kind="bin"),
    }
    out = run(
        lamps.apply_lamp_presence,
        registry["01"],
        {"road_users": 1},
        cfg,
        registry.get,
        seen_at=None,
    )
    assert [
        (c.dev_eui, c.message, c.fields["dim_level"], c.fields["duration_s"], c.confirmed)
        for c in out.commands
    ] == [("02", "lamp_override", 90, 45, False)]
    # the override must hold its level: resume_schedule=True would end it at once (catalogue)
    assert out.commands[0].fields["resume_schedule"] is False
    # and is worth sending for its hold only: light for a road user who has gone on is waste
    assert out.commands[0].expires_in_s == 45
    assert out.events[0] == ("lamp_presence", {"road_users": 1, "street": "A", "raised": ["02"]})
    # seen by a lamp that is off (daylight by its profile): no neighbour is switched on by day
    by_day = run(
        lamps.apply_lamp_presence,
        registry["01"],
        {"road_users": 1, "dim_level": 0},
        cfg,
        registry.get,
        seen_at=None,
    )
    assert by_day.commands == [] and by_day.events[0][1]["raised"] == []
    lit = run(
        lamps.apply_lamp_presence,
        registry["01"],
        {"road_users": 1, "dim_level": 100},
        cfg,
        registry.get,
        seen_at=None,
    )
    assert [c.dev_eui for c in lit.commands] == ["02"]


def _street_of_lamps(n: int) -> dict[str, Device]:
    """``n`` lamps 30 m apart along a street running east, two neighbours either side."""
    euis = [f"0{k}" for k in range(n)]
    return {
        eui: Device(
            eui,
            kind="lamp",
            street="A",
            latitude=56.15,
            longitude=10.2 + k * 30 / 62_000,  # ~30 m at 56 deg N
            neighbours=[euis[j] for j in range(max(0, k - 2), min(n, k + 3)) if j != k],
        )
        for k, eui in enumerate(euis)
    }


def _report(
    street: dict[str, Device], eui: str, at: float, level: int = 100, cfg: LampsConfig | None = None
) -> list[str]:
    fields = {"road_users": 1, "dim_level": level}
    # seen_at: the receive time, the device's last_seen (gateway/fleet/table.py RuleInput.received)
    out = run(
        lamps.apply_lamp_presence, street[eui], fields, cfg or LampsConfig(), street.get, seen_at=at
    )
    if level in (20, 100):  # back below the default boost: no road user, no report time kept
        assert out.twin.derived.get("_presence_at") == (at if level == 100 else None)
    return sorted(c.dev_eui for c in out.commands)


def test_presence_raises_the_lamps_ahead_of_a_road_user_coming_from_a_neighbour() -> None:
    street = _street_of_lamps(7)
    assert _report(street, "03", 1000.0) == ["02", "04"]  # direction unknown: one either side
    assert _report(_street_of_lamps(7), "00", 1000.0) == ["01", "02"]  # the street's end
    # eastwards: 02 saw someone 20 s ago, so 03's road user goes on to 04
    street = _street_of_lamps(7)
    assert _report(street, "02", 1000.0) == ["01", "03"]
    before = dict(street["04"].derived)
    assert _report(street, "03", 1020.0) == ["04"]
    assert _report(street, "04", 1041.0) == ["05"]
    assert _report(street, "05", 1062.0) == ["06"]
    assert _report(street, "06", 1083.0) == []  # the street's end: nothing ahead
    assert street["04"].derived != before  # its own report time, written by its own report
    # a neighbour's report older than presence_duration_s says nothing about this road user
    street = _street_of_lamps(7)
    _report(street, "02", 1000.0)
    assert _report(street, "03", 1000.0 + 61) == ["02", "04"]
    # without positions: every neighbour, as before
    registry = {k: Device(k, kind="lamp", neighbours=[j for j in "abc" if j != k]) for k in "abc"}
    out = run(
        lamps.apply_lamp_presence,
        registry["a"],
        {"dim_level": 100},
        LampsConfig(),
        registry.get,
        seen_at=5.0,
    )
    assert sorted(c.dev_eui for c in out.commands) == ["b", "c"]


def test_presence_from_a_lamp_back_below_its_boost_raises_nobody() -> None:
    # the lamp has seen nobody for its hold time: a count held back by its rate limit
    street = _street_of_lamps(5)
    assert _report(street, "02", 1000.0, level=20) == []
    assert _report(street, "02", 1000.0, level=100) == ["01", "03"]
    # the boost level is the lamp's profile's when the gateway knows it
    cfg = LampsConfig(profiles={"default": {"config_version": 1, "boost_level": 60}})
    assert _report(_street_of_lamps(5), "02", 1000.0, level=60, cfg=cfg) == ["01", "03"]


def test_profile_by_lamp_then_group_then_default() -> None:
    default = {"config_version": 1, "base_level": 10, "boost_level": 90}
    harbour = {"config_version": 2, "base_level": 20, "boost_level": 100}
    cfg = LampsConfig(profiles={"default": default, "harbour": harbour})
    lamp = Device("01", kind="lamp", group="harbour")
    assert lamps.profile_for(lamp, cfg) == harbour
    assert lamps.profile_for(Device("02", kind="lamp", group="x"), cfg) == default
    out = run(lamps.reconcile_profile, lamp, cfg, reported_version=1)
    assert [(c.message, c.fields["config_version"]) for c in out.commands] == [("lamp_profile", 2)]
    assert out.twin.attrs == {"desired_version": 2} and out.twin.desired == {
        "lamp_profile": harbour
    }
    assert lamp.desired_version == 2
    assert run(lamps.reconcile_profile, lamp, cfg, reported_version=2).commands == []
    own = {"config_version": 7, "base_level": 5, "boost_level": 50}
    lamp.desired["lamp_profile"] = own
    assert lamps.profile_for(lamp, cfg) == own
    assert run(lamps.reconcile_profile, Device("03", kind="lamp"), LampsConfig(), 0).commands == []


def test_availability_interval_sources_and_transitions() -> None:
    cfg = AvailabilityConfig(
        factor=2, bin_interval_s=100, lamp_interval_s=50, default_interval_s=70
    )
    assert availability.expected_interval_s(Device("a", kind="bin"), cfg) == 100
    assert availability.expected_interval_s(Device("a", kind="lamp"), cfg) == 50
    assert availability.expected_interval_s(Device("a"), cfg) == 70
    pushed = Device("a", kind="bin")
    pushed.desired["bin_config"] = {"report_interval_s": 30}
    assert availability.timeout_s(pushed, cfg) == 60
    registered = Device("a", kind="bin", report_interval_s=10)
    assert availability.timeout_s(registered, cfg) == 20
    device = Device("b", kind="lamp")
    assert types(run(availability.mark_seen, device, 0)) == []
    assert types(run(availability.check, device, cfg, 100)) == []
    assert types(run(availability.check, device, cfg, 101)) == ["device_offline"]
    assert types(run(availability.check, device, cfg, 500)) == []
    back = run(availability.mark_seen, device, 600)
    assert types(back) == ["device_online"]
    assert back.twin.attrs == {"last_seen": 600, "availability": "online"}
    assert device.availability == "online"
