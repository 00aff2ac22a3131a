"""`citypack frame decode` through tools.cli.main (issue 2 §5 and its done-when check)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from protocol.lorawan import AESKey, DataFrame, DevAddr, JoinAccept, MType, NetID
from protocol.lorawan.join import CFListChannelMask, DLSettings
from tools.cli import main

# lora-packet uplink vector (reference lorawan.md §3C)
UPLINK = "40f17dbe4900020001954378762b11ff0d"
NWK = "44024241ed4ce9a68c6a8bc055233fd3"
APP = "ec925802ae430ca77fd3dd73cb2cc588"
K01 = "01" * 16


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["frame", "decode", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "--json", *argv)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def test_done_when_lora_packet_uplink_prints_test_with_mic_ok(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, UPLINK, "--nwkskey", NWK, "--appskey", APP)
    assert code == 0 and err == ""
    assert len(out.splitlines()) == 1
    assert '"test"' in out and "MIC OK" in out
    assert NWK not in out and APP not in out


@pytest.mark.parametrize(
    "argv",
    [
        ["40 f1 7d be 49 00 02 00 01 95 43 78 76 2b 11 ff 0d"],
        ["0x40F17DBE4900020001954378762B11FF0D"],
        ["40:f1:7d:be:49:00:02:00:01:95:43:78:76:2b:11:ff:0d"],
        ["40f17dbe49", "0002000195437876", "2b11ff0d"],
    ],
)
def test_hex_as_people_paste_it(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    got = run_json(capsys, *argv, "--nwkskey", NWK, "--appskey", APP)
    assert got["mic_ok"] is True and bytes.fromhex(got["frm_payload"]) == b"test"


def test_json_keys_of_a_data_frame(capsys: pytest.CaptureFixture[str]) -> None:
    got = run_json(capsys, UPLINK, "--nwkskey", NWK, "--appskey", APP)
    assert got["mtype"] == "unconfirmed_data_up"
    assert got["dev_addr"] == "49be7df1"
    assert (got["fcnt"], got["fport"], got["mic_ok"]) == (2, 1, True)
    assert bytes.fromhex(got["frm_payload"]) == b"test"
    assert got["frm_payload_decrypted"] is True
    assert got["fctrl"]["adr"] is False and got["fopts"] == ""
    assert got["mac_commands"] == []
    # fPort 1 is a citypack port but "test" is not our CBOR: reported, not fatal
    assert got["message"] is None and got["message_error"]


def test_without_keys_mic_is_null_and_payload_stays_raw(capsys: pytest.CaptureFixture[str]) -> None:
    got = run_json(capsys, UPLINK)
    assert got["mic_ok"] is None
    assert got["frm_payload"] == "95437876"
    assert got["frm_payload_decrypted"] is False


def test_wrong_key_reports_mic_failed(capsys: pytest.CaptureFixture[str]) -> None:
    got = run_json(capsys, UPLINK, "--nwkskey", K01)
    assert got["mic_ok"] is False
    code, out, _ = run(capsys, UPLINK, "--nwkskey", K01)
    assert code == 0 and "MIC FAILED" in out


def test_fopts_mac_commands_and_absent_fport(capsys: pytest.CaptureFixture[str]) -> None:
    got = run_json(capsys, "4004030201030000020305d7fa0c6c", "--nwkskey", K01)
    assert got["fport"] is None and got["frm_payload"] is None and got["mic_ok"] is True
    assert got["fopts"] == "020305"
    assert [c["command"] for c in got["mac_commands"]] == ["LinkCheckReq", "LinkADRAns"]
    assert got["mac_commands"][1]["data_rate_ack"] is False


def test_fport0_payload_needs_the_nwkskey(capsys: pytest.CaptureFixture[str]) -> None:
    phy = "40040302010000000069369eee6aa508"
    assert run_json(capsys, phy)["mac_commands"] is None
    got = run_json(capsys, phy, "--nwkskey", K01)
    assert got["frm_payload"] == "020305"
    assert [c["command"] for c in got["mac_commands"]] == ["LinkCheckReq", "LinkADRAns"]


def test_fcnt_msb_for_32_bit_counters(capsys: pytest.CaptureFixture[str]) -> None:
    phy = "a00403020180ff2a2a0af1a36a05d0125f885d881d49e1"
    keys = ("--nwkskey", "02" * 16, "--appskey", K01)
    assert run_json(capsys, phy, *keys)["mic_ok"] is False
    got = run_json(capsys, phy, *keys, "--fcnt-msb", "1")
    assert (got["fcnt"], got["fcnt16"], got["mic_ok"]) == (76543, 0x2AFF, True)
    assert got["mtype"] == "confirmed_data_down"
    assert bytes.fromhex(got["frm_payload"]) == b"hello lora"


def test_join_request(capsys: pytest.CaptureFixture[str]) -> None:
    phy = "00010101010101010102020202020202020303" + "09b97b32"
    key = "0102030405060708090a0b0c0d0e0f10"
    got = run_json(capsys, phy, "--appkey", key)
    assert got["mtype"] == "join_request"
    assert (got["join_eui"], got["dev_eui"], got["dev_nonce"]) == (
        "0101010101010101",
        "0202020202020202",
        771,
    )
    assert got["mic_ok"] is True and got["fport"] is None
    assert run_json(capsys, phy)["mic_ok"] is None


def test_join_accept_with_and_without_appkey(capsys: pytest.CaptureFixture[str]) -> None:
    phy = "20e45673b63cb4b9cecb2aa83f0333e615d2ac89eea1659837c3aa6df9689889cf"
    hidden = run_json(capsys, phy)
    assert hidden["mtype"] == "join_accept" and hidden["decrypted"] is False
    assert hidden["mic_ok"] is None
    got = run_json(capsys, phy, "--appkey", K01)
    assert got["decrypted"] is True and got["mic_ok"] is True
    assert (got["join_nonce"], got["net_id"], got["dev_addr"]) == (0x010203, "090807", "03040506")
    assert (got["dl_settings"], got["rx1_dr_offset"], got["rx2_data_rate"]) == (0x12, 1, 2)
    assert got["rx_delay"] == 3
    freqs = [867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000]
    assert got["cflist"] == {"type": 0, "frequencies_hz": freqs}
    assert got["cflist_hz"] == freqs
    assert run_json(capsys, phy, "--appkey", "02" * 16)["mic_ok"] is False


def test_join_accept_channel_mask_cflist(capsys: pytest.CaptureFixture[str]) -> None:
    key = AESKey(bytes(range(16)))
    accept = JoinAccept.build(
        key,
        join_nonce=1,
        net_id=NetID(0x13),
        dev_addr=DevAddr(0x26011BDA),
        dl_settings=DLSettings(0, 8),
        cflist=CFListChannelMask((0xFF00, 0, 0, 0, 0x0002)),
    )
    got = run_json(capsys, accept.encrypt(key).hex(), "--appkey", key.hex())
    assert got["cflist"]["type"] == 1
    assert got["cflist"]["channels"] == [*range(8, 16), 65]
    assert got["dev_addr"] == "26011bda"


def test_our_message_is_decoded(capsys: pytest.CaptureFixture[str]) -> None:
    from protocol import catalogue, codec

    msg = catalogue.message("bin_status")
    fport, data = codec.encode("bin_status", msg.examples["typical"])
    nwk, app = AESKey(bytes([3]) * 16), AESKey(bytes([4]) * 16)
    frame = DataFrame.build(
        mtype=MType.UNCONFIRMED_DATA_UP,
        dev_addr=DevAddr(0x26011BDA),
        fcnt=9,
        fport=fport,
        payload=data,
        nwk_s_key=nwk,
        app_s_key=app,
    )
    got = run_json(capsys, frame.to_bytes().hex(), "--nwkskey", nwk.hex(), "--appskey", app.hex())
    assert got["message"] == {
        "message": "bin_status",
        "fields": codec.decode(fport, data, "up").fields,
    }
    assert got["message_error"] is None
    code, out, _ = run(capsys, frame.to_bytes().hex(), "--appskey", app.hex())
    assert code == 0 and "message bin_status" in out and "MIC not checked" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["zz"], "not valid hex"),
        (["400"], "odd number"),
        (["8004030201"], "at least 12"),
        (["e0" + "00" * 12], "proprietary"),
        (["20" + "00" * 15], "17 or 33"),
        ([UPLINK, "--nwkskey", "0102"], "--nwkskey must be 32 hex digits"),
        ([UPLINK, "--fcnt-msb", "70000"], "--fcnt-msb"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert words in err
    assert "Traceback" not in err


def test_key_text_never_echoed_in_errors(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "44024241ed4ce9a68c6a8bc055233f"  # one byte short
    code, _, err = run(capsys, UPLINK, "--appskey", secret)
    assert code == 2 and secret not in err


def test_stdin_json_lines_continue_after_a_bad_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = "\n".join(
        [
            UPLINK,
            "not hex",
            "",
            "# a comment",
            "60f17dbe4920020001f9d65d27",
            "40",
        ]
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(capture + "\n"))
    code, out, _ = run(capsys, "--json", "-", "--nwkskey", NWK, "--appskey", APP)
    assert code == 2
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 4
    assert bytes.fromhex(rows[0]["frm_payload"]) == b"test"
    assert rows[1]["line"] == 2 and "hex" in rows[1]["error"]
    assert rows[2]["mtype"] == "unconfirmed_data_down" and rows[2]["mic_ok"] is True
    assert rows[2]["fctrl"]["ack"] is True
    assert rows[3] == {"line": 6, "error": rows[3]["error"]} and "12" in rows[3]["error"]


def test_stdin_human_one_line_per_frame(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{UPLINK}\n{UPLINK}\n"))
    code, out, _ = run(capsys, "-", "--nwkskey", NWK, "--appskey", APP)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and all("MIC OK" in line and '"test"' in line for line in lines)


def test_stream_learns_session_keys_from_a_join(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference §3D: the OTAA chain decodes with the AppKey alone, joins first."""
    app_key = "0102030405060708090a0b0c0d0e0f10"
    chain = [
        "00010101010101010102020202020202020303" + "09b97b32",  # Join-Request
        json.dumps({"time": "t", "direction": "down", "phy": "2023cf335489aae3183c0be0baa8dee5f3"}),
        "4004030201800100014e03bf0833d32aefdd",  # uplink FCnt 1, "hello"
        "60040302012000000285c5e39a5acc",  # downlink FCnt 0, aa55
        '{"direction": "up"}',
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(chain) + "\n"))
    code, out, _ = run(capsys, "--json", "-", "--appkey", app_key)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 2  # the last line has no "phy"
    assert rows[0]["mic_ok"] is True
    assert rows[1]["session_keys_derived"] is True and rows[1]["dev_addr"] == "01020304"
    assert rows[2]["mic_ok"] is True and bytes.fromhex(rows[2]["frm_payload"]) == b"hello"
    assert rows[3]["mic_ok"] is True and rows[3]["frm_payload"] == "aa55"
    assert rows[4] == {"line": 5, "error": 'a JSON line needs "phy" (the frame as hex)'}
    for secret in ("2db833b894589ee855275f2db014889d", "aef1d12682d0df1d7bfddcf8cde4e6ee", app_key):
        assert secret not in out


def test_inspector_works_without_the_payload_codec(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import protocol

    monkeypatch.delattr(protocol, "codec", raising=False)
    monkeypatch.setitem(sys.modules, "protocol.codec", None)  # `import` now fails
    got = run_json(capsys, UPLINK, "--nwkskey", NWK, "--appskey", APP)
    assert got["mic_ok"] is True and bytes.fromhex(got["frm_payload"]) == b"test"
    assert got["message"] is None and "unavailable" in got["message_error"]
