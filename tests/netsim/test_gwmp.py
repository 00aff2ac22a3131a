"""GWMP v2: the codec, and the emulator over real UDP on loopback with the small client."""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.netsim.conftest import CLASS_A, GW1, fast_config, until
from tests.netsim.fakenode import FakeNode, air, phy_of
from tools.netsim import gwmp
from tools.netsim.gwmp import GwmpClient, GwmpError, GwmpServer, Packet
from tools.netsim.server import NetworkServer


def test_codec_round_trips() -> None:
    packets = [
        Packet(gwmp.PUSH_DATA, 0xBEEF, GW1, {"rxpk": [{"data": "AA=="}]}),
        Packet(gwmp.PUSH_ACK, 0xBEEF),
        Packet(gwmp.PULL_DATA, 1, GW1),
        Packet(gwmp.PULL_ACK, 1),
        Packet(gwmp.PULL_RESP, 2, None, {"txpk": {"imme": True}}),
        Packet(gwmp.TX_ACK, 2, GW1, {"txpk_ack": {"error": "NONE"}}),
        Packet(gwmp.TX_ACK, 3, GW1),
    ]
    for packet in packets:
        assert gwmp.decode(gwmp.encode(packet)) == packet


def test_wire_layout() -> None:
    raw = gwmp.encode(Packet(gwmp.PULL_DATA, 0x1234, "0016c001f153a14c"))
    assert raw == bytes.fromhex("02123402") + bytes.fromhex("0016c001f153a14c")
    assert gwmp.encode(Packet(gwmp.PUSH_ACK, 0x1234)) == bytes.fromhex("02123401")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x02\x00",
        b"\x03\x00\x00\x00" + bytes(8) + b"{}",  # version 3
        b"\x02\x00\x00\x09",  # unknown identifier
        b"\x02\x00\x00\x00\x01\x02",  # PUSH_DATA without a full EUI
        b"\x02\x00\x00\x00" + bytes(8) + b"{not json",
        b"\x02\x00\x00\x00" + bytes(8) + b"[1, 2]",
        b"\x02\x00\x00\x00" + bytes(8),  # PUSH_DATA without JSON
        b"\x02\x00\x00\x00" + bytes(8) + b"\xff\xfe",
        b"\x02\x00\x00\x01junk",
    ],
)
def test_decode_raises_only_gwmp_error(raw: bytes) -> None:
    with pytest.raises(GwmpError):
        gwmp.decode(raw)


async def test_class_a_over_udp_with_tx_ack() -> None:
    ns = NetworkServer([CLASS_A], fast_config())
    events: list[tuple[str, object]] = []
    ns.add_event_sink(lambda event, dev, message: events.append((event, message)))
    async with ns:
        server = await GwmpServer.start(ns, "127.0.0.1", 0)
        host, port = server.address
        try:
            async with GwmpClient(GW1, host, port) as client:
                node = FakeNode.for_device(CLASS_A)
                phy = node.join_request()
                await client.push([air(phy, tmst=1_000)])  # waits for PUSH_ACK
                token, txpk = await client.downlink(5.0)
                assert txpk["tmst"] == 5_001_000
                await client.tx_ack(token)
                node.join_accept(phy_of(txpk))
                item = ns.enqueue(CLASS_A.dev_eui, b"\x2a", f_port=8)
                await client.push([air(node.uplink(b"u", fport=2), tmst=2_000)])
                token, txpk = await client.downlink(5.0)
                assert txpk["tmst"] == 1_002_000 and txpk["imme"] is False
                assert node.downlink(phy_of(txpk), 0).payload == b"\x2a"
                assert "txack" not in [e for e, _ in events]  # nothing until the TX_ACK
                await client.tx_ack(token)
                await until(lambda: "txack" in [e for e, _ in events])
                txack = next(m for e, m in events if e == "txack")
                assert txack.queue_item_id == item and txack.gateway_id == GW1  # type: ignore[attr-defined]
        finally:
            server.close()


async def test_server_survives_garbage_and_drops_bad_crc() -> None:
    ns = NetworkServer([CLASS_A], fast_config())
    async with ns:
        server = await GwmpServer.start(ns, "127.0.0.1", 0)
        host, port = server.address
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.sendto(b"\x02\x00", (host, port))
                raw.sendto(b"\x02\x00\x01\x00" + bytes(8) + b"{bad", (host, port))
            async with GwmpClient(GW1, host, port) as client:
                node = FakeNode.for_device(CLASS_A)
                bad_crc = {**air(node.join_request()), "stat": -1}
                await client.push([bad_crc, "not an object"])  # type: ignore[list-item]
                await client.push([air(node.join_request())])
                _token, txpk = await client.downlink(5.0)
                accept = node.join_accept(phy_of(txpk))
                assert accept.join_nonce == 0  # the bad-CRC copy was never processed
            assert server.dropped >= 3
            assert ns.counters["uplinks"] == 1
        finally:
            server.close()


def test_rxpk_helper_matches_the_forwarder_format() -> None:
    pk = gwmp.rxpk(b"\x01\x02", tmst=5, freq_mhz=868.3, datr="SF9BW125", rssi=-99, lsnr=-4.25)
    assert pk == {
        "tmst": 5,
        "chan": 0,
        "rfch": 0,
        "freq": 868.3,
        "stat": 1,
        "modu": "LORA",
        "datr": "SF9BW125",
        "codr": "4/5",
        "rssi": -99,
        "lsnr": -4.25,
        "size": 2,
        "data": "AQI=",
    }
    json.dumps(pk)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_any_bytes(raw: bytes) -> None:
    try:
        packet = gwmp.decode(raw)
    except GwmpError:
        return
    assert packet.identifier in range(6)
