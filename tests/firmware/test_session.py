"""A whole node session in virtual time: the MicroPython MAC against a CPython network peer.

The node (tests/firmware/mpy/session_node.py) runs the real firmware MAC with a virtual clock and
the UDP sim radio; the peer (tests/firmware/netpeer.py) is built from ``protocol.lorawan``. One
session covers: OTAA join with CFList, uplinks, a confirmed downlink acknowledged on the next
uplink, a LinkADRReq block (ChMask + redundancy), DevStatus, RXParamSetup with its sticky answer
repeated until a class A downlink, LinkCheck and DeviceTime, and a class C downlink between
uplinks. The same harness also runs under CPython (the fleet simulator's interpreter).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from protocol.lorawan.maccommands import (
    DeviceTimeAns,
    DevStatusAns,
    DevStatusReq,
    LinkADRAns,
    LinkADRReq,
    LinkCheckAns,
    RXParamSetupReq,
)
from tests.firmware.netpeer import Down, NetPeer, Uplink
from tests.helpers import procs
from tests.helpers.firmware import HARNESS

APP_KEY = bytes(range(1, 17))
CH_MASK = 0x001F  # channels 0..4: the three defaults and the first two CFList channels
ALLOWED = {868100000, 868300000, 868500000, 867100000, 867300000}


def _plan(peer: NetPeer) -> None:
    def first(up: Uplink) -> Down:
        return Down(
            fport=20,
            payload=b"cmd1",
            confirmed=True,
            fopts=[
                LinkADRReq(data_rate=5, tx_power=1, ch_mask=0, ch_mask_cntl=6, nb_trans=1),
                LinkADRReq(data_rate=5, tx_power=2, ch_mask=CH_MASK, ch_mask_cntl=0, nb_trans=1),
                DevStatusReq(),
            ],
        )

    def second(up: Uplink) -> Down:
        peer.expect_rx_param(1, 2, 869525000)
        return Down(
            port0=[RXParamSetupReq(rx1_dr_offset=1, rx2_data_rate=2, frequency_hz=869525000)]
        )

    def fourth(up: Uplink) -> Down:
        return Down(fport=21, payload=b"x")  # RX1 at DR5 - offset 1 = DR4

    def fifth(up: Uplink) -> Down:
        return Down(
            fopts=[
                LinkCheckAns(margin=12, gw_cnt=3),
                DeviceTimeAns(gps_seconds=1_400_000_000, fraction=128),
            ]
        )

    peer.plan = {0: first, 1: second, 3: fourth, 4: fifth}
    sent_class_c: list[int] = []

    def on_poll(t_ms: int) -> Down | None:
        if len(peer.uplinks) == 6 and not sent_class_c:
            sent_class_c.append(t_ms)
            return Down(fport=30, payload=b"classC")
        return None

    peer.on_poll = on_poll


@pytest.fixture
def peer() -> Iterator[NetPeer]:
    p = NetPeer(APP_KEY).start()
    _plan(p)
    yield p
    p.stop()


def _check(peer: NetPeer, node: dict[str, Any]) -> None:
    assert peer.errors == []
    assert node["join"]["status"] == "joined"
    assert node["join"]["dev_addr"] == peer.dev_addr.value  # type: ignore[union-attr]
    assert node["after_join"]["rx2_dr"] == 3  # DLSettings applied
    assert node["after_join"]["channels"][3:8] == [
        867100000,
        867300000,
        867500000,
        867700000,
        867900000,
    ]
    ups = peer.uplinks
    sends = node["sends"]
    assert [s["status"] for s in sends] == ["ok"] * 7
    assert [u.fcnt for u in ups] == list(range(7))
    assert [u.payload for u in ups] == [b"u%d" % i for i in range(1, 8)]
    # confirmed downlink delivered with its data, then acknowledged on the next uplink only
    assert sends[0]["fport"] == 20 and sends[0]["payload"] == b"cmd1".hex()
    assert sends[0]["confirmed_downlink"] is True
    assert [u.ack for u in ups] == [False, True, False, False, False, False, False]
    # LinkADR block: one answer per request, all accepted, then DR5 / power 2 on channels 0..4
    assert ups[1].commands.count("LinkADRAns") == 2
    adr_answers = [c for c in ups[1].command_objects if isinstance(c, LinkADRAns)]
    assert all(a.power_ack and a.data_rate_ack and a.channel_mask_ack for a in adr_answers)
    status = [c for c in ups[1].command_objects if isinstance(c, DevStatusAns)]
    assert len(status) == 1 and status[0].battery == 200
    assert node["after_adr"] == {"dr": 5, "tx_power": 2, "mask": CH_MASK, "nb_trans": 1}
    assert ups[0].dr == 0 and all(u.dr == 5 for u in ups[1:])
    assert all(u.freq_hz in ALLOWED for u in ups[1:])
    # RXParamSetupAns is sticky: repeated until the class A downlink after uplink 4
    assert ["RXParamSetupAns" in u.commands for u in ups] == [
        False,
        False,
        True,
        True,
        False,
        False,
        False,
    ]
    assert node["after_rx_param"] == {"rx1_dr_offset": 1, "rx2_dr": 2, "rx2_freq": 869525000}
    assert sends[3]["fport"] == 21 and sends[3]["payload"] == b"x".hex()  # caught in RX1 at DR4
    # LinkCheck and DeviceTime ride on uplink 5 and their answers come back in its result
    assert "LinkCheckReq" in ups[4].commands and "DeviceTimeReq" in ups[4].commands
    assert sends[4]["link_check"] == [12, 3]
    assert sends[4]["device_time"] == [1_400_000_000, 128]
    # confirmed uplink acknowledged
    assert ups[5].confirmed and sends[5]["ack"] is True
    # class C downlink between uplinks
    assert node["class"] == "C"
    assert node["class_c"] == [30, b"classC".hex()]
    assert node["class_c_wait_ms"] <= 2000  # heard within one poll interval (virtual ms)
    assert node["status"]["class_c_downlinks"] == 1
    assert node["status"]["drops"] == {}
    assert peer.dev_nonces == [0]


@pytest.mark.micropython
def test_session_micropython(micropython: str, peer: NetPeer) -> None:
    node = procs.run_micropython_json(
        HARNESS / "session_node.py", args=[str(peer.port)], path=[HARNESS], timeout_s=60
    )
    _check(peer, node)


def test_session_cpython(peer: NetPeer) -> None:
    from tests.helpers.firmware import run_cpython_json

    node = run_cpython_json(HARNESS / "session_node.py", args=[str(peer.port)], timeout_s=60)
    _check(peer, node)
