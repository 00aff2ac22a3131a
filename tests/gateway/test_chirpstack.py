"""gateway.chirpstack: every event type from ChirpStack-shaped JSON and protobuf; downlinks."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from chirpstack_api import integration
from google.protobuf import json_format

from gateway.chirpstack import (
    AckEvent,
    IntegrationEvent,
    JoinEvent,
    LocationEvent,
    LogEvent,
    StatusEvent,
    TxAckEvent,
    UplinkEvent,
    build_downlink,
    command_topic,
    event_subscription,
    parse_event,
    parse_topic,
)
from gateway.errors import InvalidEvent
from tests.gateway import events as ev

APP = ev.REFERENCE_APP
DEV = ev.REFERENCE_DEV


def test_reference_up_example_verbatim() -> None:
    event = parse_event(ev.topic(APP, DEV, "up"), ev.REFERENCE_UP.encode())
    assert isinstance(event, UplinkEvent)
    assert event.deduplication_id == "5b3c0f2e-9a41-4e57-8f3c-2d7b1a9e6c10"
    assert event.dev_eui == DEV
    assert event.device_info.application_id == APP
    assert event.device_info.device_class_enabled == "CLASS_C"
    assert event.device_info.tags == {"site": "north"}
    assert (event.dev_addr, event.adr, event.dr, event.f_cnt, event.f_port) == (
        "01f3a2c4",
        True,
        5,
        1287,
        2,
    )
    assert event.data == bytes([1, 2, 0xC4, 0])
    assert event.object == {"valveOpen": True, "pressureKpa": 196.0}
    assert event.rx_info[0].gateway_id == "0016c001f153a14c"
    assert (event.best_rssi, event.best_snr) == (-87, 7.25)
    assert event.rx_info[0].latitude == pytest.approx(52.3702)
    assert (event.frequency, event.spreading_factor, event.bandwidth) == (867100000, 7, 125000)
    assert event.region_config_id == "eu868"
    assert event.time_s is not None and abs(event.time_s - 1772446542.120384) < 1e-3


def test_unknown_fields_and_absent_defaults_are_tolerated() -> None:
    doc = json.loads(ev.REFERENCE_UP)
    doc["someFutureField"] = {"x": [1, 2]}
    doc["rxInfo"][0]["newThing"] = 1
    for key in ("object", "txInfo", "adr", "dr", "confirmed", "regionConfigId", "time"):
        doc.pop(key)
    event = parse_event(ev.topic(APP, DEV, "up"), json.dumps(doc).encode())
    assert isinstance(event, UplinkEvent)
    assert (event.dr, event.adr, event.confirmed, event.object, event.frequency) == (
        0,
        False,
        False,
        None,
        None,
    )
    assert event.time_s is None


def test_snake_case_keys_are_accepted() -> None:
    doc = {"deduplication_id": "x", "f_cnt": 3, "f_port": 1, "data": "AA==", "dev_addr": "01"}
    event = parse_event(ev.topic(APP, DEV, "up"), json.dumps(doc).encode())
    assert isinstance(event, UplinkEvent)
    assert (event.f_cnt, event.f_port, event.dev_eui) == (3, 1, DEV)


def test_events_are_immutable_values() -> None:
    """Parsed events are values (gateway/chirpstack.py ``_Value``): equal when their fields
    are, and nothing downstream can change one that another part of the fleet core holds."""
    topic = ev.topic(APP, DEV, "up")
    raw = ev.dumps(ev.up(APP, DEV, f_cnt=7, f_port=10, data=b"\x01", gateways=2))
    first, second = parse_event(topic, raw), parse_event(topic, raw)
    assert isinstance(first, UplinkEvent) and first == second and first is not second
    assert first.rx_info[0] == second.rx_info[0] and first.device_info == second.device_info
    for value, name in (
        (first, "f_cnt"),
        (first.device_info, "dev_eui"),
        (first.rx_info[0], "rssi"),
    ):
        with pytest.raises(AttributeError):
            setattr(value, name, 0)
    assert first != parse_event(
        topic, ev.dumps(ev.up(APP, DEV, f_cnt=8, f_port=10, data=b"\x01", gateways=2))
    )


def test_every_event_type() -> None:
    qid = str(uuid.uuid4())
    docs = {
        "join": ev.join(APP, DEV),
        "ack": ev.ack(APP, DEV, qid, acknowledged=False),
        "txack": ev.txack(APP, DEV, qid, f_cnt_down=9),
        "status": ev.status(APP, DEV),
        "log": ev.log(APP, DEV, "EXPIRED", {"queue_item_id": qid}),
        "location": {
            "deduplicationId": "d",
            "deviceInfo": ev.device_info(APP, DEV),
            "location": {"latitude": 56.15, "longitude": 10.2},
        },
        "integration": {
            "deviceInfo": ev.device_info(APP, DEV),
            "integrationName": "loracloud",
            "eventType": "x",
            "object": {},
        },
    }
    parsed = {name: parse_event(ev.topic(APP, DEV, name), ev.dumps(d)) for name, d in docs.items()}
    join = parsed["join"]
    assert isinstance(join, JoinEvent) and join.dev_addr == "01f3a2c4"
    ack = parsed["ack"]
    assert isinstance(ack, AckEvent) and ack.queue_item_id == qid and ack.acknowledged is False
    txack = parsed["txack"]
    assert isinstance(txack, TxAckEvent)
    assert (txack.queue_item_id, txack.f_cnt_down, txack.power) == (qid, 9, 14)
    status = parsed["status"]
    assert isinstance(status, StatusEvent) and status.margin == 7
    assert status.battery_level == pytest.approx(87.4)
    log = parsed["log"]
    assert isinstance(log, LogEvent) and log.code == "EXPIRED" and log.queue_item_id == qid
    location = parsed["location"]
    assert isinstance(location, LocationEvent) and location.latitude == pytest.approx(56.15)
    assert isinstance(parsed["integration"], IntegrationEvent)


def test_protobuf_events() -> None:
    up = json_format.ParseDict(
        json.loads(ev.REFERENCE_UP), integration.UplinkEvent(), ignore_unknown_fields=True
    )
    event = parse_event(ev.topic(APP, DEV, "up"), up.SerializeToString(), marshaler="protobuf")
    assert isinstance(event, UplinkEvent)
    assert (event.f_cnt, event.f_port, event.dr, event.data) == (1287, 2, 5, b"\x01\x02\xc4\x00")
    assert event.deduplication_id == "5b3c0f2e-9a41-4e57-8f3c-2d7b1a9e6c10"
    assert event.best_rssi == -87
    # fCnt 0 and dr 0 are absent on the wire in protobuf: defaults fill in
    zero = integration.UplinkEvent(deduplication_id="z", f_port=1, data=b"\x00")
    zero.device_info.dev_eui = DEV
    event0 = parse_event(ev.topic(APP, DEV, "up"), zero.SerializeToString(), marshaler="protobuf")
    assert isinstance(event0, UplinkEvent) and (event0.f_cnt, event0.dr) == (0, 0)
    log = integration.LogEvent(level=integration.ERROR, code=integration.EXPIRED)
    log.context["queue_item_id"] = "abc"
    log.device_info.dev_eui = DEV
    parsed = parse_event(ev.topic(APP, DEV, "log"), log.SerializeToString(), marshaler="protobuf")
    assert isinstance(parsed, LogEvent) and (parsed.level, parsed.code) == ("ERROR", "EXPIRED")
    ack = integration.AckEvent(queue_item_id="q", acknowledged=True, f_cnt_down=3)
    ack.device_info.dev_eui = DEV
    parsed_ack = parse_event(
        ev.topic(APP, DEV, "ack"), ack.SerializeToString(), marshaler="protobuf"
    )
    assert isinstance(parsed_ack, AckEvent) and parsed_ack.acknowledged


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
        (b"\xff\xfe", "JSON"),
        (b'{"fCnt": "lots", "fPort": 1, "data": ""}', "fCnt"),
        (b'{"fCnt": 1, "fPort": 1, "data": "***"}', "base64"),
        (b'{"fCnt": 1, "fPort": 1, "data": 5}', "data"),
        (b'{"fCnt": 1, "fPort": 300, "data": ""}', "fPort"),
        (b'{"fCnt": -1, "fPort": 1, "data": ""}', "fCnt"),
        (b'{"fCnt": 1, "fPort": 1, "confirmed": "yes"}', "confirmed"),
        (b'{"rxInfo": {"rssi": 1}}', "rxInfo"),
        (b'{"rxInfo": [{"rssi": "loud"}]}', "rssi"),
        (b'{"time": "yesterday"}', "time"),
        (b'{"deviceInfo": {"devEui": "0000000000000001"}}', "does not match"),
        (b'{"deviceInfo": []}', "deviceInfo"),
        (b'{"deviceInfo": {"tags": {"a": 1}}}', "tags"),
    ],
)
def test_malformed_events_raise_invalid_event(payload: bytes, words: str) -> None:
    with pytest.raises(InvalidEvent, match=words):
        parse_event(ev.topic(APP, DEV, "up"), payload)


def test_garbage_protobuf_raises_invalid_event() -> None:
    with pytest.raises(InvalidEvent):
        parse_event(ev.topic(APP, DEV, "up"), b"\xff\xff\xff\xff", marshaler="protobuf")


@pytest.mark.parametrize(
    "topic",
    [
        "application/x/device/zz/event/up",
        "application/x/device/70b3d57ed0051a2f/event/bogus",
        "application/x/device/70b3d57ed0051a2f/command/down",
        "citypack/devices/x/set",
    ],
)
def test_bad_topics(topic: str) -> None:
    with pytest.raises(InvalidEvent):
        parse_topic(topic)


def test_subscription_topics() -> None:
    assert event_subscription() == "application/+/device/+/event/+"
    assert event_subscription(APP) == f"application/{APP}/device/+/event/+"
    assert event_subscription("", "g") == "$share/g/application/+/device/+/event/+"
    assert command_topic(APP, DEV) == f"application/{APP}/device/{DEV}/command/down"


def test_downlink_json_matches_the_reference_shape() -> None:
    reference = json.loads(ev.REFERENCE_DOWN)
    qid, payload = build_downlink(
        dev_eui=DEV,
        f_port=10,
        data=b"\x01\x01",
        confirmed=True,
        command_uuid=reference["id"],
        expires_at=1772447400.0,
    )
    assert qid == reference["id"]
    assert json.loads(payload) == reference


def test_downlink_keeps_the_dev_eui_string_and_makes_its_own_id() -> None:
    qid, payload = build_downlink(dev_eui=DEV, f_port=3, data=b"\xa0", confirmed=False)
    doc = json.loads(payload)
    assert doc["devEui"] == DEV and doc["id"] == qid and uuid.UUID(qid)
    assert base64.b64decode(doc["data"]) == b"\xa0"
    assert doc["confirmed"] is False and "expiresAt" not in doc
    with pytest.raises(ValueError):
        build_downlink(dev_eui=DEV, f_port=0, data=b"", confirmed=False)


def test_downlink_protobuf() -> None:
    qid, payload = build_downlink(
        dev_eui=DEV,
        f_port=10,
        data=b"\x01",
        confirmed=True,
        expires_at=1772447400.0,
        marshaler="protobuf",
    )
    message = integration.DownlinkCommand.FromString(payload)
    assert (message.id, message.dev_eui, message.f_port, message.data) == (qid, DEV, 10, b"\x01")
    assert message.confirmed and message.expires_at.seconds == 1772447400


def test_the_cached_time_parse_gives_the_full_parse_s_float_or_defers_to_it() -> None:
    import random

    from gateway import chirpstack

    rng = random.Random(15)
    cases = [
        "2026-12-06T10:15:42.120384512Z",
        "2026-12-06T10:15:42Z",
        "2026-02-30T10:15:42.123456Z",  # no such day
        "2026-12-06T10:15:60.000000Z",
        "2026-12-06 10:15:42.120384512Z",
        "2026-12-06T10:15:42.12Z",
        "2026-12-06T10:15:42.1234567+01:00",
        "1969-12-31T23:59:59.999999Z",
        "2026-12-06T10:15:4\u00b2.1234567Z",  # a superscript digit
        "2026-03-02T10:15:42.120384+00:00",  # ChirpStack's own (pbjson)
        "2026-03-02T10:15:42.120+00:00",
        "2026-03-02T10:15:42.+00:00",
        "2026-03-02T10:15:42.120384512+00:00",
    ]
    for _ in range(3000):
        frac = rng.choice(["", "." + "".join(rng.choices("0123456789", k=rng.randint(1, 9)))])
        cases.append(
            f"{rng.randint(1960, 2200):04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}T"
            f"{rng.randint(0, 25):02d}:{rng.randint(0, 60):02d}:{rng.randint(0, 61):02d}{frac}"
            + rng.choice(["Z", "+00:00", "+01:00", "z", ""])
        )
    for text in cases:
        assert chirpstack.rfc3339_timestamp(text) == chirpstack._rfc3339_full(text), text
