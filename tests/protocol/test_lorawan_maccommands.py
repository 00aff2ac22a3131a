"""MAC commands: every command round-trips both ways, spec ranges, parsing of command lists."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import EncodeError, ProtocolError
from protocol.lorawan import maccommands as mc

EXAMPLES: list[mc.MACCommand] = [
    mc.LinkCheckReq(),
    mc.LinkADRAns(power_ack=True, data_rate_ack=False, channel_mask_ack=True),
    mc.DutyCycleAns(),
    mc.RXParamSetupAns(rx1_dr_offset_ack=False, rx2_data_rate_ack=True, channel_ack=False),
    mc.DevStatusAns(battery=115, margin=7),
    mc.DevStatusAns(battery=0, margin=-32),
    mc.NewChannelAns(data_rate_range_ok=False, channel_frequency_ok=True),
    mc.RXTimingSetupAns(),
    mc.TxParamSetupAns(),
    mc.DlChannelAns(uplink_frequency_exists=True, channel_frequency_ok=False),
    mc.DeviceTimeReq(),
    mc.LinkCheckAns(margin=20, gw_cnt=3),
    mc.LinkADRReq(data_rate=5, tx_power=2, ch_mask=0x00FF, ch_mask_cntl=0, nb_trans=1),
    mc.LinkADRReq(data_rate=15, tx_power=15, ch_mask=0xFFFF, ch_mask_cntl=7, nb_trans=15),
    mc.DutyCycleReq(max_duty_cycle=7),
    mc.RXParamSetupReq(rx1_dr_offset=1, rx2_data_rate=3, frequency_hz=869_525_000),
    mc.DevStatusReq(),
    mc.NewChannelReq(ch_index=3, frequency_hz=867_100_000, max_dr=5, min_dr=0),
    mc.NewChannelReq(ch_index=7, frequency_hz=0, max_dr=0, min_dr=0),
    mc.RXTimingSetupReq(delay=5),
    mc.TxParamSetupReq(downlink_dwell_time=True, uplink_dwell_time=False, max_eirp=5),
    mc.DlChannelReq(ch_index=3, frequency_hz=868_500_000),
    mc.DeviceTimeAns(gps_seconds=1_400_000_000, fraction=128),
]


def test_every_command_has_an_example() -> None:
    assert {type(e) for e in EXAMPLES} == set(mc.ALL_COMMANDS)
    assert len(mc.ALL_COMMANDS) == 20


@pytest.mark.parametrize("cmd", EXAMPLES, ids=lambda c: c.NAME)
def test_round_trip(cmd: mc.MACCommand) -> None:
    raw = cmd.to_bytes()
    assert raw[0] == cmd.CID
    assert len(raw) == 1 + cmd.size()
    assert type(cmd).from_bytes(raw) == cmd
    assert mc.parse_mac_commands(raw, uplink=cmd.UPLINK) == [cmd]
    assert cmd.to_json()["command"] == cmd.NAME


@pytest.mark.parametrize(
    ("cmd", "hexdata"),
    [
        (mc.DevStatusAns(battery=115, margin=7), "067307"),  # ChirpStack lrwn vector
        (mc.LinkADRAns(power_ack=True, data_rate_ack=False, channel_mask_ack=True), "0305"),
        (
            mc.NewChannelReq(ch_index=3, frequency_hz=867_100_000, max_dr=5, min_dr=0),
            "0703184f8450",
        ),
        (
            mc.LinkADRReq(data_rate=5, tx_power=3, ch_mask=0xFF00, ch_mask_cntl=7, nb_trans=2),
            "035300ff72",
        ),
        (
            mc.RXParamSetupReq(rx1_dr_offset=1, rx2_data_rate=3, frequency_hz=869_525_000),
            "0513d2ad84",
        ),
        (mc.DevStatusAns(battery=10, margin=-5), "060a3b"),
        (mc.DeviceTimeAns(gps_seconds=0x01020304, fraction=0x80), "0d0403020180"),
    ],
)
def test_known_encodings(cmd: mc.MACCommand, hexdata: str) -> None:
    assert cmd.to_bytes().hex() == hexdata


def test_direction_decides_the_meaning_of_a_cid() -> None:
    assert mc.parse_mac_commands(bytes.fromhex("020305"), uplink=True) == [
        mc.LinkCheckReq(),
        mc.LinkADRAns(power_ack=True, data_rate_ack=False, channel_mask_ack=True),
    ]
    assert mc.parse_mac_commands(bytes.fromhex("020305"), uplink=False) == [
        mc.LinkCheckAns(margin=3, gw_cnt=5)
    ]


def test_unknown_cid_stops_parsing() -> None:
    data = bytes.fromhex("0210aabb")
    with pytest.raises(mc.UnknownMACCommandError) as info:
        mc.parse_mac_commands(data, uplink=True)
    assert (info.value.context["cid"], info.value.context["offset"]) == (0x10, 1)
    out = mc.parse_mac_commands(data, uplink=True, strict=False)
    assert out[0] == mc.LinkCheckReq()
    assert isinstance(out[1], mc.UnknownMACCommand)
    assert out[1].to_json() == {"command": "unknown", "cid": 0x10, "rest": "10aabb"}


@pytest.mark.parametrize(
    ("hexdata", "uplink", "words"),
    [
        ("0673", True, "2 more bytes"),
        ("03010203", False, "4 more bytes"),
        ("0508", True, "RFU"),
        ("04f0", False, "RFU"),
        ("02ff01", False, "Margin"),
    ],
)
def test_bad_command_bytes(hexdata: str, uplink: bool, words: str) -> None:
    with pytest.raises(mc.MACCommandError, match=words):
        mc.parse_mac_commands(bytes.fromhex(hexdata), uplink=uplink)


@pytest.mark.parametrize(
    ("cls", "kw", "words"),
    [
        (mc.LinkADRReq, {"data_rate": 16}, "DataRate"),
        (mc.LinkADRReq, {"ch_mask_cntl": 8}, "ChMaskCntl"),
        (mc.DevStatusAns, {"margin": 32}, "Margin"),
        (mc.NewChannelReq, {"frequency_hz": 868_100_050}, "multiple of 100 Hz"),
        (mc.LinkCheckAns, {"margin": 255}, "reserved"),
        (mc.DeviceTimeAns, {"fraction": 256}, "1/256"),
    ],
)
def test_range_checks_use_spec_words(cls: Any, kw: dict[str, int], words: str) -> None:
    with pytest.raises(EncodeError, match=words):
        cls(**kw)


def test_encode_checks_direction() -> None:
    raw = mc.encode_mac_commands(
        [mc.LinkCheckReq(), mc.DevStatusAns(battery=1, margin=0)], uplink=True
    )
    assert raw.hex() == "02060100"
    with pytest.raises(EncodeError, match="downlink"):
        mc.encode_mac_commands([mc.LinkCheckReq()], uplink=False)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40), st.booleans(), st.booleans())
def test_parsing_arbitrary_bytes_raises_only_protocol_errors(
    data: bytes, uplink: bool, strict: bool
) -> None:
    try:
        commands = mc.parse_mac_commands(data, uplink=uplink, strict=strict)
    except ProtocolError:
        return
    assert b"".join(c.to_bytes() for c in commands) == data
