"""The simulator's own pieces, without I/O: world, sun, radio model, tmst mapping, city files."""

from __future__ import annotations

import base64
import calendar
import stat
import tomllib
from pathlib import Path

import pytest

from tools.provision.inventory import load_inventory, load_secrets
from tools.sim.air import Uplink
from tools.sim.city import neighbours, registry_entries, write_city
from tools.sim.clock import ScaledClock, evening_start
from tools.sim.gatewayproc import parse_metrics, render_config
from tools.sim.network import _dev_addr_of, rxpk, ticks_of_tmst
from tools.sim.radio import Coverage, PathLossModel, RadioError, SimGateway, parse_datr
from tools.sim.world import (
    AARHUS_LATITUDE,
    AARHUS_LONGITUDE,
    World,
    WorldError,
    distance_m,
    is_dark,
    sun_times,
)


def _utc(*parts: int) -> float:
    return float(calendar.timegm((*parts, 0, 0, 0)[:6]))


def test_dark_is_between_sunset_and_sunrise() -> None:
    sunrise, sunset = sun_times(_utc(2026, 11, 28, 12, 0), AARHUS_LATITUDE, AARHUS_LONGITUDE)
    assert _utc(2026, 11, 28, 6, 0) < sunrise < _utc(2026, 11, 28, 9, 0)  # a late-autumn dawn
    assert _utc(2026, 11, 28, 14, 0) < sunset < _utc(2026, 11, 28, 16, 0)
    assert is_dark(sunrise - 60) and not is_dark(sunrise + 60) and is_dark(sunset + 60)
    assert is_dark(_utc(2026, 11, 28, 20, 0)) and not is_dark(_utc(2026, 11, 28, 11, 0))


def test_aarhus_day_length_spans_seven_to_eighteen_hours() -> None:
    winter = sun_times(_utc(2026, 12, 21, 12, 0), AARHUS_LATITUDE, AARHUS_LONGITUDE)
    summer = sun_times(_utc(2026, 6, 21, 12, 0), AARHUS_LATITUDE, AARHUS_LONGITUDE)
    assert 6.8 * 3600 < winter[1] - winter[0] < 7.2 * 3600
    assert 17.3 * 3600 < summer[1] - summer[0] < 17.8 * 3600


def test_the_demo_starts_after_the_last_sunset() -> None:
    now = _utc(2026, 11, 28, 13, 0)  # early afternoon: the evening before
    start = evening_start(now)
    assert start < now and is_dark(start)
    _, sunset = sun_times(now - 86400, AARHUS_LATITUDE, AARHUS_LONGITUDE)
    assert 0 < start - sunset <= 30 * 60


def test_a_bin_fills_at_its_rate_and_its_sensor_distance_follows() -> None:
    world = World(start_time=0.0)
    sim_bin = world.add_bin("02c17a0b00000001", "Mejlgade", 100.0, fill_rate_percent_per_h=6.0)
    assert sim_bin.distance_cm() == pytest.approx(130.0)  # empty: offset + full height
    world.advance(5 * 3600)
    assert sim_bin.fill_percent == pytest.approx(30.0)
    assert sim_bin.distance_cm() == pytest.approx(30.0 + 70.0)
    world.advance(30 * 3600)
    assert sim_bin.fill_percent == 100.0  # a bin cannot be fuller than full


def test_the_truck_empties_the_bins_of_its_round_nearest_first() -> None:
    world = World(start_time=0.0)
    far = world.add_bin(
        "02c17a0b00000001", "Mejlgade", 500.0, fill_percent=90.0, fill_rate_percent_per_h=0.0
    )
    near = world.add_bin(
        "02c17a0b00000002", "Søndergade", 500.0, fill_percent=85.0, fill_rate_percent_per_h=0.0
    )
    world.truck.position = (near.latitude, near.longitude)
    route = world.dispatch_truck([far.dev_eui, near.dev_eui, "02c17a0b000000ff"])
    assert route == [near.dev_eui, far.dev_eui]  # unknown EUIs are not bins: ignored
    world.advance(3600)
    assert near.fill_percent < 5 and far.fill_percent < 5
    assert (near.pickups, far.pickups, world.truck.emptied) == (1, 1, 2)
    assert [e.kind for e in world.events].count("pickup") == 2


def test_the_truck_follows_a_planned_route_in_its_order() -> None:
    world = World(start_time=0.0)
    far = world.add_bin(
        "02c17a0b00000001", "Mejlgade", 500.0, fill_percent=90.0, fill_rate_percent_per_h=0.0
    )
    near = world.add_bin(
        "02c17a0b00000002", "Søndergade", 500.0, fill_percent=85.0, fill_rate_percent_per_h=0.0
    )
    world.truck.position = (near.latitude, near.longitude)
    planned = [far.dev_eui, "02c17a0b000000ff", near.dev_eui, far.dev_eui]
    route = world.dispatch_truck(planned, in_order=True)
    assert route == [far.dev_eui, near.dev_eui]  # the plan's order, each bin once
    world.advance(3600)
    assert (near.pickups, far.pickups) == (1, 1)
    pickups = [e.subject for e in world.events if e.kind == "pickup"]
    assert pickups == [far.dev_eui, near.dev_eui]


def test_a_road_user_is_seen_by_each_lamp_it_passes_once() -> None:
    world = World(start_time=0.0, traffic_scale=0.0)
    lamps = [world.add_lamp(f"02c17a0c0000000{i}", "Mejlgade", 100.0 + 60 * i) for i in range(3)]
    seen: list[str] = []
    world.on_presence = lambda lamp: seen.append(lamp.dev_eui)
    world.spawn_road_user("Mejlgade", kind="cyclist", direction=1, along_m=50.0)
    world.advance(120.0)  # 5 m/s: passes all three lamps and leaves the street
    assert seen == [lamp.dev_eui for lamp in lamps]
    assert all(lamp.passes == 1 and not lamp.present for lamp in lamps)
    assert world.road_users == []


def test_the_world_refuses_unknown_streets_and_nodes() -> None:
    world = World()
    with pytest.raises(WorldError, match="no street"):
        world.add_bin("02c17a0b00000001", "Nowhere Street", 1.0)
    with pytest.raises(WorldError, match="no bin"):
        world.set_fire("02c17a0b000000ff")


def test_the_aarhus_city_is_deterministic_and_on_its_streets() -> None:
    a = World.aarhus(bins=40, lamps=30, seed=4)
    b = World.aarhus(bins=40, lamps=30, seed=4)
    assert list(a.bins) == list(b.bins) and len(a.bins) == 40 and len(a.lamps) == 30
    assert [x.fill_percent for x in a.bins.values()] == [x.fill_percent for x in b.bins.values()]
    centre = (AARHUS_LATITUDE, AARHUS_LONGITUDE)
    assert all(distance_m(centre, (n.latitude, n.longitude)) < 2500 for n in a.bins.values())
    assert all(name.isascii() for name in (n.name for n in [*a.bins.values(), *a.lamps.values()]))


def test_path_loss_grows_with_distance_and_far_nodes_are_not_heard() -> None:
    model = PathLossModel(shadowing_sigma_db=0.0, fading_sigma_db=0.0, loss_probability=0.0)
    assert model.path_loss_db(1000) > model.path_loss_db(100) > model.path_loss_db(10)
    assert model.noise_floor_dbm(125) == pytest.approx(-117.03, abs=0.01)
    gateway = SimGateway("a840411d4e5c0001", 56.15, 10.20)
    coverage = Coverage([gateway], model)
    near = coverage.uplink("n1", (56.151, 10.20), 14.0, "SF7BW125")
    assert len(near) == 1 and near[0].rssi_dbm > -100 and near[0].snr_db > 0
    far = coverage.uplink("n2", (56.60, 10.20), 14.0, "SF7BW125")  # 50 km away
    assert far == []
    assert (coverage.stats.uplinks_heard, coverage.stats.uplinks_lost) == (1, 1)
    # SF12 reaches further than SF7 at the same place (lower demodulation floor)
    edge = (56.15 + 0.036, 10.20)  # about 4 km
    sf7 = coverage.uplink("n3", edge, 14.0, "SF7BW125")
    sf12 = coverage.uplink("n3", edge, 14.0, "SF12BW125")
    assert len(sf12) >= len(sf7)


def test_data_rate_strings_are_checked() -> None:
    assert parse_datr("SF9BW125") == (9, 125)
    for bad in ("SF6BW125", "SF7BW100", "FSK50", ""):
        with pytest.raises(RadioError):
            parse_datr(bad)


def test_tmst_maps_back_to_node_ticks_across_the_32_bit_wrap() -> None:
    now = 4_294_000  # ms: the µs counter wraps at 4 294 967 296
    for delay_ms in (1000, 2000, 5000, 6000):
        tmst = ((now + delay_ms) * 1000) % (1 << 32)
        assert ticks_of_tmst(tmst, now) == now + delay_ms
    assert ticks_of_tmst((now * 1000) % (1 << 32), now) == now


def test_rxpk_is_what_a_packet_forwarder_pushes() -> None:
    from datetime import UTC, datetime

    phy = bytes.fromhex("40111111110000010203")
    frame = Uplink("n", phy, 868_100_000, "SF7BW125", 1234, ())
    packet = rxpk(frame, "a840411d4e5c0001", -87, 7.25, datetime(2026, 11, 28, tzinfo=UTC))
    assert packet["freq"] == 868.1 and packet["datr"] == "SF7BW125" and packet["tmst"] == 1_234_000
    assert base64.b64decode(packet["data"]) == phy and packet["size"] == len(phy)
    assert (packet["rssi"], packet["lsnr"], packet["modu"], packet["stat"]) == (
        -87,
        7.25,
        "LORA",
        1,
    )
    assert _dev_addr_of(bytes.fromhex("60") + bytes.fromhex("04030201") + bytes(7)) == "01020304"
    assert _dev_addr_of(bytes(23)) is None  # a join-request has no DevAddr


def test_city_files_keep_keys_private_and_identities_across_runs(tmp_path: Path) -> None:
    world = World.aarhus(bins=3, lamps=6, seed=2)
    files = write_city(world, tmp_path)
    inventory = load_inventory(files.inventory_path)  # the provisioning tools read it back
    assert "app_key" not in files.inventory_path.read_text()
    assert stat.S_IMODE(files.secrets_path.stat().st_mode) == 0o600
    assert sorted(n.kind for n in inventory.nodes) == ["bin"] * 3 + ["lamp"] * 6
    assert load_secrets(files.secrets_path).app_keys == files.secrets.app_keys
    again = write_city(World.aarhus(bins=3, lamps=6, seed=2), tmp_path)
    assert again.secrets.app_keys == files.secrets.app_keys  # same DevEUIs, same keys
    entries = registry_entries(world, files)
    lamp = next(e for e in entries if entries[e]["kind"] == "lamp")
    assert entries[lamp]["neighbours"] == neighbours(world, lamp)
    assert all(
        world.lamps[n].street == world.lamps[lamp].street for n in entries[lamp]["neighbours"]
    )


def test_gateway_config_and_metrics_round_trip() -> None:
    text = render_config(
        {"mqtt": {"url": "mqtt://127.0.0.1:1", "qos": 1}, "lamps": {"profiles": {"default": {
            "steps": [{"anchor": "sunset", "offset_min": 0, "dim_level": 50}]}}}}
    )  # fmt: skip
    parsed = tomllib.loads(text)
    assert parsed["lamps"]["profiles"]["default"]["steps"][0]["dim_level"] == 50
    metrics = parse_metrics(
        '# HELP x\ncitypack_uplinks_total{outcome="processed"} 12.0\nbroken line\nup 1\n'
    )
    assert metrics == {'citypack_uplinks_total{outcome="processed"}': 12.0, "up": 1.0}


async def test_the_scaled_clock_runs_simulated_time_faster() -> None:
    clock = ScaledClock(speed=1000.0)
    start = clock.ticks_ms()
    await clock.sleep_ms(2000)  # 2 s simulated = 2 ms real
    assert clock.ticks_diff(clock.ticks_ms(), start) >= 2000
    alarm = clock.alarm()
    assert await alarm.wait(1000) is False  # timed out (1 ms real)
    alarm.fire()
    assert await alarm.wait(None) is True


def test_evening_start_is_never_ahead_of_the_wall_clock() -> None:
    """Every ten minutes over two days (6-7 December 2026, sunset 14:38 UTC in Aarhus): the
    start is 20 minutes after a sunset and never after ``now``; with ``before_s`` a world 40
    times faster stays behind the wall clock for a whole test's bound (300 s), the precondition
    of the FUOTA end-to-end tests (tools/sim/clock.py says why)."""
    from tools.sim.clock import WALL_LEAD_S
    from tools.sim.world import AARHUS_LATITUDE, AARHUS_LONGITUDE, sun_times

    day = 1796515200.0  # 2026-12-06 00:00 UTC
    for step in range(0, 2 * 86400, 600):
        now = day + step
        start = evening_start(now)
        assert start <= now
        sunset = start - 20 * 60
        assert sun_times(sunset, AARHUS_LATITUDE, AARHUS_LONGITUDE)[1] == pytest.approx(
            sunset, abs=1.0
        )
        assert now - start < 86400 + 3600  # the most recent evening, not an older one
        lead = evening_start(now, before_s=WALL_LEAD_S)
        assert lead <= now - WALL_LEAD_S
        assert lead + 40 * 300 < now + 300
