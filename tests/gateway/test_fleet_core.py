"""The fleet core without asyncio, without a broker, without a store (issue 16 item 1).

:class:`Shell` plays the service's part (gateway/service.py ``_apply_event``/``_carry_out``) on
plain dicts: it answers the core's reads from what it committed so far and carries out the
effects. Every apply is checked to leave the devices as they were: the only writer is the shell.
The events are parsed by the real ChirpStack parser from ChirpStack-shaped documents.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from typing import Any

from gateway import chirpstack as cs
from gateway.config import Config, parse_config
from gateway.fleet import RULES, Effects, FleetCore, Known
from gateway.rules import PlannedCommand
from gateway.store.base import DeadLetter, Device, EventRecord, UplinkRecord
from protocol import codec
from tests.gateway import events as ev

APP = "0b8e3c2a-7d61-4f0e-9b8e-5c1d2a3f4e5d"
BIN = "a84041000181f0c1"
T0 = 1_772_446_542.0


def make_config(**sections: Any) -> Config:
    doc: dict[str, Any] = {"mqtt": {"url": "mqtt://127.0.0.1:1883", "application_id": APP}}
    doc.update(sections)
    return parse_config(doc, environ={})


class Shell:
    """The service's part on dicts: reads answered, effects carried out, nothing else."""

    def __init__(self, config: Config | None = None) -> None:
        self.devices: dict[str, Device] = {}
        self.core = FleetCore(config or make_config(), self.devices)
        self.now = T0
        self.seen: set[str] = set()
        self.history: dict[tuple[str, str, int], bytes] = {}  # the uplinks table's key
        self.rows: list[UplinkRecord] = []
        self.dead: list[DeadLetter] = []
        self.events: list[EventRecord] = []
        self.commands: list[PlannedCommand] = []
        self.outcomes: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()

    def register(self, dev_eui: str, **values: Any) -> Device:
        device = Device(dev_eui, registered=True, **values)
        self.devices[dev_eui] = device
        return device

    def send(self, doc: dict[str, Any], dev_eui: str, kind: str = "up") -> Effects:
        topic = ev.topic(APP, dev_eui, kind)
        raw = json.dumps(doc).encode()
        event = cs.parse_event(topic, raw)
        reads = self.core.reads(event)
        seen = bool(reads.key) and reads.key in self.seen
        stored = self.history.get(reads.f_cnt) if reads.f_cnt and not seen else None
        before = copy.deepcopy(self.devices)
        fx = self.core.apply(event, Known(self.now, seen, stored), topic=topic, raw=raw)
        assert self.devices == before, "apply changed the devices itself"
        self.carry_out(fx)
        self.now += 1.0
        return fx

    def carry_out(self, fx: Effects) -> None:
        if fx.new_device is not None:
            self.devices[fx.new_device.dev_eui] = fx.new_device
            self.core.registered(was_auto=True)
        for device, change in fx.changes.values():
            change.apply(device)
        self.seen.update(fx.seen)
        if fx.uplink is not None:
            row = fx.uplink
            key = (row.dev_eui, row.dev_addr, row.f_cnt)
            assert key not in self.history, f"{key} stored twice"  # UNIQUE in both stores
            self.history[key] = row.data
            self.rows.append(row)
        self.dead.extend(fx.dead_letters)
        self.events.extend(fx.events)
        self.commands.extend(fx.commands)
        if fx.outcome is not None:
            self.outcomes[fx.outcome] += 1
        if fx.rejected is not None:
            self.rejected[fx.rejected] += 1

    def types(self, dev_eui: str | None = None) -> list[str]:
        return [e.type for e in self.events if dev_eui is None or e.dev_eui == dev_eui]


def bin_up(
    f_cnt: int, fill: int, *, dedup: str | None = None, dev_eui: str = BIN, **extra: Any
) -> dict[str, Any]:
    fields = {"fill_percent": fill, "temperature_c": 12, "battery_percent": 90, **extra}
    f_port, data = codec.encode("bin_status", fields)
    return ev.up(APP, dev_eui, f_cnt=f_cnt, f_port=f_port, data=data, dedup=dedup)


# --- exactly-once ------------------------------------------------------------------------------


def test_every_distinct_uplink_is_applied_once_whatever_the_redeliveries() -> None:
    shell = Shell()
    shell.register(BIN, kind="bin")
    docs = [bin_up(f_cnt, fill=f_cnt) for f_cnt in range(1, 41)]
    rng = random.Random(16)
    stream: list[dict[str, Any]] = []
    redeliveries = 0
    for doc in docs:
        stream.append(doc)
        if rng.random() < 0.5:  # the broker sends it again: the same deduplicationId
            stream.append(doc)
            redeliveries += 1
        if rng.random() < 0.3:  # another network server path: another id, the same frame
            stream.append({**doc, "deduplicationId": f"other-{doc['fCnt']}"})
            redeliveries += 1
    # some redeliveries come late, after later frames (a reconnect's backlog)
    late = rng.sample(docs, 10)
    stream.extend(late)
    redeliveries += len(late)
    for doc in stream:
        shell.send(doc, BIN)
    assert shell.outcomes == {"processed": 40, "duplicate": redeliveries}
    assert sorted(r.f_cnt for r in shell.rows) == list(range(1, 41))
    assert shell.devices[BIN].last_f_cnt == 40
    assert shell.devices[BIN].derived["fill_percent"] == 40
    assert shell.dead == []


def test_a_fresh_uplink_needs_no_read_and_stores_no_key() -> None:
    shell = Shell()
    shell.register(BIN, kind="bin")

    def reads(doc: dict[str, Any]) -> Any:
        return shell.core.reads(cs.parse_event(ev.topic(APP, BIN, "up"), ev.dumps(doc)))

    # never heard (no session at all): nothing of it can be stored yet, no read
    first = bin_up(1, fill=10)
    assert reads(first).key == "" and reads(first).f_cnt is None
    fx = shell.send(first, BIN)
    assert fx.outcome == "processed" and fx.seen == []  # the history row tells its redelivery
    assert reads(first).key  # heard now: fCnt 1 again is not above the committed one
    assert shell.send(first, BIN).outcome == "duplicate"
    assert shell.send({**first, "deduplicationId": "another"}, BIN).outcome == "duplicate"
    second = bin_up(2, fill=11)
    assert reads(second).key == "" and reads(second).f_cnt is None
    fx = shell.send(second, BIN)
    assert fx.outcome == "processed" and fx.seen == []
    assert shell.send(second, BIN).outcome == "duplicate"
    assert [r.f_cnt for r in shell.rows] == [1, 2]


def test_after_a_join_the_first_uplink_is_read_for() -> None:
    # a join opens a session (devAddr) without an fCnt: an uplink of that session may have been
    # committed before the join was (another instance, a backlog), so it is checked
    shell = Shell()
    shell.register(BIN, kind="bin")
    shell.send({**ev.join(APP, BIN), "devAddr": "02aabbcc"}, BIN, "join")
    up = {**bin_up(1, fill=30), "devAddr": "02aabbcc"}
    reads = shell.core.reads(cs.parse_event(ev.topic(APP, BIN, "up"), ev.dumps(up)))
    assert reads.key and reads.f_cnt == (BIN, "02aabbcc", 1)


def test_out_of_order_frames_are_each_applied_once_and_the_counter_keeps_the_highest() -> None:
    shell = Shell()
    shell.register(BIN, kind="bin")
    for f_cnt in (5, 3, 4, 9, 7):
        assert shell.send(bin_up(f_cnt, fill=f_cnt), BIN).outcome == "processed"
    assert shell.devices[BIN].last_f_cnt == 9
    for f_cnt in (3, 9, 7):  # the same frames again under new ids
        assert shell.send(bin_up(f_cnt, fill=f_cnt), BIN).outcome == "duplicate"
    assert sorted(r.f_cnt for r in shell.rows) == [3, 4, 5, 7, 9]
    # the state is the newest frame's: an older one applied after it is history only
    assert shell.devices[BIN].derived["fill_percent"] == 9
    assert shell.devices[BIN].reported["fill_percent"] == 9


def test_a_late_frame_changes_no_state_and_raises_nothing() -> None:
    """Two instances sharing the stream (or a backlog after a reconnect) can apply a device's
    frames out of fCnt order. The newer frame's state stands: a fuller reading sent before an
    emptying does not make the emptied bin full again, nor an old config version plan a push;
    the older frame is kept in the history, and an alarm in it still raises its event."""
    shell = Shell()
    shell.register(BIN, kind="bin", desired_version=7)
    shell.send(bin_up(10, fill=70, config_version=7), BIN)
    shell.send(bin_up(12, fill=3, pickup_count=1, config_version=7), BIN)  # emptied
    assert shell.types(BIN) == ["config_applied", "bin_pickup"]
    fx = shell.send(bin_up(11, fill=95, config_version=6), BIN)  # sent before the emptying
    assert fx.outcome == "processed" and fx.commands == [] and fx.events == []
    device = shell.devices[BIN]
    assert device.derived["fill_percent"] == 3 and device.derived["full"] is False
    assert device.reported["fill_percent"] == 3 and device.last_f_cnt == 12
    assert device.reported_version == 7
    assert sorted(r.f_cnt for r in shell.rows) == [10, 11, 12]
    f_port, data = codec.encode("bin_alarm", {"alarm": "fire", "value": 71, "fill_percent": 90})
    alarm = ev.up(APP, BIN, f_cnt=9, f_port=f_port, data=data)
    assert shell.send(alarm, BIN).outcome == "processed"
    assert shell.types(BIN) == ["config_applied", "bin_pickup", "bin_fire"]
    assert shell.send(bin_up(13, fill=5), BIN).outcome == "processed"  # in order again
    assert shell.devices[BIN].derived["fill_percent"] == 5


def test_a_late_frame_of_the_session_before_a_rejoin_changes_no_state() -> None:
    """A bin rejoined (new devAddr, fCnt from 0) after an emptying; a fuller reading of its
    earlier session comes after (held in a killed instance's broker session): ChirpStack
    received it before the newest reading in the bin's history, so it is history only, and
    the session stays the new one. One of the earlier session received after that reading
    is applied (a node's frames of an old session, replayed late, are the newest it sent)."""
    shell = Shell()
    shell.register(BIN, kind="bin")

    def at(up: dict[str, Any], time: str, dev_addr: str) -> dict[str, Any]:
        return {**up, "time": f"2026-03-02T{time}+00:00", "devAddr": dev_addr}

    shell.send(at(bin_up(10, fill=70), "10:00:00", "01f3a2c4"), BIN)
    shell.send(at(bin_up(12, fill=3, pickup_count=1), "12:00:00", "01f3a2c4"), BIN)
    shell.send({**ev.join(APP, BIN), "devAddr": "0209b7e1"}, BIN, "join")
    fx = shell.send(at(bin_up(11, fill=95), "11:00:00", "01f3a2c4"), BIN)  # before the emptying
    assert fx.outcome == "processed" and fx.events == []
    device = shell.devices[BIN]
    assert device.derived["fill_percent"] == 3 and device.derived["full"] is False
    assert device.last_dev_addr == "0209b7e1" and device.last_f_cnt is None
    assert sorted(r.f_cnt for r in shell.rows) == [10, 11, 12]
    fx = shell.send(at(bin_up(1, fill=5), "13:00:00", "0209b7e1"), BIN)  # the new session
    assert device.derived["fill_percent"] == 5 and device.last_f_cnt == 1
    shell.send(at(bin_up(13, fill=9), "12:30:00", "01f3a2c4"), BIN)  # older than 13:00: late
    assert device.derived["fill_percent"] == 5 and device.last_dev_addr == "0209b7e1"
    shell.send(at(bin_up(14, fill=96), "14:00:00", "01f3a2c4"), BIN)  # newest: applied
    assert device.derived["fill_percent"] == 96 and device.last_dev_addr == "01f3a2c4"
    assert [e for e in shell.types(BIN) if e == "bin_full"] == ["bin_full"]


def test_a_lamps_frame_from_before_a_rejoin_changes_no_state() -> None:
    """The lamp's counterpart of the test above: a lamp keeps no fill history, so the time of
    its newest applied frame decides. A status of its earlier session that ChirpStack received
    before the lamp's newest frame (held in a killed instance's broker session until after the
    rejoin) is history only: its session, dim level and failure state stay the newest ones.
    A frame of the earlier session received after the newest is applied."""
    shell = Shell()
    lamp = "a84041000181d0c3"
    shell.register(lamp, kind="lamp")

    def lamp_up(f_cnt: int, time: str, dev_addr: str, **fields: Any) -> dict[str, Any]:
        f_port, data = codec.encode("lamp_status", fields)
        doc = ev.up(APP, lamp, f_cnt=f_cnt, f_port=f_port, data=data)
        return {**doc, "time": f"2026-03-02T{time}+00:00", "devAddr": dev_addr}

    lit = {"dim_level": 50, "active_power_w": 31, "mode": "schedule"}
    dark = {"dim_level": 50, "active_power_w": 0, "mode": "schedule"}  # no power: a failure
    shell.send(lamp_up(7, "10:00:00", "01f3a2c4", **lit), lamp)
    shell.send({**ev.join(APP, lamp), "devAddr": "0209b7e1"}, lamp, "join")
    shell.send(lamp_up(1, "12:00:00", "0209b7e1", **{**lit, "dim_level": 80}), lamp)
    device = shell.devices[lamp]
    assert device.derived["_received"] == round(ev_time("12:00:00"))
    fx = shell.send(lamp_up(8, "11:00:00", "01f3a2c4", **dark), lamp)  # before the newest
    assert fx.outcome == "processed" and fx.events == []
    assert device.last_dev_addr == "0209b7e1" and device.last_f_cnt == 1
    assert device.reported["dim_level"] == 80 and device.derived["lamp_failure"] is False
    assert sorted(r.f_cnt for r in shell.rows) == [1, 7, 8]  # kept as history
    assert "_received" not in device.to_json()["derived"]  # rule state: not in the API
    shell.send(lamp_up(9, "13:00:00", "01f3a2c4", **{**lit, "dim_level": 30}), lamp)  # newest
    assert device.last_dev_addr == "01f3a2c4" and device.reported["dim_level"] == 30


def ev_time(clock: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(f"2026-03-02T{clock}+00:00").timestamp()


def test_a_late_presence_still_lights_ahead_and_a_late_status_raises_no_fault() -> None:
    """What a lamp saw counts in any order (its presence event and the boosts it plans); the
    reported fields stay the newest frame's, and a lamp_status older than one applied starts
    no fault transition."""
    shell = Shell()
    lamps = ["a84041000181d0c1", "a84041000181d0c2"]
    for lamp in lamps:
        shell.register(lamp, kind="lamp", neighbours=[d for d in lamps if d != lamp])

    def lamp_up(message: str, f_cnt: int, **fields: Any) -> dict[str, Any]:
        f_port, data = codec.encode(message, fields)
        return ev.up(APP, lamps[0], f_cnt=f_cnt, f_port=f_port, data=data)

    shell.send(lamp_up("lamp_presence", 5, road_users=2, dim_level=100), lamps[0])
    fx = shell.send(lamp_up("lamp_presence", 4, road_users=7, dim_level=100), lamps[0])
    assert [e.type for e in fx.events] == ["lamp_presence"]
    assert [c.dev_eui for c in fx.commands] == [lamps[1]]
    assert shell.devices[lamps[0]].reported["road_users"] == 2
    status = {"dim_level": 100, "active_power_w": 0, "mode": "schedule"}
    fx = shell.send(lamp_up("lamp_status", 3, **status), lamps[0])  # no power: a failure, late
    assert fx.events == [] and "lamp_failure" not in shell.devices[lamps[0]].derived
    assert sorted(r.f_cnt for r in shell.rows) == [3, 4, 5]


def test_a_counter_reset_is_a_dead_letter_and_an_event_not_a_duplicate() -> None:
    shell = Shell()
    shell.register(BIN, kind="bin")
    for f_cnt in range(1, 6):
        shell.send(bin_up(f_cnt, fill=f_cnt), BIN)
    reset = bin_up(2, fill=77)  # fCnt 2 again on the same devAddr, other data
    fx = shell.send(reset, BIN)
    assert fx.outcome is None and fx.uplink is None
    assert [d.reason.split(":")[0] for d in shell.dead] == ["fcnt_reset"]
    assert shell.dead[0].dev_eui == BIN and shell.dead[0].payload == ev.dumps(reset)
    (event,) = [e for e in shell.events if e.type == "fcnt_reset"]
    assert event.data == {
        "dev_addr": "01f3a2c4",
        "f_cnt": 2,
        "last_f_cnt": 5,
        "deduplication_id": reset["deduplicationId"],
    }
    assert shell.send(reset, BIN).outcome == "duplicate"  # its redelivery: the key was kept
    assert len(shell.dead) == 1
    assert shell.devices[BIN].derived["fill_percent"] == 5  # the reset's data changed nothing


def test_without_a_deduplication_id_the_payload_tells_redelivery_from_reset() -> None:
    shell = Shell()
    shell.register(BIN, kind="bin")
    first = {**bin_up(1, fill=10), "deduplicationId": ""}
    assert shell.send(first, BIN).outcome == "processed"
    assert shell.send(first, BIN).outcome == "duplicate"
    assert shell.send({**bin_up(1, fill=20), "deduplicationId": ""}, BIN).outcome is None
    assert [d.reason.split(":")[0] for d in shell.dead] == ["fcnt_reset"]


def test_unknown_devices_are_registered_up_to_the_cap_then_dead_letters() -> None:
    shell = Shell(make_config(fleet={"max_auto_registered": 2}))
    shell.register(BIN, kind="bin")
    strangers = [f"a84041000181e{i:03x}" for i in range(4)]
    for eui in strangers:
        shell.send(bin_up(1, fill=10, dev_eui=eui), eui)
    assert [e for e in strangers if e in shell.devices] == strangers[:2]
    assert all(not shell.devices[e].registered for e in strangers[:2])
    assert shell.types() == ["device_discovered", "device_discovered"]
    assert shell.rejected == {"unknown_device_cap": 2}
    assert [(d.dev_eui, d.reason.split(":")[0]) for d in shell.dead] == [
        (strangers[2], "unknown_device_cap"),
        (strangers[3], "unknown_device_cap"),
    ]
    refused = bin_up(2, fill=11, dev_eui=strangers[2])
    shell.send(refused, strangers[2])
    assert shell.send(refused, strangers[2]).outcome == "duplicate"  # one dead letter each
    assert len(shell.dead) == 3
    # the registry's devices are not held back by the cap
    assert shell.send(bin_up(1, fill=10), BIN).outcome == "processed"
    # an operator registers one of them: room for another unknown one
    shell.devices[strangers[0]].registered = True
    shell.core.registered(was_auto=False)
    shell.send(bin_up(3, fill=12, dev_eui=strangers[3]), strangers[3])
    assert strangers[3] in shell.devices


def test_a_join_is_applied_once_and_opens_a_new_session() -> None:
    shell = Shell()
    device = shell.register(BIN, kind="bin")
    for f_cnt in range(1, 4):
        shell.send(bin_up(f_cnt, fill=f_cnt), BIN)
    join = {**ev.join(APP, BIN), "devAddr": "02aabbcc"}
    fx = shell.send(join, BIN, "join")
    assert fx.joined == "02aabbcc" and fx.seen == [f"join:{join['deduplicationId']}"]
    assert device.last_dev_addr == "02aabbcc" and device.last_f_cnt is None
    assert shell.send(join, BIN, "join").joined is None  # its redelivery
    # the node counts from 1 again in the new session: neither a duplicate nor a reset
    again = {**bin_up(1, fill=30), "devAddr": "02aabbcc"}
    assert shell.send(again, BIN).outcome == "processed"
    assert shell.send(again, BIN).outcome == "duplicate"
    assert device.last_f_cnt == 1 and shell.dead == []


# --- rules from the table ------------------------------------------------------------------------


def test_the_rule_table_is_keyed_by_message() -> None:
    assert set(RULES) == {"bin_status", "bin_alarm", "lamp_status", "lamp_presence"}


def test_bin_full_and_fire_once_and_pickup() -> None:
    shell = Shell(make_config(bins={"full_threshold_percent": 80, "fire_threshold_c": 70}))
    shell.register(BIN, kind="bin")
    for f_cnt, fill in enumerate((50, 85, 90, 95), start=1):
        shell.send(bin_up(f_cnt, fill=fill), BIN)
    assert shell.types().count("bin_full") == 1
    shell.send(bin_up(5, fill=95, temperature_c=75), BIN)
    shell.send(bin_up(6, fill=95, temperature_c=80), BIN)
    f_port, data = codec.encode("bin_alarm", {"alarm": "fire", "value": 90, "fill_percent": 95})
    shell.send(ev.up(APP, BIN, f_cnt=7, f_port=f_port, data=data), BIN)
    assert shell.types().count("bin_fire") == 1
    fx = shell.send(bin_up(8, fill=5, temperature_c=20), BIN)  # the truck came
    assert [e.type for e in fx.events] == ["bin_pickup"]
    assert fx.events[0].data["drop_percent"] == 90
    derived = shell.devices[BIN].derived
    assert derived["full"] is False and derived["fire"] is False
    at = cs.parse_event(ev.topic(APP, BIN, "up"), ev.dumps(bin_up(1, fill=1))).time_s
    assert derived["last_pickup_at"] == at  # ChirpStack's time of the report (issue 15.2)
    # a new filling is full again, once
    for f_cnt in (9, 10):
        shell.send(bin_up(f_cnt, fill=88), BIN)
    assert shell.types().count("bin_full") == 2


def test_a_presence_boosts_the_lamp_ahead_and_changes_only_the_reporter() -> None:
    shell = Shell(make_config(lamps={"presence_dim_level": 90, "presence_duration_s": 45}))
    euis = [f"a84041000181d0b{k}" for k in range(1, 5)]  # 30 m apart along a street
    for k, eui in enumerate(euis):
        shell.register(
            eui,
            kind="lamp",
            street="A",
            latitude=56.15,
            longitude=10.2 + k * 30 / 62_000,
            neighbours=[e for e in euis if e != eui],
        )
    f_port, data = codec.encode("lamp_presence", {"road_users": 1, "dim_level": 100})
    before = copy.deepcopy(shell.devices[euis[2]])
    fx = shell.send(ev.up(APP, euis[1], f_cnt=1, f_port=f_port, data=data), euis[1])
    assert sorted((c.dev_eui, c.message, c.fields["dim_level"]) for c in fx.commands) == [
        (euis[0], "lamp_override", 90),
        (euis[2], "lamp_override", 90),
    ]  # direction unknown: the nearest one either side
    assert [e.type for e in fx.events] == ["lamp_presence"]
    assert sorted(fx.events[0].data["raised"]) == [euis[0], euis[2]]
    assert set(fx.changes) == {euis[1]}  # the neighbours are read, never written
    assert shell.devices[euis[1]].derived["_presence_at"] == fx.now  # the receive time
    assert shell.devices[euis[2]] == before
    # the road user goes on: the lamp ahead reports next and raises only the one after it
    shell.now = fx.now + 10
    fx = shell.send(ev.up(APP, euis[2], f_cnt=1, f_port=f_port, data=data), euis[2])
    assert [c.dev_eui for c in fx.commands] == [euis[3]]


def test_a_decommissioned_device_keeps_history_but_raises_nothing() -> None:
    shell = Shell()
    shell.register(BIN, kind="bin", decommissioned_at=T0 - 100)
    fx = shell.send(bin_up(1, fill=95), BIN)
    assert fx.outcome == "processed" and fx.uplink is not None
    assert fx.events == [] and fx.commands == []
    assert shell.devices[BIN].derived["full"] is True  # the twin goes on


def test_a_lamp_reporting_an_old_config_gets_its_profile_planned_after_the_events() -> None:
    profile = {
        "config_version": 3,
        "base_level": 20,
        "boost_level": 100,
        "hold_time_s": 60,
        "steps": [{"anchor": "sunset", "offset_min": 0, "dim_level": 80}],
    }
    shell = Shell(make_config(lamps={"profiles": {"default": profile}}))
    lamp = "a84041000181d0c1"
    shell.register(lamp, kind="lamp")
    fields = {"dim_level": 80, "active_power_w": 0, "config_version": 2}
    f_port, data = codec.encode("lamp_status", fields)
    fx = shell.send(ev.up(APP, lamp, f_cnt=1, f_port=f_port, data=data), lamp)
    assert [e.type for e in fx.events] == ["lamp_failure"]
    assert [(c.message, c.fields["config_version"]) for c in fx.commands] == [("lamp_profile", 3)]
    device = shell.devices[lamp]
    assert device.reported_version == 2 and device.desired_version == 3
    assert device.desired["lamp_profile"] == profile
    # the lamp applied it (and is off now): config_applied, nothing planned
    f_port, data = codec.encode("lamp_status", {**fields, "dim_level": 0, "config_version": 3})
    fx = shell.send(ev.up(APP, lamp, f_cnt=2, f_port=f_port, data=data), lamp)
    assert [e.type for e in fx.events] == ["lamp_recovered", "config_applied"]
    assert fx.commands == []


def test_availability_goes_offline_once_and_online_with_the_next_uplink() -> None:
    shell = Shell(make_config(availability={"bin_interval_s": 100, "factor": 2}))
    shell.register(BIN, kind="bin")
    shell.send(bin_up(1, fill=10), BIN)
    device = shell.devices[BIN]
    assert device.availability == "online"
    before = copy.deepcopy(device)
    fx = shell.core.check_availability([device], T0 + 250)
    assert device == before and fx.availability == {BIN}
    shell.carry_out(fx)
    assert device.availability == "offline" and shell.types() == ["device_offline"]
    assert shell.core.check_availability([device], T0 + 500).events == []
    shell.now = T0 + 600
    fx = shell.send(bin_up(2, fill=11), BIN)
    assert fx.availability == {BIN} and [e.type for e in fx.events] == ["device_online"]
