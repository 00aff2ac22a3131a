"""Frame layouts: range checks, length checks, direction rules, keys, and fuzzing of decoders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import DecodeError, EncodeError, FCntError, FrameError, ProtocolError
from protocol.lorawan import (
    EUI64,
    AESKey,
    CFListChannelMask,
    DataFrame,
    DevAddr,
    DLSettings,
    EncryptedJoinAccept,
    FCtrl,
    JoinAccept,
    JoinRequest,
    MType,
    NetID,
    PHYPayload,
    reconstruct_fcnt,
)
from protocol.lorawan.mhdr import MHDR

K1 = AESKey(bytes([1]) * 16)
K2 = AESKey(bytes([2]) * 16)
ADDR = DevAddr.from_hex("01020304")


def test_identifiers_print_msb_first_and_travel_lsb_first() -> None:
    eui = EUI64.from_hex("70-B3-D5-7E-D0-00-00-01")
    assert eui.hex() == "70b3d57ed0000001" == str(eui)
    assert eui.to_bytes() == bytes.fromhex("010000d07ed5b370")
    assert EUI64.from_bytes(eui.to_bytes()) == eui
    assert DevAddr.from_hex("0x26011BDA").to_bytes() == bytes.fromhex("da1b0126")
    assert NetID.from_hex("000013").value == 0x13


@pytest.mark.parametrize(
    ("text", "words"),
    [("zz" * 8, "not valid hex"), ("01" * 7, "must be 8 bytes"), ("01" * 9, "must be 8 bytes")],
)
def test_bad_eui_text(text: str, words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        EUI64.from_hex(text)


def test_keys_never_print_their_bytes() -> None:
    key = AESKey.from_hex("2b7e151628aed2a6abf7158809cf4f3c")
    assert "2b7e" not in repr(key) and "2b7e" not in str(key)
    with pytest.raises(DecodeError) as info:
        AESKey.from_hex("2b7e151628aed2a6abf7158809cf4f")  # one byte short
    assert "2b7e" not in str(info.value)
    with pytest.raises(EncodeError):
        DevAddr(1 << 32)


def test_mhdr_refuses_other_major_versions() -> None:
    assert MHDR.from_bytes(b"\x40").mtype is MType.UNCONFIRMED_DATA_UP
    with pytest.raises(FrameError, match="Major"):
        MHDR.from_bytes(b"\x41")
    assert MHDR.from_bytes(b"\x5c").to_bytes() == b"\x5c"  # RFU bits kept for byte identity


def test_fctrl_bits_differ_by_direction() -> None:
    up = FCtrl.from_bytes(b"\xd5", uplink=True)
    assert (up.adr, up.adr_ack_req, up.ack, up.class_b, up.fopts_len) == (
        True,
        True,
        False,
        True,
        5,
    )
    down = FCtrl.from_bytes(b"\xd5", uplink=False)
    assert (down.adr, down.rfu, down.ack, down.f_pending, down.fopts_len) == (
        True,
        True,
        False,
        True,
        5,
    )
    assert up.to_bytes() == down.to_bytes() == b"\xd5"
    with pytest.raises(EncodeError, match="only in downlink"):
        FCtrl(uplink=True, f_pending=True)
    with pytest.raises(EncodeError, match="only in uplink"):
        FCtrl(uplink=False, adr_ack_req=True)


def _frame(**kw: object) -> DataFrame:
    args: dict[str, object] = {
        "mtype": MType.UNCONFIRMED_DATA_UP,
        "dev_addr": ADDR,
        "fcnt": 7,
        "nwk_s_key": K2,
        "app_s_key": K1,
        "fport": 5,
        "payload": b"abc",
    }
    args.update(kw)
    return DataFrame.build(**args)  # type: ignore[arg-type]


def test_build_parse_round_trip_with_flags_and_fopts() -> None:
    frame = _frame(
        mtype=MType.CONFIRMED_DATA_DOWN, fopts=b"\x06", ack=True, f_pending=True, fcnt=0x12345
    )
    parsed = DataFrame.from_bytes(frame.to_bytes())
    assert parsed == frame
    assert parsed.fcnt16 == 0x2345
    assert parsed.decrypt(app_s_key=K1, fcnt=0x12345) == b"abc"
    assert [c.NAME for c in parsed.mac_commands()] == ["DevStatusReq"]


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"fport": 230}, "RFU"),
        ({"fport": None}, "needs an FPort"),
        ({"fport": 0, "fopts": b"\x02"}, "FOpts and in FPort 0"),
        ({"fopts": bytes(16)}, "at most 15"),
        ({"fcnt": 1 << 32}, "32-bit"),
        ({"mtype": MType.JOIN_REQUEST}, "not a data frame"),
        ({"payload": bytes(250)}, "exceeds 255"),
        ({"nwk_s_key": b"short"}, "16-byte"),
    ],
)
def test_build_refuses_with_spec_words(kw: dict[str, object], words: str) -> None:
    with pytest.raises(EncodeError, match=words):
        _frame(**kw)


def test_fport0_uses_the_nwkskey() -> None:
    frame = _frame(fport=0, payload=b"\x02", nwk_s_key=K2, app_s_key=K1)
    assert frame.decrypt(nwk_s_key=K2) == b"\x02"
    assert frame.decrypt(nwk_s_key=K2, app_s_key=K1) == b"\x02"
    assert [c.NAME for c in frame.mac_commands(nwk_s_key=K2)] == ["LinkCheckReq"]
    with pytest.raises(EncodeError, match="NwkSKey"):
        frame.decrypt(app_s_key=K1)


def test_fcnt_must_match_the_on_air_bits() -> None:
    frame = _frame(fcnt=0x10002)
    assert frame.mic_ok(K2, 0x10002)
    assert not frame.mic_ok(K2)  # the 16 bits alone give the wrong B0
    with pytest.raises(EncodeError, match="low bits"):
        frame.mic_ok(K2, 0x10003)


@pytest.mark.parametrize(
    ("hexdata", "words"),
    [
        ("", "empty"),
        ("40010203", "at least 12"),
        ("4004030201050000aabbccdd", "FOptsLen says 5"),
        ("40040302010000e1e2e3e4e5e6", "RFU"),  # FPort 0xe1 = 225
        ("c0" + "00" * 12, "RFU"),
        ("e0" + "00" * 12, "proprietary"),
        ("00" + "00" * 21, "23 bytes"),
        ("20" + "00" * 17, "17 or 33"),
        ("400403020101000002000600000000", "FOpts and in FPort 0"),
        ("40" + "00" * 255, "at most 255"),
    ],
)
def test_phy_payload_errors(hexdata: str, words: str) -> None:
    with pytest.raises(FrameError, match=words):
        PHYPayload.from_bytes(bytes.fromhex(hexdata))


def test_join_request_round_trip() -> None:
    req = JoinRequest.build(K1, EUI64(1), EUI64(0x70B3D57ED0000001), 41)
    assert JoinRequest.from_bytes(req.to_bytes()) == req
    assert req.mic_ok(K1) and not req.mic_ok(K2)
    with pytest.raises(EncodeError, match="16 bits"):
        JoinRequest.build(K1, EUI64(1), EUI64(2), 1 << 16)


def test_join_accept_with_channel_mask_cflist() -> None:
    cflist = CFListChannelMask((0xFF00, 0, 0, 0, 0x0002))
    accept = JoinAccept.build(
        K1,
        join_nonce=5,
        net_id=NetID(0x13),
        dev_addr=ADDR,
        dl_settings=DLSettings(2, 8),
        rx_delay=1,
        cflist=cflist,
    )
    phy = accept.encrypt(K1)
    assert len(phy) == 33
    assert isinstance(PHYPayload.from_bytes(phy), EncryptedJoinAccept)
    back = JoinAccept.decrypt(phy, K1)
    assert back == accept
    assert isinstance(back.cflist, CFListChannelMask)
    assert back.cflist.enabled_channels() == [*range(8, 16), 65]
    assert back.rx1_delay_s == 1


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"join_nonce": 1 << 24}, "24 bits"),
        ({"rx_delay": 16}, "4 bits"),
    ],
)
def test_join_accept_range_checks(kw: dict[str, int], words: str) -> None:
    args: dict[str, object] = {"join_nonce": 1, "net_id": NetID(1), "dev_addr": ADDR}
    args.update(kw)
    with pytest.raises(EncodeError, match=words):
        JoinAccept.build(K1, **args)  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="RX1DROffset"):
        DLSettings(8, 0)


def test_fcnt_max_gap_option() -> None:
    assert reconstruct_fcnt(10, 10 + 16384, max_gap=16384) == 16394
    with pytest.raises(FCntError, match="MAX_FCNT_GAP"):
        reconstruct_fcnt(10, 10 + 16385, max_gap=16384)
    with pytest.raises(FCntError) as info:
        reconstruct_fcnt(5, 5)
    assert info.value.context["f_cnt"] == 5


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_phy_payload_on_arbitrary_bytes_raises_only_protocol_errors(data: bytes) -> None:
    try:
        frame = PHYPayload.from_bytes(data)
    except ProtocolError:
        return
    assert frame.to_bytes() == data  # whatever parses re-encodes byte for byte
    if isinstance(frame, DataFrame):
        try:
            frame.mic_ok(K1)
            frame.decrypt(nwk_s_key=K1, app_s_key=K2)
            frame.mac_commands(nwk_s_key=K1, strict=False)
        except ProtocolError:
            pass
    elif isinstance(frame, EncryptedJoinAccept):
        try:
            frame.decrypt(K1, verify=False)
        except ProtocolError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0x00, 0x20, 0x40, 0x60, 0x80, 0xA0]), st.binary(min_size=11, max_size=40))
def test_frames_with_valid_mhdr_raise_only_protocol_errors(mhdr: int, rest: bytes) -> None:
    data = bytes([mhdr]) + rest
    try:
        frame = PHYPayload.from_bytes(data)
    except ProtocolError:
        return
    assert frame.to_bytes() == data


def test_construct_errors_are_translated_at_the_boundary() -> None:
    import construct

    from protocol.lorawan import _layout
    from protocol.lorawan.join import _JOIN_REQUEST

    with pytest.raises(FrameError, match="Join-Request does not parse") as info:
        _layout.parse(_JOIN_REQUEST, b"\x00\x01", "Join-Request")
    assert isinstance(info.value.__cause__, construct.ConstructError)
    with pytest.raises(EncodeError, match="cannot be encoded") as built:
        values = {"mhdr": 256, "join_eui": 1, "dev_eui": 2, "dev_nonce": 3, "mic": bytes(4)}
        _layout.build(_JOIN_REQUEST, values, "Join-Request")
    assert isinstance(built.value.__cause__, construct.ConstructError)


@settings(max_examples=150, deadline=None)
@given(
    mtype=st.sampled_from(
        [
            MType.UNCONFIRMED_DATA_UP,
            MType.CONFIRMED_DATA_UP,
            MType.UNCONFIRMED_DATA_DOWN,
            MType.CONFIRMED_DATA_DOWN,
        ]
    ),
    dev_addr=st.integers(0, 0xFFFFFFFF),
    fcnt=st.integers(0, 0xFFFFFFFF),
    fport=st.one_of(st.none(), st.integers(0, 224)),
    payload=st.binary(max_size=64),
    fopts=st.binary(max_size=15),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_build_parse_verify_decrypt_round_trip(
    mtype: MType,
    dev_addr: int,
    fcnt: int,
    fport: int | None,
    payload: bytes,
    fopts: bytes,
    flags: tuple[bool, bool, bool],
) -> None:
    if fport is None:
        payload = b""
    if fport == 0:
        fopts = b""
    adr, ack, extra = flags
    uplink = mtype.is_uplink
    frame = DataFrame.build(
        mtype=mtype,
        dev_addr=DevAddr(dev_addr),
        fcnt=fcnt,
        nwk_s_key=K2,
        app_s_key=K1,
        fport=fport,
        payload=payload,
        fopts=fopts,
        adr=adr,
        ack=ack,
        adr_ack_req=extra and uplink,
        f_pending=extra and not uplink,
    )
    parsed = PHYPayload.from_bytes(frame.to_bytes())
    assert parsed == frame
    assert isinstance(parsed, DataFrame)
    assert parsed.fcnt16 == fcnt & 0xFFFF
    parsed.verify_mic(K2, fcnt)
    assert parsed.decrypt(nwk_s_key=K2, app_s_key=K1, fcnt=fcnt) == payload
    if len(payload) >= 4:  # ciphertext differs from plaintext (a 2**-32 chance aside)
        assert parsed.frm_payload != payload
