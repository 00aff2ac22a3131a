"""The network server's LoRaWAN and ChirpStack behaviour, in process (no sockets)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from chirpstack_api import integration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.lorawan.join import CFListFrequencies
from protocol.lorawan.maccommands import (
    DeviceTimeAns,
    DeviceTimeReq,
    DevStatusAns,
    LinkADRAns,
    LinkADRReq,
    LinkCheckAns,
    LinkCheckReq,
)
from tests.netsim.conftest import (
    CLASS_A,
    CLASS_C,
    GW1,
    GW2,
    Harness,
    fast_config,
    joined_class_a,
)
from tests.netsim.fakenode import FakeNode, air, phy_of
from tools.netsim.server import NetworkServer

APP = fast_config().application_id


def command_topic(dev_eui: str) -> str:
    return f"application/{APP}/device/{dev_eui}/command/down"


def log_code(message: integration.LogEvent) -> str:
    return str(integration.LogCode.Name(message.code))


# -- join ------------------------------------------------------------------------------------
async def test_join_accept_parameters(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    phy = node.join_request()
    harness.ns.receive_uplink(GW1, air(phy, tmst=10_000_000, datr="SF9BW125", freq_mhz=868.3))
    txpk, _ = await harness.downlink(GW1)
    assert txpk["imme"] is False
    assert txpk["tmst"] == 15_000_000  # JOIN_ACCEPT_DELAY1 = 5 s after the uplink
    assert (txpk["freq"], txpk["datr"]) == (868.3, "SF9BW125")  # RX1: same channel and DR
    assert txpk["ipol"] is True and txpk["size"] == 33
    accept = node.join_accept(phy_of(txpk))
    assert accept.rx_delay == 1 and accept.rx1_delay_s == 1
    assert (accept.dl_settings.rx1_dr_offset, accept.dl_settings.rx2_data_rate) == (0, 0)
    assert accept.cflist == CFListFrequencies(
        (867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000)
    )
    assert accept.net_id.value == 0 and accept.dev_addr.value >> 25 == 0  # NetID 0 range
    assert accept.join_nonce == 0
    assert harness.ns.session_of(CLASS_A.dev_eui) is not None


async def test_dev_nonce_must_increase(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    node.dev_nonce = 5
    await harness.join(node)  # DevNonce 5, JoinNonce 0
    for replay in (5, 3):
        # another channel, so that the identical bytes of nonce 5 are not a dedup copy
        harness.ns.receive_uplink(GW1, air(node.join_request(dev_nonce=replay), freq_mhz=868.5))
        log = await harness.event("log")
        assert log_code(log) == "OTAA"
        assert integration.LogLevel.Name(log.level) == "ERROR"
        assert log.context["dev_nonce"] == str(replay)
        assert "already been used" in log.description
    assert harness.downlinks[GW1].empty()  # no Join-Accept for a replayed DevNonce
    await harness.join(node)  # DevNonce 6
    assert node.last_join_nonce == 1  # JoinNonce incremented


async def test_join_with_wrong_key_gives_uplink_mic_log(harness: Harness) -> None:
    intruder = FakeNode(CLASS_A.dev_eui, CLASS_A.join_eui, "00" * 16)
    harness.ns.receive_uplink(GW1, air(intruder.join_request()))
    log = await harness.event("log")
    assert log_code(log) == "UPLINK_MIC"
    assert harness.ns.session_of(CLASS_A.dev_eui) is None


async def test_rejoin_flushes_the_queue(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    harness.ns.enqueue(CLASS_A.dev_eui, b"\x01", f_port=5)
    await harness.join(node)
    assert harness.ns.queue(CLASS_A.dev_eui) == []  # flush_queue_on_activate


# -- uplinks ---------------------------------------------------------------------------------
async def test_dedup_two_gateways_one_up(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    harness.ns.enqueue(CLASS_A.dev_eui, b"\x07", f_port=3)
    phy = node.uplink(b"hi", fport=2)
    harness.ns.receive_uplink(GW1, air(phy, lsnr=-2.0, rssi=-110))
    harness.ns.receive_uplink(GW2, air(phy, lsnr=9.5, rssi=-70))
    up = await harness.event("up")
    assert [r.gateway_id for r in up.rx_info] == [GW1, GW2]
    assert [r.snr for r in up.rx_info] == [-2.0, 9.5]
    assert up.time == up.rx_info[0].ns_time  # the reception time, as ChirpStack reports it
    txpk, _ = await harness.downlink(GW2)  # the best gateway (highest SNR) answers
    assert node.downlink(phy_of(txpk), 0).payload == b"\x07"
    harness.ns.receive_uplink(GW1, air(phy))  # a late copy inside the TTL
    harness.ns.receive_uplink(GW1, air(node.uplink(b"next", fport=2)))
    nxt = await harness.event("up")
    assert nxt.f_cnt == 1
    assert harness.kinds().count("up") == 2 and "log" not in harness.kinds()
    assert harness.ns.counters["duplicates"] == 1


async def test_fcnt_replay_is_dropped_with_a_log(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"a", fport=2)))
    first = await harness.event("up")
    replay = node.uplink(b"b", fport=2, fcnt=0)  # other bytes, same counter
    harness.ns.receive_uplink(GW1, air(replay))
    log = await harness.event("log")
    assert log_code(log) == "UPLINK_F_CNT_RETRANSMISSION"
    assert integration.LogLevel.Name(log.level) == "WARNING"
    assert log.context["f_cnt_up"] == "0"
    assert log.context["deduplication_id"] != first.deduplication_id
    assert harness.kinds().count("up") == 1


async def test_fcnt_reset_gives_a_log_and_no_up(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    for _ in range(6):
        harness.ns.receive_uplink(GW1, air(node.uplink(b"a", fport=2)))
        await harness.event("up")
    harness.ns.receive_uplink(GW1, air(node.uplink(b"z", fport=2, fcnt=2)))
    log = await harness.event("log")
    assert log_code(log) == "UPLINK_F_CNT_RESET"
    assert log.context["f_cnt_up"] == "2"
    assert harness.kinds().count("up") == 6


async def test_fcnt_32_bit_reconstruction(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"a", fport=2, fcnt=0xFFFE)))
    assert (await harness.event("up")).f_cnt == 0xFFFE
    harness.ns.receive_uplink(GW1, air(node.uplink(b"b", fport=2, fcnt=0x10001)))
    up = await harness.event("up")
    assert up.f_cnt == 0x10001  # only 0x0001 was on the air
    assert up.data == b"b"


async def test_bad_mic_from_known_devaddr(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    phy = bytearray(node.uplink(b"a", fport=2))
    phy[-1] ^= 0xFF
    harness.ns.receive_uplink(GW1, air(bytes(phy)))
    assert log_code(await harness.event("log")) == "UPLINK_MIC"
    assert "up" not in harness.kinds()


async def test_garbage_never_raises(harness: Harness) -> None:
    for rxpk in (
        {"data": "!!!", "freq": 868.1, "datr": "SF7BW125"},
        {"freq": 868.1},
        {"data": "AAAA", "freq": "x", "datr": "SF7BW125"},
        {"data": "AAAA", "freq": 868.1, "datr": "FSK"},
        air(b"\xe0\x01\x02"),  # proprietary
        air(b"\x40" + bytes(11)),  # unknown DevAddr
    ):
        harness.ns.receive_uplink(GW1, rxpk)
    await asyncio.sleep(0.1)
    assert harness.ns.counters["dropped"] == 6
    assert harness.events == []


# -- class A downlinks -----------------------------------------------------------------------
async def test_class_a_rx1_timing_and_fpending(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    first = harness.ns.enqueue(CLASS_A.dev_eui, b"\x01", f_port=7)
    harness.ns.enqueue(CLASS_A.dev_eui, b"\x02", f_port=7)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2), tmst=4_000_000_000))
    txpk, _ = await harness.downlink(GW1)
    assert txpk["tmst"] == (4_000_000_000 + 1_000_000) & 0xFFFFFFFF  # RX1 = 1 s, 32-bit wrap
    down = node.downlink(phy_of(txpk), 0)
    assert down.frame.fctrl.f_pending is True  # another item waits
    assert (await harness.event("txack")).queue_item_id == first
    assert [i.data for i in harness.ns.queue(CLASS_A.dev_eui)] == [b"\x02"]
    harness.ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2)))
    txpk, _ = await harness.downlink(GW1)
    down = node.downlink(phy_of(txpk), 1)  # the counter advanced on the TX ack
    assert down.payload == b"\x02" and down.frame.fctrl.f_pending is False


async def test_confirmed_uplink_is_acked(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"c", fport=2, confirmed=True)))
    up = await harness.event("up")
    assert up.confirmed is True
    txpk, _ = await harness.downlink(GW1)
    down = node.downlink(phy_of(txpk), 0)
    assert down.frame.fctrl.ack is True and down.frame.fport is None
    assert "txack" not in harness.kinds()  # no queue item, no txack


async def test_confirmed_downlink_not_acked(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    item = harness.ns.enqueue(CLASS_A.dev_eui, b"\x05", f_port=9, confirmed=True)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2)))
    await harness.downlink(GW1)
    await harness.event("txack")
    harness.ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2, ack=False)))
    ack = await harness.event("ack")
    assert (ack.queue_item_id, ack.acknowledged, ack.f_cnt_down) == (item, False, 0)
    assert harness.ns.queue(CLASS_A.dev_eui) == []


async def test_tx_ack_error_falls_back_to_rx2_then_logs() -> None:
    ns = NetworkServer([CLASS_A], fast_config())
    harness = Harness(ns)
    ns.add_event_sink(harness.sink)
    harness.gateway(GW1, auto_ack=False)
    async with ns:
        node = FakeNode.for_device(CLASS_A)
        phy = node.join_request()
        ns.receive_uplink(GW1, air(phy, tmst=0))
        txpk, token = await harness.downlink(GW1)
        ns.tx_ack(GW1, token, "NONE")
        node.join_accept(phy_of(txpk))
        item = ns.enqueue(CLASS_A.dev_eui, b"\x01", f_port=4)
        ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2), tmst=100))
        rx1, token = await harness.downlink(GW1)
        ns.tx_ack(GW1, token, "TOO_LATE")
        rx2, token = await harness.downlink(GW1)
        assert rx1["tmst"] == 1_000_100 and rx2["tmst"] == 2_000_100
        assert (rx2["freq"], rx2["datr"], rx2["powe"]) == (869.525, "SF12BW125", 27)
        assert rx2["data"] == rx1["data"]
        ns.tx_ack(GW1, token, "COLLISION_PACKET")
        log = await harness.event("log")
        assert log_code(log) == "DOWNLINK_GATEWAY" and log.description == "COLLISION_PACKET"
        assert [i.id for i in ns.queue(CLASS_A.dev_eui)] == [item]  # kept for a retry
        assert ns.session_of(CLASS_A.dev_eui)["n_f_cnt_down"] == 0  # type: ignore[index]
        ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2), tmst=200))
        retry, token = await harness.downlink(GW1)
        ns.tx_ack(GW1, token, "NONE")
        assert node.downlink(phy_of(retry), 0).payload == b"\x01"
        assert (await harness.event("txack")).queue_item_id == item


# -- class C ---------------------------------------------------------------------------------
async def test_class_c_immediate_and_confirmed_timeout(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_C)
    await harness.join(node)
    first = harness.ns.enqueue(CLASS_C.dev_eui, b"\x01", f_port=5)
    await asyncio.sleep(0.15)
    assert harness.downlinks[GW1].empty()  # no uplink yet: no gateway known (reference §7)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2), tmst=0))
    await harness.event("up")
    txpk, _ = await harness.downlink(GW1)  # the uplink's RX1 window goes first (class A lock)
    assert txpk["imme"] is False and txpk["tmst"] == 1_000_000
    assert node.downlink(phy_of(txpk), 0).payload == b"\x01"
    assert (await harness.event("txack")).queue_item_id == first
    item = harness.ns.enqueue(CLASS_C.dev_eui, b"\x02", f_port=5)
    txpk, _ = await harness.downlink(GW1)
    assert txpk["imme"] is True and "tmst" not in txpk
    assert (txpk["freq"], txpk["datr"], txpk["powe"]) == (869.525, "SF12BW125", 27)
    assert node.downlink(phy_of(txpk), 1).payload == b"\x02"
    txack = await harness.event("txack")
    assert txack.queue_item_id == item and txack.tx_info.timing.HasField("immediately")
    confirmed = harness.ns.enqueue(CLASS_C.dev_eui, b"\x03", f_port=5, confirmed=True)
    txpk, _ = await harness.downlink(GW1)
    assert node.downlink(phy_of(txpk), 2).frame.mhdr.mtype.is_confirmed
    await harness.event("txack")
    ack = await harness.event("ack")  # class_c_timeout passes without an uplink
    assert (ack.queue_item_id, ack.acknowledged, ack.deduplication_id) == (confirmed, False, "")


async def test_class_c_confirmed_acked_by_uplink(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_C)
    await harness.join(node)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2)))
    await harness.event("up")
    await harness.settle()
    item = harness.ns.enqueue(CLASS_C.dev_eui, b"\x02", f_port=5, confirmed=True)
    await harness.downlink(GW1)
    await harness.event("txack")
    harness.ns.receive_uplink(GW1, air(node.uplink(b"", fport=None, ack=True)))
    ack = await harness.event("ack")
    assert (ack.queue_item_id, ack.acknowledged) == (item, True)
    assert ack.deduplication_id == (await harness.event("up")).deduplication_id


# -- commands --------------------------------------------------------------------------------
async def test_command_dev_eui_must_match_topic(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    payload = json.dumps({"devEui": CLASS_C.dev_eui, "fPort": 5, "data": "AQ=="}).encode()
    with caplog.at_level(logging.WARNING, logger="citypack.netsim"):
        assert harness.ns.handle_command(command_topic(CLASS_A.dev_eui), payload) is None
        upper = json.dumps({"devEui": CLASS_A.dev_eui.upper(), "fPort": 5}).encode()
        assert harness.ns.handle_command(command_topic(CLASS_A.dev_eui), upper) is None
    assert "does not match topic dev_eui" in caplog.text
    assert harness.ns.queue(CLASS_A.dev_eui) == [] and harness.ns.queue(CLASS_C.dev_eui) == []
    assert harness.events == []  # ChirpStack reports nothing over MQTT


async def test_command_fields(harness: Harness) -> None:
    topic = command_topic(CLASS_A.dev_eui)
    item_id = str(uuid.uuid4())
    doc = {
        "id": item_id,
        "devEui": CLASS_A.dev_eui,
        "confirmed": True,
        "fPort": 300,  # cast to u8 before validation: 44
        "data": base64.b64encode(b"\x01\x02").decode(),
        "expiresAt": "2099-01-01T00:00:00Z",
        "flushQueue": True,  # not a DownlinkCommand field: ignored like any unknown key
    }
    assert harness.ns.handle_command(topic, json.dumps(doc).encode()) == item_id
    # the same id again (the gateway repeats a publish that may not have arrived): refused,
    # as ChirpStack's primary key on device_queue_item.id refuses it
    assert harness.ns.handle_command(topic, json.dumps(doc).encode()) is None
    snake = {"dev_eui": CLASS_A.dev_eui, "f_port": 2, "object": {"valve": "open"}}
    snake_id = harness.ns.handle_command(topic, json.dumps(snake).encode())
    assert snake_id is not None
    items = harness.ns.queue(CLASS_A.dev_eui)
    assert [(i.id, i.f_port, i.confirmed, i.data) for i in items] == [
        (item_id, 44, True, b"\x01\x02"),
        (snake_id, 2, False, b""),  # object with codec NONE: an empty payload
    ]
    assert items[0].expires_at == datetime(2099, 1, 1, tzinfo=UTC)
    for bad in (
        {"devEui": CLASS_A.dev_eui, "fPort": 0},
        {"devEui": CLASS_A.dev_eui, "fPort": 256},
        {"devEui": CLASS_A.dev_eui, "fPort": 225},  # RFU: protocol.lorawan cannot send it
        {"devEui": CLASS_A.dev_eui, "fPort": 1, "id": "not-a-uuid"},
        {"devEui": "0011223344556677", "fPort": 1},
    ):
        assert harness.ns.handle_command(topic, json.dumps(bad).encode()) is None
    assert harness.ns.handle_command(topic, b"{not json") is None
    other_app = f"application/{uuid.uuid4()}/device/{CLASS_A.dev_eui}/command/down"
    ok = json.dumps({"devEui": CLASS_A.dev_eui, "fPort": 1}).encode()
    assert harness.ns.handle_command(other_app, ok) is None
    protobuf = integration.DownlinkCommand(dev_eui=CLASS_A.dev_eui, f_port=8, data=b"\x09")
    assert harness.ns.handle_command(topic, protobuf.SerializeToString(), "protobuf")
    assert len(harness.ns.queue(CLASS_A.dev_eui)) == 3


async def test_expired_item_is_dropped_with_a_log(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    doc = {"devEui": CLASS_A.dev_eui, "fPort": 3, "data": "AQ==", "expiresAt": past}
    expired = harness.ns.handle_command(command_topic(CLASS_A.dev_eui), json.dumps(doc).encode())
    fresh = harness.ns.enqueue(CLASS_A.dev_eui, b"\x02", f_port=3)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2)))
    log = await harness.event("log")
    assert log_code(log) == "EXPIRED" and log.context["queue_item_id"] == expired
    txpk, _ = await harness.downlink(GW1)
    assert node.downlink(phy_of(txpk), 0).payload == b"\x02"
    assert (await harness.event("txack")).queue_item_id == fresh


async def test_expiry_is_on_the_clock_of_whoever_set_it() -> None:
    """``expiry_now`` (the fleet simulator's wall clock, the gateway's) decides expiry, not the
    accelerated ``now`` the emulator stamps its events with: a world running ahead of the wall
    clock must not expire what the gateway meant to last (tools/sim/fleet.py)."""
    wall = datetime.now(UTC)
    config = fast_config(now=lambda: wall + timedelta(hours=3), expiry_now=lambda: wall)
    async with joined_class_a(config) as (harness, node):
        ns = harness.ns
        soon = (wall + timedelta(seconds=60)).isoformat()
        gone = (wall - timedelta(seconds=1)).isoformat()
        topic = command_topic(CLASS_A.dev_eui)
        dropped = ns.handle_command(
            topic,
            json.dumps(
                {"devEui": CLASS_A.dev_eui, "fPort": 3, "data": "AQ==", "expiresAt": gone}
            ).encode(),
        )
        kept = ns.handle_command(
            topic,
            json.dumps(
                {"devEui": CLASS_A.dev_eui, "fPort": 3, "data": "Ag==", "expiresAt": soon}
            ).encode(),
        )
        ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2)))
        log = await harness.event("log")
        assert log_code(log) == "EXPIRED" and log.context["queue_item_id"] == dropped
        txpk, _ = await harness.downlink(GW1)
        assert node.downlink(phy_of(txpk), 0).payload == b"\x02"
        assert (await harness.event("txack")).queue_item_id == kept


async def test_enqueue_flush_queue_keeps_pending(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    pending = harness.ns.enqueue(CLASS_A.dev_eui, b"\x01", f_port=3, confirmed=True)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2)))
    await harness.event("txack")
    harness.ns.enqueue(CLASS_A.dev_eui, b"\x02", f_port=3)
    newest = harness.ns.enqueue(CLASS_A.dev_eui, b"\x03", f_port=3, flush_queue=True)
    assert [i.id for i in harness.ns.queue(CLASS_A.dev_eui)] == [pending, newest]


# -- MAC commands ----------------------------------------------------------------------------
async def test_link_check_and_device_time(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    fopts = LinkCheckReq().to_bytes() + DeviceTimeReq().to_bytes()
    before = datetime.now(UTC)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"", fport=None, fopts=fopts), lsnr=5.0))
    harness.ns.receive_uplink(GW2, air(node.uplink(b"", fport=None, fopts=fopts, fcnt=0)))
    txpk, _ = await harness.downlink(GW2)  # GW2 heard it best (7.5 dB)
    down = node.downlink(phy_of(txpk), 0)
    check, device_time = down.mac
    assert check == LinkCheckAns(margin=int(7.5 - -7.5), gw_cnt=2)  # best SNR over SF7's floor
    assert isinstance(device_time, DeviceTimeAns)
    gps = datetime(1980, 1, 6, tzinfo=UTC) + timedelta(seconds=device_time.gps_seconds - 18)
    assert abs((gps - before).total_seconds()) < 5


async def test_adr_raises_the_data_rate() -> None:
    async with joined_class_a(fast_config()) as (harness, node):
        # SF12 with 10 dB SNR: margin 10 - (-20) - 10 = 20 dB → 6 steps: DR0 → DR5, then power.
        harness.ns.receive_uplink(
            GW1, air(node.uplink(b"u", fport=2, adr=True), datr="SF12BW125", lsnr=10.0)
        )
        txpk, _ = await harness.downlink(GW1)
        assert txpk["datr"] == "SF12BW125"  # RX1 at the uplink's DR
        (request,) = node.downlink(phy_of(txpk), 0).mac
        assert request == LinkADRReq(
            data_rate=5, tx_power=1, ch_mask=0x00FF, ch_mask_cntl=0, nb_trans=1
        )
        answer = LinkADRAns(True, True, True).to_bytes()
        harness.ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2, adr=True, fopts=answer)))
        await harness.event("up")
        await asyncio.sleep(0.05)
        session = harness.ns.session_of(CLASS_A.dev_eui)
        assert session is not None and (session["dr"], session["tx_power_index"]) == (5, 1)


async def test_adr_refused_is_not_asked_again_at_once(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    sf12 = {"datr": "SF12BW125", "lsnr": 10.0}
    harness.ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2, adr=True), **sf12))
    txpk, _ = await harness.downlink(GW1)
    assert isinstance(node.downlink(phy_of(txpk), 0).mac[0], LinkADRReq)
    refusal = LinkADRAns(True, True, False).to_bytes()  # channel mask refused
    for fopts in (refusal, b""):
        phy = node.uplink(b"u", fport=2, adr=True, fopts=fopts)
        harness.ns.receive_uplink(GW1, air(phy, **sf12))
        await harness.event("up")
        await harness.settle()
    assert harness.downlinks[GW1].empty()  # neither uplink got a new LinkADRReq
    session = harness.ns.session_of(CLASS_A.dev_eui)
    assert session is not None and session["dr"] == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.builds(lambda b: b"\x40" + b, st.binary(min_size=11, max_size=40)),
            st.builds(lambda b: b"\x00" + b, st.binary(min_size=22, max_size=22)),
        ),
        max_size=8,
    )
)
def test_random_frames_never_raise(frames: list[bytes]) -> None:
    async def run() -> NetworkServer:
        ns = NetworkServer([CLASS_A, CLASS_C], fast_config(dedup_window_s=0.0))
        async with ns:
            for index, phy in enumerate(frames):
                ns.receive_uplink(GW1, air(phy, tmst=index))
            await asyncio.sleep(0.02)
        return ns

    ns = asyncio.run(run())
    assert ns.counters["uplinks"] + ns.counters["duplicates"] == len(frames)
    assert ns.counters["internal_errors"] == 0


@pytest.mark.parametrize(
    ("battery", "external", "unavailable", "level"),
    [
        (0, True, False, 0.0),
        (255, False, True, 0.0),
        (254, False, False, 100.0),
        (127, False, False, 50.0),
    ],
)
async def test_status_battery_mapping(
    battery: int, external: bool, unavailable: bool, level: float
) -> None:
    async with joined_class_a(fast_config(dev_status_every=1)) as (harness, node):
        answer = DevStatusAns(battery=battery, margin=-3).to_bytes()
        harness.ns.receive_uplink(GW1, air(node.uplink(b"", fport=None, fopts=answer)))
        status = await harness.event("status")
    assert (status.external_power_source, status.battery_level_unavailable) == (
        external,
        unavailable,
    )
    assert status.battery_level == pytest.approx(level, abs=1e-4) and status.margin == -3


async def test_gateway_queue_and_queue_full() -> None:
    ns = NetworkServer([CLASS_A], fast_config())
    harness = Harness(ns)
    ns.add_event_sink(harness.sink)
    queue = ns.attach_gateway_queue(GW1, maxsize=1)
    async with ns:
        node = FakeNode.for_device(CLASS_A)
        ns.receive_uplink(GW1, air(node.join_request(), tmst=0))
        txpk, _token = await asyncio.wait_for(queue.get(), 3)
        assert txpk["tmst"] == 5_000_000
        node.join_accept(phy_of(txpk))
        queue.put_nowait(({}, 0))  # the gateway is busy: no room for the next downlink
        item = ns.enqueue(CLASS_A.dev_eui, b"\x01", f_port=3)
        ns.receive_uplink(GW1, air(node.uplink(b"u", fport=2)))
        log = await harness.event("log")
        assert log_code(log) == "DOWNLINK_GATEWAY" and log.description == "QUEUE_FULL"
        assert [i.id for i in ns.queue(CLASS_A.dev_eui)] == [item]
