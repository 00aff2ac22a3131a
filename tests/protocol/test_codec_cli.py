"""`citypack codec list|example|encode|decode` through tools.cli.main (issue 2 §5 shapes)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol import catalogue
from tools.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["codec", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv)
    assert code == 0 and err == "", err
    assert len(out.splitlines()) == 1
    return json.loads(out)


def test_list_json_has_every_message_with_the_issue_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = run_json(capsys, "list", "--json")
    assert [m["name"] for m in listed] == [m.name for m in catalogue.MESSAGES]
    by_name = {m["name"]: m for m in listed}
    assert by_name["bin_status"]["fport"] == 10
    assert by_name["bin_status"]["direction"] == "up" and by_name["bin_status"]["periodic"] is True
    assert by_name["lamp_override"]["direction"] == "down"
    assert by_name["lamp_override"]["periodic"] is False
    assert {m["direction"] for m in listed} == {"up", "down"}
    fill = by_name["bin_status"]["fields"][0]
    assert fill["name"] == "fill_percent" and fill["key"] == 0 and fill["unit"] == "%"
    assert (fill["minimum"], fill["maximum"], fill["scale"]) == (0, 100, 1)
    battery = next(f for f in by_name["bin_status"]["fields"] if f["name"] == "battery_percent")
    assert battery["scale"] == 5


def test_list_text_names_every_message(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    for msg in catalogue.MESSAGES:
        assert any(line.split()[0] == msg.name for line in out.splitlines()[1:])


def test_example_prints_the_typical_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_json(capsys, "example", "bin_status")
        == (catalogue.message("bin_status").examples["typical"])
    )
    assert (
        run_json(capsys, "example", "lamp_profile", "--case", "maximum")
        == (catalogue.message("lamp_profile").examples["maximum"])
    )


def test_encode_and_decode_json_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    fields = catalogue.message("bin_status").examples["typical"]
    encoded = run_json(capsys, "encode", "--json", "bin_status", json.dumps(fields))
    assert encoded == {"fport": 10, "hex": "a400182a011202110503"}
    decoded = run_json(capsys, "decode", "--json", "--fport", "10", encoded["hex"])
    assert decoded == {"message": "bin_status", "fields": fields}


def test_decode_of_encode_of_every_example_gives_it_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for msg in catalogue.MESSAGES:
        example = run_json(capsys, "example", msg.name)
        encoded = run_json(capsys, "encode", "--json", msg.name, json.dumps(example))
        assert encoded["fport"] == msg.fport
        decoded = run_json(capsys, "decode", "--json", "--fport", str(msg.fport), encoded["hex"])
        assert decoded == {"message": msg.name, "fields": example}


def test_decode_direction_is_inferred_or_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_json(capsys, "decode", "--json", "--fport", "102", "--direction", "down", "a1000c")[
        "fields"
    ] == {"command_id": 12}
    code, out, err = run(capsys, "decode", "--fport", "102", "--direction", "up", "a1000c")
    assert code == 2 and out == "" and "downlink" in err


def test_plain_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "encode", "reboot", '{"command_id": 12}')
    assert code == 0 and out.startswith("a1000c") and "fPort 102" in out
    code, out, _ = run(capsys, "decode", "--fport", "10", "a4 00 18 2a 01 12 02 11 05 03")
    assert code == 0
    assert out.splitlines()[0] == "bin_status (fPort 10, uplink)"
    assert "  fill_percent: 42 %" in out.splitlines()


def test_encode_reads_fields_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('{"command_id": 1}'))
    assert run_json(capsys, "encode", "--json", "status_request", "-") == {
        "fport": 103,
        "hex": "a10001",
    }


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["decode", "--fport", "10", "zz"], "HEX is not hexadecimal"),
        (["decode", "--fport", "10", "a4001"], "HEX is not hexadecimal"),
        (["decode", "--fport", "ten", "a0"], "--fport must be an integer"),
        (["decode", "--fport", "99", "a0"], "no citypack message on fPort 99"),
        (["decode", "--fport", "10", "a400182a01"], "bad CBOR"),
        (["decode", "--fport", "10", "a4001865011202110503"], "fill_percent 101"),
        (["encode", "bin_statuz", "{}"], "unknown message 'bin_statuz'"),
        (["encode", "bin_status", '{"fill_percent": 101}'], "fill_percent 101 out of range"),
        (["encode", "bin_status", "{"], "not valid JSON"),
        (["encode", "bin_status", "[1]"], "must be a JSON object"),
        (["encode", "reboot", '{"command_id": 1, "x": 2}'], "unknown field 'x'"),
        (["example", "nope"], "unknown message 'nope'"),
        (["example", "reboot", "--case", "huge"], "no example 'huge'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("citypack: error: ")
    assert words in err
    assert "Traceback" not in err
