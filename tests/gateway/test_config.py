"""gateway.config: defaults, validation naming section.key, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError


def test_only_the_broker_url_is_required() -> None:
    cfg = parse_config({"mqtt": {"url": "mqtt://127.0.0.1:1883"}}, environ={})
    assert cfg.mqtt.qos == 1
    assert cfg.mqtt.client_id == "citypack-gateway"
    assert cfg.mqtt.marshaler == "json"
    assert cfg.store.url.startswith("sqlite:///")
    assert cfg.api.listen == "127.0.0.1:8080"
    assert cfg.publish.base_topic == "citypack"
    assert cfg.publish.homeassistant is False


def test_missing_url_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.url"):
        parse_config({}, environ={})


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"mqtt": {"url": "mqtt://h", "qos": "1"}}, "mqtt.qos"),
        ({"mqtt": {"url": "mqtt://h", "colour": 1}}, "mqtt.colour"),
        ({"mqtt": {"url": "mqtt://h"}, "store": {"retention_days": True}}, "store.retention_days"),
        ({"mqtt": {"url": "mqtt://h"}, "nosuch": {}}, "nosuch"),
        ({"mqtt": {"url": "mqtt://h", "marshaler": "xml"}}, "mqtt.marshaler"),
        ({"mqtt": {"url": "http://h"}}, "mqtt.url"),
        ({"mqtt": {"url": "mqtt://h"}, "store": {"url": "mysql://x"}}, "store.url"),
        ({"mqtt": {"url": "mqtt://h"}, "api": {"listen": "nohost"}}, "api.listen"),
        (
            {"mqtt": {"url": "mqtt://h"}, "publish": {"homeassistant": "yes"}},
            "publish.homeassistant",
        ),
        ({"mqtt": {"url": "mqtt://h"}, "bins": {"full_threshold_percent": 150}}, "bins.full"),
        ({"mqtt": {"url": "mqtt://h"}, "lamps": {"profiles": 3}}, "lamps.profiles"),
        ({"mqtt": {"url": "mqtt://h"}, "availability": {"factor": 0.5}}, "availability.factor"),
    ],
)
def test_bad_values_name_section_and_key(doc: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, environ={})
    assert where in str(info.value)
    assert "\n" not in str(info.value)


PROFILE_JSON = (
    '{"default": {"config_version": 1, "base_level": 30, "boost_level": 100, "hold_time_s": 60}}'
)


def test_environment_overrides_the_file() -> None:
    env = {
        "CITYPACK_MQTT_URL": "mqtt://broker:1884",
        "CITYPACK_MQTT_QOS": "2",
        "CITYPACK_PUBLISH_HOMEASSISTANT": "yes",
        "CITYPACK_STORE_RETENTION_DAYS": "7.5",
        "CITYPACK_LAMPS_PROFILES": PROFILE_JSON,
    }
    cfg = parse_config({"mqtt": {"url": "mqtt://file:1883", "qos": 1}}, environ=env)
    assert cfg.mqtt.url == "mqtt://broker:1884"
    assert cfg.mqtt.qos == 2
    assert cfg.publish.homeassistant is True
    assert cfg.store.retention_days == 7.5
    assert cfg.lamps.profiles["default"]["base_level"] == 30


def test_bad_environment_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.keepalive_s"):
        parse_config({"mqtt": {"url": "mqtt://h"}}, environ={"CITYPACK_MQTT_KEEPALIVE_S": "x"})


def test_load_example_and_broken_files(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "gateway.example.toml"
    cfg = load_config(example, environ={})
    assert cfg.mqtt.url.startswith("mqtt")
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\nurl=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", environ={})


def test_receive_window_keys_checked_against_the_region() -> None:
    url = {"url": "mqtt://h"}
    cfg = parse_config({"mqtt": url, "commands": {"rx2_dr": 3}}, environ={})
    assert cfg.commands.rx2_dr == 3 and cfg.commands.rx1_dr_offset == 0
    with pytest.raises(ConfigError, match=r"commands\.rx2_dr"):
        parse_config({"mqtt": url, "commands": {"rx2_dr": 15}}, environ={})
    with pytest.raises(ConfigError, match=r"commands\.rx1_dr_offset"):
        parse_config({"mqtt": url, "commands": {"rx1_dr_offset": 6}}, environ={})


def test_readme_defaults_are_the_config_defaults() -> None:
    """Each number or boolean the README's key table gives as a default (gateway/README.md §3,
    ``key`` (value)) is the one a config without that key gets: an operator reads the table,
    not the dataclasses, so a default changed in one place only is caught here."""
    import dataclasses
    import re

    from gateway.config import Config

    readme = (Path(__file__).resolve().parents[2] / "gateway" / "README.md").read_text()
    defaults = parse_config({"mqtt": {"url": "mqtt://h"}}, environ={})
    sections = {f.name for f in dataclasses.fields(Config)}
    compared = 0
    for section, keys in re.findall(r"^\| `\[(\w+)\]` \| (.*) \|$", readme, re.MULTILINE):
        if section not in sections:
            continue
        values = getattr(defaults, section)
        for key, text in re.findall(r"`(\w+)` \((-?[0-9][0-9.]*|true|false)[;:,)= ]", keys):
            if not hasattr(values, key):
                continue
            expected: float | bool | None = {"true": True, "false": False}.get(text)
            if expected is None:
                expected = float(text)
            assert getattr(values, key) == expected, f"[{section}] {key}: README says {text}"
            compared += 1
    assert compared >= 40  # the table was found and read, not skipped
