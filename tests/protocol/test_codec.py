"""protocol.codec (issue 2 §4): encoding, validation, decoding, and the golden payload vectors."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import catalogue, codec
from protocol.catalogue.model import Field, Message
from protocol.errors import CatalogueError, DecodeError, EncodeError, ProtocolError
from tests.protocol.payload_cases import mutations, vectors

BIN = catalogue.message("bin_status").examples["typical"]
PORTS = [m.fport for m in catalogue.MESSAGES]


def test_bin_status_typical_bytes_by_hand() -> None:
    # map(4) {0: 42, 1: 18, 2: 17 (85 % / 5), 5: 3}; tilt/fire/sensor_fault/pickup omitted
    assert codec.encode("bin_status", BIN) == (10, bytes.fromhex("a4 00 18 2a 01 12 02 11 05 03"))


def test_flags_enum_and_list_bytes_by_hand() -> None:
    fields = dict(catalogue.message("lamp_status").examples["typical"])
    fields.update(lamp_failure=True, day_burner=True, mode="override")
    # {0: 70, 1: 42, 2: 1 (override), 3: 0b10001, 4: 37, 5: 3}
    assert codec.encode("lamp_status", fields)[1] == bytes.fromhex(
        "a6 00 1846 01 182a 02 01 03 11 04 1825 05 03"
    )
    profile = {
        "command_id": 1,
        "config_version": 2,
        "base_level": 3,
        "boost_level": 4,
        "steps": [{"anchor": "clock", "offset_min": -1, "dim_level": 5}],
    }
    # hold_time_s omitted (default 60); steps = [[2, -1, 5]]
    assert codec.encode("lamp_profile", profile) == (
        121,
        bytes.fromhex("a5 00 01 01 02 02 03 03 04 05 81 83 02 20 05"),
    )


def test_encoding_is_cbor2_canonical() -> None:
    for msg in catalogue.MESSAGES:
        for fields in msg.examples.values():
            _, data = codec.encode(msg.name, fields)
            assert cbor2.dumps(cbor2.loads(data), canonical=True) == data


def test_defaults_are_omitted_and_filled_in() -> None:
    _, data = codec.encode("bin_config", {"command_id": 7, "config_version": 4})
    assert data == bytes.fromhex("a2 00 07 01 04")
    fields = codec.decode(110, data, "down").fields
    assert fields["full_threshold_percent"] == 80 and fields["report_interval_s"] == 3600
    assert codec.decode(102, bytes.fromhex("a1000c"), "down") == codec.Decoded(
        "reboot", {"command_id": 12}
    )


@pytest.mark.parametrize(("given_", "sent"), [(87, 85), (88, 90), (2, 0), (3, 5), (100, 100)])
def test_scaled_fields_round_half_up_to_their_step(given_: int, sent: int) -> None:
    fport, data = codec.encode("bin_status", BIN | {"battery_percent": given_})
    assert codec.decode(fport, data).fields["battery_percent"] == sent


def test_integral_floats_are_integers_but_fractions_are_refused() -> None:
    assert codec.encode("bin_status", BIN | {"fill_percent": 42.0}) == codec.encode(
        "bin_status", BIN
    )
    with pytest.raises(EncodeError, match="fill_percent must be an integer"):
        codec.encode("bin_status", BIN | {"fill_percent": 42.5})


@pytest.mark.parametrize(
    ("name", "fields", "words"),
    [
        ("bin_status", BIN | {"fill_percent": 101}, r"fill_percent 101 out of range 0\.\.100"),
        ("bin_status", BIN | {"temperature_c": -41}, r"temperature_c -41 out of range -40\.\.125"),
        ("bin_status", BIN | {"tilt": 1}, "tilt must be true or false"),
        ("bin_status", BIN | {"colour": "red"}, "unknown field 'colour'"),
        ("bin_status", {"temperature_c": 1}, "required field 'fill_percent'"),
        ("bin_alarm", {"alarm": "flood"}, "alarm must be one of fire"),
        ("lamp_override", {"command_id": -1, "dim_level": 1}, "command_id -1"),
    ],
)
def test_encode_errors_name_the_field_and_range(name: str, fields: Any, words: str) -> None:
    with pytest.raises(EncodeError, match=words) as info:
        codec.encode(name, fields)
    assert isinstance(info.value, ProtocolError)


def test_encode_unknown_message_and_non_mapping() -> None:
    with pytest.raises(CatalogueError):
        codec.encode("nope", {})
    with pytest.raises(EncodeError):
        codec.encode("reboot", [("command_id", 1)])  # type: ignore[arg-type]


def test_decode_checks_direction_port_and_input_type() -> None:
    _, data = codec.encode("bin_status", BIN)
    with pytest.raises(DecodeError, match="not a downlink"):
        codec.decode(10, data, "down")
    assert codec.decode(10, data, None).message == "bin_status"
    with pytest.raises(DecodeError, match="fPort 200"):
        codec.decode(200, data)
    with pytest.raises(DecodeError):
        codec.decode(10, "a400", "up")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        codec.decode("10", data)  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        codec.decode(10, data, "sideways")
    for odd_port in ([10], None, 10.0, -1, 2**70):
        with pytest.raises(DecodeError):
            codec.decode(odd_port, data, None)  # type: ignore[arg-type]
    assert codec.decode(10, bytearray(data)) == codec.decode(10, memoryview(data))


def test_decoded_is_frozen() -> None:
    decoded = codec.decode(*codec.encode("bin_status", BIN))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.message = "x"  # type: ignore[misc]


def test_canonical_flat_payloads_take_the_generated_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Otherwise the fast-vs-strict agreement tests below would compare the strict path with
    itself."""
    flat = {
        m.fport for m in catalogue.MESSAGES if all(f.type not in ("str", "list") for f in m.fields)
    }
    assert set(codec._FAST) == flat and {10, 20, 21} <= flat

    def refuse(*args: object) -> codec.Decoded:
        raise AssertionError(f"strict path taken for {args!r}")

    monkeypatch.setattr(codec, "decode_strict", refuse)
    for case in vectors()["cases"]:
        if case["fport"] in flat:
            assert (
                codec.decode(case["fport"], bytes.fromhex(case["hex"]), None).fields
                == (case["fields"])
            )


# --------------------------------------------------------------- golden vectors


def test_vectors_cover_every_message_with_three_cases_and_the_examples() -> None:
    doc = vectors()
    for msg in catalogue.MESSAGES:
        labels = {c["case"] for c in doc["cases"] if c["message"] == msg.name}
        assert labels == set(msg.examples), msg.name
        assert {"typical", "minimum", "maximum"} <= labels
    assert len(doc["invalid"]) >= 30 and len(doc["decode_only"]) >= 5


def test_vectors_cpython_encode_and_decode() -> None:
    for case in vectors()["cases"]:
        data = bytes.fromhex(case["hex"])
        assert codec.encode(case["message"], case["fields"]) == (case["fport"], data)
        decoded = codec.decode(case["fport"], data, case["direction"])
        assert decoded == codec.Decoded(case["message"], case["fields"])
        assert catalogue.message(case["message"]).examples[case["case"]] == case["fields"]


def test_vectors_decode_only_cases() -> None:
    for case in vectors()["decode_only"]:
        data = bytes.fromhex(case["hex"])
        for decode in (codec.decode, codec.decode_strict):
            assert decode(case["fport"], data, None) == codec.Decoded(
                case["message"], case["fields"]
            ), case["reason"]


def test_vectors_invalid_bytes_are_refused_by_both_readers() -> None:
    for case in vectors()["invalid"]:
        data = bytes.fromhex(case["hex"])
        for decode in (codec.decode, codec.decode_strict):
            with pytest.raises(DecodeError):
                decode(case["fport"], data, None)
                pytest.fail(case["reason"])


def test_vectors_invalid_fields_are_refused() -> None:
    for case in vectors()["invalid_fields"]:
        with pytest.raises(ProtocolError):
            codec.encode(case["message"], case["fields"])
            pytest.fail(case["reason"])


def test_vectors_compact_forms_encode_and_decode() -> None:
    """bin_status's compact form (fPort 12, protocol version 2): a CBOR array by key, 11 bytes
    at worst, decoded to the same message and fields as the map form on fPort 10."""
    doc = vectors()
    assert doc["compact"] and doc["compact_refused"]
    for case in doc["compact"]:
        data = bytes.fromhex(case["hex"])
        assert codec.encode_compact(case["message"], case["fields"]) == (case["fport"], data)
        assert codec.decode(case["fport"], data) == codec.Decoded(case["message"], case["fields"])
        assert codec.decode_strict(case["fport"], data) == codec.decode(
            *codec.encode(case["message"], case["fields"])
        )
        assert len(data) <= 11  # US915 DR0 (RP002-1.0.4 §5.2.6: N = 19 - 8)
    for case in doc["compact_refused"]:
        with pytest.raises(EncodeError, match="beyond the compact form"):
            codec.encode_compact(case["message"], case["fields"])
    with pytest.raises(EncodeError, match="has no compact form"):
        codec.encode_compact("lamp_status", catalogue.message("lamp_status").examples["typical"])


def test_compact_fport_is_in_the_catalogue_and_the_map_form_still_decodes() -> None:
    assert catalogue.by_fport(12).name == "bin_status" and {12} == catalogue.COMPACT_FPORTS
    typical = catalogue.message("bin_status").examples["typical"]
    assert codec.decode(*codec.encode("bin_status", typical)).fields == typical


# --------------------------------------------------------------- properties


def _outcome(decode: Any, fport: int, data: bytes) -> Any:
    try:
        result = decode(fport, data, None)
    except ProtocolError as exc:
        assert isinstance(exc, DecodeError)
        return "refused"
    assert isinstance(result, codec.Decoded)
    return result


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([*PORTS, 0, 99, 224]), st.binary(max_size=64))
def test_any_bytes_decode_or_raise_a_decode_error(fport: int, data: bytes) -> None:
    assert _outcome(codec.decode, fport, data) == _outcome(codec.decode_strict, fport, data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(vectors()["cases"]) - 1), st.binary(min_size=1, max_size=4), st.data())
def test_spliced_payloads_fast_and_strict_readers_agree(
    index: int, chunk: bytes, data: st.DataObject
) -> None:
    case = vectors()["cases"][index]
    raw = bytes.fromhex(case["hex"])
    at = data.draw(st.integers(0, len(raw)))
    cut = data.draw(st.integers(0, 2))
    mutated = raw[:at] + chunk + raw[at + cut :]
    assert _outcome(codec.decode, case["fport"], mutated) == _outcome(
        codec.decode_strict, case["fport"], mutated
    )


def test_mutated_vectors_agree_between_readers() -> None:
    accepted = 0
    for fport, data in mutations(3000):
        outcome = _outcome(codec.decode, fport, data)
        assert outcome == _outcome(codec.decode_strict, fport, data)
        accepted += outcome != "refused"
    assert accepted > 100  # the mutations reach the field checks, not only the CBOR reader


def test_random_flat_maps_agree_between_readers() -> None:
    """Maps of random small keys and integer forms: the generated canonical decoders meet keys
    out of order, unknown keys, every integer form, wrong counts and trailing bytes."""
    rng = random.Random(5)
    flat = [m for m in catalogue.MESSAGES if m.fport in codec._FAST]
    widths = {0x18: 1, 0x19: 2, 0x1A: 4, 0x38: 1, 0x39: 2, 0x3A: 4}
    accepted = 0
    for _ in range(4000):
        msg = rng.choice(flat)
        if rng.random() < 0.7:  # mostly the message's own keys, ascending, some left out
            keys = [k for k in msg.keys if rng.random() < 0.8]
        else:
            keys = [rng.randrange(0, 26) for _ in range(rng.randrange(0, 8))]
        body = bytearray([0xA0 + len(keys)])
        for key in keys:
            body.append(key)
            small = rng.randrange(0, 24)
            form = rng.choice([small, small, 0x18, 0x19, rng.randrange(0x20, 0x38), *widths])
            body.append(form)
            body += bytes(rng.choice((0, rng.randrange(256))) for _ in range(widths.get(form, 0)))
        if rng.random() < 0.1:
            body.append(0)
        data = bytes(body)
        outcome = _outcome(codec.decode, msg.fport, data)
        assert outcome == _outcome(codec.decode_strict, msg.fport, data), data.hex()
        accepted += outcome != "refused"
    assert accepted > 200


def test_huge_nesting_is_refused_without_recursion_errors() -> None:
    in_unknown_key = bytes.fromhex("a2000017") + bytes([0x81]) * 230 + b"\x00"
    in_known_field = bytes.fromhex("a100") + bytes([0x81]) * 230 + b"\x00"
    for bomb in (in_unknown_key, in_known_field):
        with pytest.raises(DecodeError, match="nested deeper than 8"):
            codec.decode(102, bomb, "down")


def _field_values(f: Field) -> st.SearchStrategy[Any]:
    if f.type == "bool":
        return st.booleans()
    if f.type == "enum":
        return st.sampled_from(f.choices)
    if f.type in ("uint", "int"):
        return st.integers(f.minimum // f.scale, f.maximum // f.scale).map(lambda v: v * f.scale)
    if f.type == "str":
        return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=f.max_len)
    item = st.fixed_dictionaries(
        {
            i.name: st.sampled_from(i.choices)
            if i.type == "enum"
            else st.integers(i.minimum, i.maximum)
            for i in f.item
        }
    )
    return st.lists(item, max_size=f.max_items)


def _messages_and_fields() -> st.SearchStrategy[tuple[Message, dict[str, Any]]]:
    return st.sampled_from(catalogue.MESSAGES).flatmap(
        lambda m: st.tuples(
            st.just(m), st.fixed_dictionaries({f.name: _field_values(f) for f in m.fields})
        )
    )


@settings(max_examples=300, deadline=None)
@given(_messages_and_fields())
def test_any_valid_fields_round_trip(pair: tuple[Message, dict[str, Any]]) -> None:
    msg, fields = pair
    fport, data = codec.encode(msg.name, fields)
    assert fport == msg.fport and len(data) <= codec.MAX_PAYLOAD
    assert codec.decode(fport, data, msg.direction).fields == fields
    assert codec.decode_strict(fport, data, msg.direction).fields == fields


_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(catalogue.MESSAGES),
    st.dictionaries(st.text(max_size=12), _ANY_JSON, max_size=6),
    st.data(),
)
def test_any_fields_encode_or_raise_an_encode_error(
    msg: Message, junk: dict[str, Any], data: st.DataObject
) -> None:
    # start from a valid example so the checks past "required field missing" are reached
    fields = dict(msg.examples["typical"])
    for name in data.draw(st.lists(st.sampled_from([f.name for f in msg.fields]), max_size=3)):
        fields[name] = data.draw(_ANY_JSON)
    fields.update(junk if data.draw(st.booleans()) else {})
    try:
        fport, payload = codec.encode(msg.name, fields)
    except ProtocolError as exc:
        assert isinstance(exc, EncodeError)
    else:
        assert fport == msg.fport
        assert codec.decode(fport, payload, None).message == msg.name
