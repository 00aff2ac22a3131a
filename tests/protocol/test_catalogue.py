"""The message catalogue (issue 2 §3): names, fPorts, fields, examples and the size budget."""

from __future__ import annotations

import pytest

from protocol import catalogue, codec
from protocol.catalogue.model import Field, Message, check_message
from protocol.errors import CatalogueError
from tools.bench.payload_size import lpp_size

# docs/interfaces.md "Message names and field names (everyone uses these)", plus the documented
# extra field lamp_override.resume_schedule.
INTERFACE_FIELDS = {
    "bin_status": {
        "fill_percent",
        "temperature_c",
        "battery_percent",
        "tilt",
        "fire",
        "sensor_fault",
        "pickup_count",
        "config_version",
    },
    "bin_alarm": {"alarm", "value", "fill_percent"},
    "lamp_status": {
        "dim_level",
        "active_power_w",
        "mode",
        "lamp_failure",
        "dimming_failure",
        "relay_failure",
        "supply_loss",
        "day_burner",
        "road_users",
        "config_version",
    },
    "lamp_counters": {"active_energy_wh", "operating_hours", "switch_on_count"},
    "lamp_presence": {"road_users", "dim_level"},
    "device_info": {
        "kind",
        "firmware_version",
        "hardware",
        "protocol_version",
        "reset_reason",
        "config_version",
    },
    "command_result": {"command_id", "outcome", "config_version"},
    "lamp_override": {"command_id", "dim_level", "duration_s", "fade_s", "resume_schedule"},
    "lamp_profile": {
        "command_id",
        "config_version",
        "base_level",
        "boost_level",
        "hold_time_s",
        "steps",
    },
    "bin_config": {
        "command_id",
        "config_version",
        "container_height_cm",
        "sensor_offset_cm",
        "full_threshold_percent",
        "fire_threshold_c",
        "report_interval_s",
        "fill_step_percent",
    },
    "device_config": {"command_id", "config_version", "report_interval_s"},
    "time_sync": {"command_id", "unix_time"},
    "reboot": {"command_id"},
    "status_request": {"command_id"},
}
UPLINKS = {
    "bin_status",
    "bin_alarm",
    "lamp_status",
    "lamp_counters",
    "lamp_presence",
    "device_info",
    "command_result",
}
PERIODIC = {"bin_status", "lamp_status", "lamp_counters"}


def test_names_and_fields_are_the_interface_ones() -> None:
    assert {m.name: {f.name for f in m.fields} for m in catalogue.MESSAGES} == INTERFACE_FIELDS


def test_directions_and_periodic_flags() -> None:
    for msg in catalogue.MESSAGES:
        assert msg.direction == ("up" if msg.name in UPLINKS else "down"), msg.name
        assert msg.periodic == (msg.name in PERIODIC), msg.name


def test_fports_are_unique_across_directions_and_in_the_application_range() -> None:
    ports = [m.fport for m in catalogue.MESSAGES]
    assert len(set(ports)) == len(ports)
    assert all(1 <= p <= 223 for p in ports)
    assert catalogue.by_fport(10).name == "bin_status"
    with pytest.raises(CatalogueError):
        catalogue.by_fport(224)


def test_every_downlink_carries_a_command_id_the_result_echoes() -> None:
    for msg in catalogue.MESSAGES:
        if msg.direction == "down":
            f = msg.field("command_id")
            assert (f.key, f.minimum, f.maximum, f.required) == (0, 0, 255, True)
    assert catalogue.message("command_result").field("command_id").maximum == 255


def test_keys_are_small_and_shared_only_by_flags() -> None:
    for msg in catalogue.MESSAGES:
        for key in msg.keys:
            group = [f for f in msg.fields if f.key == key]
            assert 0 <= key <= 23
            if len(group) > 1:
                assert {f.type for f in group} == {"bool"}
                assert len({f.bit for f in group}) == len(group)


def test_every_message_has_typical_minimum_and_maximum_examples_that_round_trip() -> None:
    for msg in catalogue.MESSAGES:
        assert {"typical", "minimum", "maximum"} <= set(msg.examples)
        for label, fields in msg.examples.items():
            assert set(fields) == {f.name for f in msg.fields}, (msg.name, label)
            fport, data = codec.encode(msg.name, fields)
            assert codec.decode(fport, data, msg.direction).fields == fields


def test_device_info_carries_the_protocol_version() -> None:
    info = catalogue.message("device_info")
    assert info.examples["typical"]["protocol_version"] == catalogue.PROTOCOL_VERSION
    assert catalogue.PROTOCOL_VERSION >= 1


def test_package_docstring_states_the_schema_evolution_rule() -> None:
    doc = catalogue.__doc__ or ""
    for words in ("never renumbered", "New fields get new keys", "ignore unknown keys"):
        assert words in doc
    assert "protocol_version" in doc


def _size(name: str, case: str = "typical") -> int:
    return len(codec.encode(name, catalogue.message(name).examples[case])[1])


def test_bin_status_fits_11_bytes_at_typical_values() -> None:
    """Issue 2 "Numbers": US915 DR0 carries 11 bytes of application payload."""
    assert _size("bin_status") <= 11


def test_every_periodic_message_fits_24_bytes_and_beats_cayenne_lpp() -> None:
    for msg in catalogue.MESSAGES:
        if msg.periodic:
            fields = msg.examples["typical"]
            size = _size(msg.name)
            assert size <= 24, msg.name
            assert size < lpp_size(msg, fields), msg.name


def test_every_message_at_its_maximum_fits_the_eu868_dr0_payload() -> None:
    """51 bytes is EU868 DR0/DR1/DR2's maximum N (RP002-1.0.4 §2.4.6), the RX2 default."""
    for msg in catalogue.MESSAGES:
        assert _size(msg.name, "maximum") <= 51, msg.name


def _message(*fields: Field, **kwargs: object) -> Message:
    base: dict[str, object] = {
        "name": "x",
        "fport": 50,
        "direction": "up",
        "device": "common",
        "periodic": False,
        "description": "",
        "fields": fields,
        "examples": {"typical": {}, "minimum": {}, "maximum": {}},
    }
    base.update(kwargs)
    return Message(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "extra", "words"),
    [
        ((Field("a", 24, "uint", "", maximum=1),), {}, "key 24"),
        ((Field("a", 0, "uint", "", maximum=1), Field("b", 0, "uint", "", maximum=1)), {}, "key 0"),
        ((Field("a", 0, "uint", "", maximum=10, scale=3),), {}, "multiples of the scale"),
        ((Field("a", 0, "uint", "", maximum=2**40),), {}, "4-byte"),
        ((Field("a", 0, "uint", "", maximum=5, default=6),), {}, "default"),
        ((Field("a", 0, "bool", "", bit=0, default=False),) * 2, {}, "duplicate field"),
        ((Field("message", 0, "uint", "", maximum=1),), {}, "reserved"),
        ((), {"fport": 224}, "fPort 224"),
        ((), {"examples": {"typical": {}}}, "'minimum' example"),
    ],
)
def test_catalogue_check_refuses_ambiguous_entries(
    fields: tuple[Field, ...], extra: dict[str, object], words: str
) -> None:
    with pytest.raises(CatalogueError, match=words):
        check_message(_message(*fields, **extra))


def test_unknown_message_names_the_known_ones() -> None:
    with pytest.raises(CatalogueError, match="known: device_info"):
        catalogue.message("bin_statuss")
