"""The emulator's event JSON against golden files written by hand from ChirpStack v4's event JSON
(docs, Integrations › Events; api/proto/integration/integration.proto).

Checked per event: the top-level key set and order (emit-defaults: every scalar, enum, map and
repeated field present, sub-messages only when set), JSON types, enum strings, ``+00:00``
timestamps, camelCase, and in nested gw/common messages that default values are omitted. Values
that vary (ids, times) are checked by pattern; the golden files are never generated from the
emulator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from chirpstack_api import integration
from google.protobuf import json_format

from protocol.lorawan.maccommands import DevStatusAns, DevStatusReq
from tests.netsim.conftest import CLASS_A, CLASS_C, GW1, Harness, fast_config, joined_class_a
from tests.netsim.fakenode import FakeNode, air, phy_of
from tools.netsim.events import EVENT_MESSAGES, chirpstack_json, rfc3339

GOLDEN = Path(__file__).parent / "golden"

PATTERNS = {
    "uuid": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    "time": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00$"),
    "eui": re.compile(r"^[0-9a-f]{16}$"),
    "devaddr": re.compile(r"^[0-9a-f]{8}$"),
    "base64": re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"),
    "duration": re.compile(r"^\d+(\.\d{3}|\.\d{6}|\.\d{9})?s$"),
}
# Enum fields and the value names the reference lists for them.
ENUMS = {
    "deviceClassEnabled": {"CLASS_A", "CLASS_B", "CLASS_C"},
    "crcStatus": {"CRC_OK", "BAD_CRC"},
    "codeRate": {"CR_4_5", "CR_4_6", "CR_4_7", "CR_4_8"},
    "level": {"INFO", "WARNING", "ERROR"},
    "code": {
        "UNKNOWN", "DOWNLINK_PAYLOAD_SIZE", "UPLINK_CODEC", "DOWNLINK_CODEC", "OTAA",
        "UPLINK_F_CNT_RESET", "UPLINK_F_CNT_RETRANSMISSION", "UPLINK_MIC", "DOWNLINK_GATEWAY",
        "RELAY_NEW_END_DEVICE", "F_CNT_DOWN", "EXPIRED",
    },
}  # fmt: skip
# Keys whose string values are free text or arbitrary (names, descriptions, tag values).
FREE_TEXT = {
    "tenantName", "applicationName", "deviceProfileName", "deviceName", "description",
    "regionConfigId",
}  # fmt: skip


def _kind(key: str, value: str) -> str | None:
    if key in ("time", "nsTime", "gwTime") or key.endswith("At"):
        return "time"
    if key == "delay":
        return "duration"
    if key in ("deduplicationId", "queueItemId") or (key.endswith("Id") and len(value) == 36):
        return "uuid"
    if key in ("devEui", "gatewayId"):
        return "eui"
    if key == "devAddr":
        return "devaddr"
    if key in ("data", "context"):
        return "base64"
    return None


def _is_default(value: Any) -> bool:
    """Protobuf's defaults: 0, 0.0, false, "", an empty list or map."""
    return value == 0 or value == "" or value == [] or value == {}


def conform(actual: Any, golden: Any, path: str, rules: dict[str, Any], top: bool) -> None:
    """Assert ``actual`` follows the shape of the hand-written ``golden`` example."""
    if isinstance(golden, dict) and path.rsplit(".", 1)[-1] in ("tags", "context", "object"):
        assert isinstance(actual, dict), f"{path}: a map is a JSON object"
        assert all(isinstance(v, str) for v in actual.values()) or path.endswith("object")
        if path.endswith(".context") and golden:
            assert set(actual) == set(golden), f"{path}: context keys {set(actual)}"
        return
    if isinstance(golden, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        if top:
            optional = set(rules["optional"])
            expected = [k for k in golden if k not in optional or k in actual]
            assert list(actual) == expected, f"{path}: keys/order {list(actual)} != {expected}"
        else:
            may_omit = {m.rsplit(".", 1)[-1] for m in rules["may_omit"] if m.startswith(path)}
            extra = set(actual) - set(golden)
            assert not extra, f"{path}: keys not in the reference example: {extra}"
            missing = set(golden) - set(actual) - may_omit
            assert not missing, f"{path}: missing {missing}"
            order = [k for k in golden if k in actual]
            assert list(actual) == order, f"{path}: field order {list(actual)} != {order}"
            for key, value in actual.items():
                if golden[key] != {}:  # an empty set sub-message ({"immediately": {}}) is a value
                    assert not _is_default(value), f"{path}.{key}: default {value!r} not omitted"
        for key, value in actual.items():
            nested_top = key == "deviceInfo"  # integration.DeviceInfo also emits defaults
            conform(value, golden[key], f"{path}.{key}".lstrip("."), rules, nested_top)
        return
    if isinstance(golden, list):
        assert isinstance(actual, list), f"{path}: expected a list"
        assert actual, f"{path}: expected at least one item"
        for item in actual:
            conform(item, golden[0], f"{path}[]", rules, False)
        return
    key = path.rsplit(".", 1)[-1].rstrip("[]")
    assert type(actual) is type(golden), f"{path}: {actual!r} is not a {type(golden).__name__}"
    if isinstance(golden, str):
        if key in ENUMS:
            assert actual in ENUMS[key], f"{path}: {actual!r} is not one of {ENUMS[key]}"
        elif key in FREE_TEXT:
            pass
        else:
            kind = _kind(key, golden)
            assert kind is not None, f"{path}: the golden value {golden!r} has no pattern"
            assert PATTERNS[kind].match(golden), f"golden {path} is not a {kind}"
            assert PATTERNS[kind].match(actual), f"{path}: {actual!r} is not a {kind}"


def load(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def check(name: str, message: Any) -> dict[str, Any]:
    golden = load(name)
    rendered = chirpstack_json(message)
    text = json.dumps(rendered)  # what goes on MQTT
    document = json.loads(text)
    conform(document, golden["example"], "", golden, True)
    # What a consumer does with it (reference §2): ParseDict accepts it, and nothing is lost.
    parsed = json_format.ParseDict(
        document, EVENT_MESSAGES[golden["event"]](), ignore_unknown_fields=True
    )
    assert parsed == message
    return document


def test_golden_examples_follow_their_own_rules() -> None:
    """The hand-written files agree with the reference's rules, and protobuf reads them."""
    for path in sorted(GOLDEN.glob("*.json")):
        golden = json.loads(path.read_text())
        assert golden["source"].startswith("reference/chirpstack.md")
        conform(golden["example"], golden["example"], "", {**golden, "optional": []}, True)
        message = EVENT_MESSAGES[golden["event"]]()
        json_format.ParseDict(golden["example"], message, ignore_unknown_fields=False)


def test_checker_rejects_what_the_reference_forbids() -> None:
    golden = load("up")
    good = dict(golden["example"])
    bad_time = {**good, "time": "2026-03-02T10:15:42.120384Z"}
    with pytest.raises(AssertionError, match="not a time"):
        conform(bad_time, golden["example"], "", golden, True)
    missing_default = {k: v for k, v in good.items() if k != "confirmed"}
    with pytest.raises(AssertionError, match="keys/order"):
        conform(missing_default, golden["example"], "", golden, True)
    nested_default = {**good, "rxInfo": [{**good["rxInfo"][0], "channel": 0}]}
    with pytest.raises(AssertionError, match="not omitted"):
        conform(nested_default, golden["example"], "", golden, True)
    int_enum = {**good, "deviceInfo": {**good["deviceInfo"], "deviceClassEnabled": 2}}
    with pytest.raises(AssertionError, match="is not a str"):
        conform(int_enum, golden["example"], "", golden, True)


def test_timestamps_are_rfc3339_with_offset() -> None:
    from datetime import UTC, datetime

    assert rfc3339(datetime(2026, 3, 2, 10, 15, 42, 120384, UTC)) == (
        "2026-03-02T10:15:42.120384+00:00"
    )
    assert rfc3339(datetime(2026, 3, 2, 10, 15, 42, 120000, UTC)) == "2026-03-02T10:15:42.120+00:00"
    assert rfc3339(datetime(2026, 3, 2, 10, 15, 42, tzinfo=UTC)) == "2026-03-02T10:15:42+00:00"


async def test_join_up_txack_ack_conform(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    queue_id = harness.ns.enqueue(CLASS_A.dev_eui, b"\x01\x02", f_port=10, confirmed=True)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"\x01\x02\xc4\x00", fport=2)))
    join = check("join", await harness.event("join"))
    up = check("up", await harness.event("up"))
    assert join["deduplicationId"] == up["deduplicationId"]
    assert join["devAddr"] == up["devAddr"] == f"{node.dev_addr:08x}"
    assert up["fCnt"] == 0 and up["confirmed"] is False and up["adr"] is False  # emitted defaults
    assert up["deviceInfo"]["devEui"] == CLASS_A.dev_eui
    assert up["deviceInfo"]["deviceClassEnabled"] == "CLASS_A"
    assert up["txInfo"]["modulation"]["lora"]["spreadingFactor"] == 7
    assert "object" not in up  # no codec: no object (reference §2)
    txpk, _ = await harness.downlink(GW1)
    txack = check("txack", await harness.event("txack"))
    assert txack["queueItemId"] == queue_id and txack["fCntDown"] == 0
    assert txack["txInfo"]["timing"] == {"delay": {"delay": "1s"}}
    assert node.downlink(phy_of(txpk), 0).payload == b"\x01\x02"
    harness.ns.receive_uplink(GW1, air(node.uplink(b"", fport=None, ack=True)))
    mac_only = check("up", await harness.event("up"))
    assert mac_only["fPort"] == 0 and mac_only["data"] == ""  # MAC-only uplink, defaults present
    ack = check("ack", await harness.event("ack"))
    assert ack["queueItemId"] == queue_id and ack["acknowledged"] is True


async def test_status_event_conforms() -> None:
    async with joined_class_a(fast_config(dev_status_every=1)) as (harness, node):
        ns = harness.ns
        ns.receive_uplink(GW1, air(node.uplink(b"\x01", fport=2)))
        txpk, _ = await harness.downlink(GW1)
        down = node.downlink(phy_of(txpk), 0)
        assert DevStatusReq() in down.mac
        answer = DevStatusAns(battery=192, margin=7).to_bytes()
        ns.receive_uplink(GW1, air(node.uplink(b"\x02", fport=2, fopts=answer)))
        status = check("status", await harness.event("status"))
    assert status["margin"] == 7
    assert status["batteryLevel"] == pytest.approx(192 / 254 * 100, rel=1e-6)
    assert status["externalPowerSource"] is False and status["batteryLevelUnavailable"] is False


async def test_log_event_conforms(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_A)
    await harness.join(node)
    item = harness.ns.enqueue(CLASS_A.dev_eui, bytes(60), f_port=10)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"\x01", fport=2), datr="SF12BW125"))
    log = check("log", await harness.event("log"))
    assert log["code"] == "DOWNLINK_PAYLOAD_SIZE" and log["level"] == "ERROR"
    assert log["context"] == {"max_payload_size": "51", "item_size": "60", "queue_item_id": item}


async def test_class_c_txack_conforms(harness: Harness) -> None:
    node = FakeNode.for_device(CLASS_C)
    await harness.join(node)
    harness.ns.receive_uplink(GW1, air(node.uplink(b"\x01", fport=2)))
    await harness.event("up")
    await harness.settle()
    harness.ns.enqueue(CLASS_C.dev_eui, b"\x10", f_port=20)
    txack = check("txack_class_c", await harness.event("txack"))
    assert txack["txInfo"]["timing"] == {"immediately": {}}
    assert txack["deviceInfo"]["deviceClassEnabled"] == "CLASS_C"


def test_every_event_type_has_a_golden_file() -> None:
    names = {json.loads(p.read_text())["event"] for p in GOLDEN.glob("*.json")}
    assert names == {"up", "join", "ack", "txack", "status", "log"}
    assert integration.LogCode.Name(integration.DOWNLINK_PAYLOAD_SIZE) == "DOWNLINK_PAYLOAD_SIZE"
