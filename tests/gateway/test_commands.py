"""gateway.commands without a broker: validation, ids, replacement, transitions, size limits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from gateway import chirpstack as cs
from gateway.commands import CommandManager, max_payload
from gateway.config import CommandsConfig
from gateway.errors import CommandRejected, PayloadTooLarge, UnknownDevice
from gateway.metrics import Metrics
from gateway.store import CommandRecord, Device, SqliteStore
from protocol import codec


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def manager() -> AsyncIterator[CommandManager]:
    store = SqliteStore("sqlite:///:memory:")
    await store.open()
    yield CommandManager(
        store=store,
        metrics=Metrics(),
        config=CommandsConfig(timeout_s=100),
        logger=logging.getLogger("t"),
        clock=Clock(),
    )
    await store.close()


def _info() -> cs.DeviceInfo:
    return cs.DeviceInfo(dev_eui="01")


def txack(qid: str) -> cs.TxAckEvent:
    return cs.TxAckEvent("txack", "app", _info(), "", 1, qid, 5, "gw", None, None)


def ack(qid: str, ok: bool = True) -> cs.AckEvent:
    return cs.AckEvent("ack", "app", _info(), "", "d", qid, ok, 5)


def log(qid: str, code: str) -> cs.LogEvent:
    return cs.LogEvent("log", "app", _info(), "", "ERROR", code, "", {"queue_item_id": qid})


def hand_over(manager: CommandManager, command: CommandRecord) -> None:
    """What Gateway._dispatch_one does around a publish that got its PUBACK."""
    manager.mark_published(command)
    manager.publish_finished(command, delivered=True)


async def test_handed_over_from_the_start_of_its_publish(manager: CommandManager) -> None:
    lamp = Device("01", kind="lamp", last_dr=5)
    first = manager.submit(lamp, "lamp_override", {"dim_level": 1}, confirmed=False)
    manager.mark_published(first)  # publishing: the broker may have forwarded it already
    second = manager.submit(lamp, "lamp_override", {"dim_level": 2}, confirmed=False)
    assert first.state == "queued" and second.state == "queued"
    assert manager.next_to_send("01") is None
    # the connection drops before the PUBACK: same command again (same id), never the next one
    manager.publish_finished(first, delivered=False)
    assert manager.devices_waiting() == {"01"} and manager.next_to_send("01") is first
    manager.mark_published(first)
    assert manager.next_to_send("01") is None
    # a join while it is being published: ChirpStack's flush may come before or after it
    assert manager.on_join("01") == 1 and first.published_at is not None
    assert manager.next_to_send("01") is None  # not while the publish is under way
    manager.publish_finished(first, delivered=True)
    assert manager.next_to_send("01") is first  # then once more, same id
    hand_over(manager, first)
    await manager.on_txack(txack(first.id))
    assert manager.next_to_send("01") is second


def test_max_payload_tables() -> None:
    assert [max_payload("EU868", dr) for dr in (0, 2, 3, 5, 7)] == [51, 51, 115, 242, 242]
    assert max_payload("EU868", None) == 51
    assert max_payload("US915", 0) == 242 and max_payload("US915", None) == 53


async def test_validation(manager: CommandManager) -> None:
    bin_ = Device("01", kind="bin")
    with pytest.raises(UnknownDevice):
        manager.submit(None, "reboot", {})
    with pytest.raises(CommandRejected, match="lamp command"):
        manager.submit(bin_, "lamp_override", {"dim_level": 3})
    with pytest.raises(CommandRejected, match="uplink"):
        manager.submit(bin_, "bin_status", {})
    with pytest.raises(CommandRejected, match="unknown message"):
        manager.submit(bin_, "self_destruct", {})
    with pytest.raises(CommandRejected, match=r"unknown_field|unknown|not"):
        manager.submit(bin_, "reboot", {"unknown_field": 1})
    unknown = Device("02", kind="unknown")
    assert manager.submit(unknown, "reboot", {}).message == "reboot"  # common commands only
    with pytest.raises(CommandRejected):
        manager.submit(unknown, "bin_config", {"config_version": 1})


async def test_command_ids_wrap_and_skip_active(manager: CommandManager) -> None:
    lamp = Device("01", kind="lamp", next_command_id=254)
    ids = [manager.submit(lamp, "time_sync", {"unix_time": i}).command_id for i in range(1)]
    ids += [manager.submit(lamp, "reboot", {}).command_id]
    ids += [manager.submit(lamp, "status_request", {}).command_id]
    assert ids == [254, 255, 0]
    lamp.next_command_id = 254  # 254 is still active: skipped
    assert manager.submit(lamp, "device_config", {"config_version": 1}).command_id == 1
    command = manager.active[next(iter(manager.active))]
    assert codec.decode(command.f_port, command.data, "down").fields["command_id"] == 254


async def test_a_command_with_its_own_lifetime_expires_unsent(manager: CommandManager) -> None:
    """``submit(expires_in_s=)`` (a rule's lighting-ahead override) instead of
    ``[commands] timeout_s``; ``expire_unsent`` expires it only while it was never handed to
    ChirpStack and its time is up."""
    lamp = Device("01", kind="lamp", last_dr=5)
    short = manager.submit(lamp, "lamp_override", {"dim_level": 100}, expires_in_s=20)
    assert short.expires_at == manager.clock() + 20
    default = manager.submit(Device("02", kind="lamp", last_dr=5), "reboot", {})
    assert default.expires_at == manager.clock() + 100  # the fixture's timeout_s
    assert not manager.expire_unsent(short)  # in time
    manager.clock.now += 20  # type: ignore[attr-defined]
    handed = manager.submit(Device("03", kind="lamp", last_dr=5), "reboot", {}, expires_in_s=5)
    hand_over(manager, handed)
    manager.clock.now += 5  # type: ignore[attr-defined]
    assert manager.expire_unsent(short)
    assert (short.state, short.error) == ("expired", "timed out before it could be sent")
    assert short.id not in manager.active and manager.next_to_send("01") is None
    assert not manager.expire_unsent(short)  # once
    # handed over: ChirpStack's queue has it with its expiresAt, and its word decides
    assert not manager.expire_unsent(handed) and handed.state == "queued"
    assert not manager.expire_unsent(default)


async def test_transitions_replacement_and_expiry(manager: CommandManager) -> None:
    lamp = Device("01", kind="lamp", last_dr=5)
    first = manager.submit(lamp, "lamp_override", {"dim_level": 1}, confirmed=True)
    assert manager.next_to_send("01") is first
    hand_over(manager, first)
    second = manager.submit(lamp, "lamp_override", {"dim_level": 2})
    third = manager.submit(lamp, "lamp_override", {"dim_level": 3})
    assert (second.state, second.replaced_by, first.state) == ("replaced", third.id, "queued")
    assert manager.next_to_send("01") is None  # first is in ChirpStack's queue
    await manager.on_txack(txack(first.id))
    assert first.state == "sent" and manager.next_to_send("01") is None  # confirmed: wait ack
    await manager.on_ack(ack(first.id))
    assert first.state == "acknowledged" and manager.next_to_send("01") is third
    assert manager.on_result("01", {"command_id": first.command_id, "outcome": "applied"}) is first
    assert first.state == "applied" and first.id not in manager.active
    hand_over(manager, third)
    await manager.on_log(log(third.id, "EXPIRED"))
    assert third.state == "expired"
    late = manager.submit(lamp, "reboot", {})
    manager.clock.now += 101  # type: ignore[attr-defined]
    assert manager.expire() == [late] and late.state == "expired"
    cfg = manager.submit(
        lamp, "lamp_profile", {"config_version": 9, "base_level": 1, "boost_level": 2}
    )
    assert lamp.desired["lamp_profile"]["config_version"] == 9 and lamp.desired_version == 9
    hand_over(manager, cfg)
    assert manager.on_join("01") == 1 and cfg.published_at is None  # flushed at join: resend
    hand_over(manager, cfg)
    await manager.on_txack(txack(cfg.id))
    assert manager.on_result("01", {"command_id": cfg.command_id, "outcome": "rejected"}) is cfg
    assert cfg.state == "failed" and "rejected" in cfg.error


async def test_a_result_after_a_nack_still_means_applied(manager: CommandManager) -> None:
    lamp = Device("01", kind="lamp", last_dr=5)
    nacked = manager.submit(lamp, "lamp_override", {"dim_level": 40}, confirmed=True)
    hand_over(manager, nacked)
    await manager.on_txack(txack(nacked.id))
    await manager.on_ack(ack(nacked.id, ok=False))
    assert nacked.state == "failed" and "nack" in nacked.error
    # the node heard it after all (e.g. the ack timed out while it waited for its duty cycle)
    result = {"command_id": nacked.command_id, "outcome": "applied"}
    assert manager.on_result("01", result) is nacked
    assert (nacked.state, nacked.error, nacked.applied_at) == ("applied", "", manager.clock())
    assert manager.on_result("01", result) is None  # only once

    refused = manager.submit(lamp, "reboot", {}, confirmed=True)
    hand_over(manager, refused)
    await manager.on_ack(ack(refused.id, ok=False))
    rejected = {"command_id": refused.command_id, "outcome": "rejected"}
    assert manager.on_result("01", rejected) is None and refused.state == "failed"

    stale = manager.submit(lamp, "status_request", {}, confirmed=True)
    hand_over(manager, stale)
    await manager.on_ack(ack(stale.id, ok=False))
    manager.clock.now += 101  # type: ignore[attr-defined]  # past its expiry (timeout_s=100)
    late = {"command_id": stale.command_id, "outcome": "applied"}
    assert manager.on_result("01", late) is None and stale.state == "failed"

    # once its command_id is given to a new command, an old nacked one is not matched any more
    gone = manager.submit(lamp, "time_sync", {"unix_time": 1}, confirmed=True)
    hand_over(manager, gone)
    await manager.on_ack(ack(gone.id, ok=False))
    lamp.next_command_id = gone.command_id
    fresh = manager.submit(lamp, "time_sync", {"unix_time": 2})
    assert fresh.command_id == gone.command_id
    hand_over(manager, fresh)
    reply = {"command_id": fresh.command_id, "outcome": "applied"}
    assert manager.on_result("01", reply) is fresh and gone.state == "failed"


async def test_size_limit_at_submit_and_at_send(manager: CommandManager) -> None:
    manager.config = CommandsConfig(mac_headroom_bytes=15)
    lamp = Device("01", kind="lamp", last_dr=0)
    steps = [{"anchor": "clock", "offset_min": 1400, "dim_level": 100}] * 4
    fields = {
        "config_version": 60000,
        "base_level": 100,
        "boost_level": 100,
        "hold_time_s": 3600,
        "steps": steps,
    }
    with pytest.raises(PayloadTooLarge) as info:
        manager.submit(lamp, "lamp_profile", fields)
    assert info.value.limit == 36  # type: ignore[attr-defined]
    lamp.last_dr = 5
    command = manager.submit(lamp, "lamp_profile", fields)
    lamp.last_dr = 0  # the device moved to SF12 before the command went out
    assert manager.check_size(command, lamp) is False and command.state == "failed"


def test_max_payload_in_the_window_the_device_hears() -> None:
    # class C: RX2, EU868 DR0 (51 bytes) by default whatever the uplink DR (RP002 §2.1.7)
    assert max_payload("EU868", 5, device_class="CLASS_C") == 51
    assert max_payload("EU868", None, device_class="CLASS_C") == 51
    assert max_payload("EU868", 0, device_class="CLASS_C", rx2_dr=3) == 115  # RXParamSetup
    assert max_payload("US915", 3, device_class="CLASS_C") == 53  # US915 RX2 is DR8
    # class A: RX1, the uplink DR shifted by RX1DROffset (RP002 §2.1.7 table)
    assert max_payload("EU868", 5, device_class="CLASS_A") == 242
    assert max_payload("EU868", 5, device_class="CLASS_A", rx1_dr_offset=3) == 51  # DR2
    assert max_payload("EU868", 3, device_class="CLASS_A", rx1_dr_offset=1) == 51  # DR2


async def test_class_c_lamp_sized_for_rx2_not_its_uplink(manager: CommandManager) -> None:
    fields = {
        "config_version": 7,
        "base_level": 100,
        "boost_level": 100,
        "hold_time_s": 3600,
        "steps": [{"anchor": "clock", "offset_min": 1400, "dim_level": 100}] * 4,
    }
    manager.config = CommandsConfig(mac_headroom_bytes=10)  # 41 bytes left in RX2 at DR0
    size = len(codec.encode("lamp_profile", {**fields, "command_id": 0})[1])
    assert 51 - 10 < size <= 242 - 10
    class_a = Device("01", kind="lamp", last_dr=5, device_class="CLASS_A")
    command = manager.submit(class_a, "lamp_profile", fields)  # RX1 at DR5: 242 bytes
    class_c = Device("02", kind="lamp", last_dr=5, device_class="CLASS_C")
    with pytest.raises(PayloadTooLarge) as info:
        manager.submit(class_c, "lamp_profile", fields)  # RX2 at DR0: 51 bytes
    assert info.value.limit == 41  # type: ignore[attr-defined]
    assert "RX2" in str(info.value)
    class_a.device_class = "CLASS_C"  # the lamp switched to class C before it went out
    assert manager.check_size(command, class_a) is False and command.state == "failed"
    # the network moved RX2 to DR5 (RXParamSetupReq)
    manager.config = CommandsConfig(mac_headroom_bytes=10, rx2_dr=5)
    assert manager.submit(class_c, "lamp_profile", fields).state == "queued"


async def test_a_publish_cut_by_a_restart_is_repeated_once_with_its_id(
    manager: CommandManager,
) -> None:
    a = manager.submit(Device("01", kind="lamp", last_dr=5), "reboot", {})
    b = manager.submit(Device("02", kind="lamp", last_dr=5), "reboot", {})
    hand_over(manager, a)  # PUBACK on record
    manager.mark_published(b)  # the process stops while publishing b
    await manager.store.commit()
    restarted = CommandManager(
        store=manager.store,
        metrics=Metrics(),
        config=manager.config,
        logger=logging.getLogger("t"),
        clock=manager.clock,
    )
    await restarted.load()
    assert restarted.devices_waiting() == {"02"}
    assert restarted.next_to_send("01") is None  # a is in ChirpStack's queue
    again = restarted.next_to_send("02")
    assert again is not None and again.id == b.id  # same id: ChirpStack refuses a second item
    restarted.mark_published(again)
    restarted.publish_finished(again, delivered=True)
    assert restarted.devices_waiting() == set() and restarted.next_to_send("02") is None
