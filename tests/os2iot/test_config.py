"""``[os2iot]`` in the gateway config: what is refused, in one line naming the key."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError

MQTT = {"url": "mqtt://127.0.0.1:1883"}


def test_os2iot_is_off_by_default() -> None:
    cfg = parse_config({"mqtt": MQTT}, environ={})
    assert cfg.os2iot.url == "" and cfg.os2iot.ingest == "mqtt"


@pytest.mark.parametrize(
    ("os2iot", "key"),
    [
        ({"ingest": "kafka"}, "os2iot.ingest"),
        ({"ingest": "http_push"}, "os2iot.push_authorization_file"),
        ({"url": "os2iot.example.dk"}, "os2iot.url"),
        ({"url": "https://os2iot.example.dk/api/v1"}, "os2iot.api_key_file"),
        ({"url": "https://x/api/v1", "api_key_file": "k", "retry_min_s": 9, "retry_max_s": 3}, ""),
    ],
)
def test_bad_os2iot_settings_are_refused(os2iot: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"mqtt": MQTT, "os2iot": os2iot}, environ={})
    assert str(caught.value).startswith("os2iot.")
    assert "\n" not in str(caught.value)
    if key:
        assert str(caught.value).startswith(key)


def test_http_push_without_downlinks_needs_no_api_key() -> None:
    cfg = parse_config(
        {
            "mqtt": MQTT,
            "os2iot": {
                "url": "https://os2iot.example.dk/api/v1",
                "ingest": "http_push",
                "push_authorization_file": "/etc/citypack/os2iot-push",
                "downlinks": False,
            },
        },
        environ={"CITYPACK_OS2IOT_POLL_INTERVAL_S": "2.5"},
    )
    assert cfg.os2iot.ingest == "http_push" and cfg.os2iot.poll_interval_s == 2.5


def test_group_commands_through_os2iot_need_its_application_number() -> None:
    os2iot = {"url": "https://os2iot.example.dk/api/v1", "api_key_file": "k"}
    multicast = {"enabled": True, "key_file": "mc"}
    app = {**MQTT, "application_id": "8c1c5a3e-2f4b-4a57-9c1e-6b0d3f2a7e10"}
    with pytest.raises(ConfigError) as caught:  # a ChirpStack UUID is not an OS2iot number
        parse_config({"mqtt": app, "os2iot": os2iot, "multicast": multicast}, environ={})
    assert str(caught.value).startswith("multicast.application_id")
    # with the number, no [chirpstack] api is needed: the groups go through OS2iot
    cfg = parse_config(
        {"mqtt": app, "os2iot": os2iot, "multicast": {**multicast, "application_id": "3"}},
        environ={},
    )
    assert cfg.chirpstack.api == "" and cfg.multicast.application_id == "3"
    # without OS2iot downlinks, ChirpStack's gRPC API is still required
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"mqtt": app, "os2iot": {**os2iot, "downlinks": False}, "multicast": multicast},
            environ={},
        )
    assert str(caught.value).startswith("multicast: needs chirpstack.api")
