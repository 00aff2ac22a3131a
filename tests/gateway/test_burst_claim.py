"""The dedup key read ahead from a raw up event (gateway/service.py ``_uplink_key``, used by
``Gateway._claim_burst`` with several instances): it must be the key ``_on_up`` uses, or
nothing at all."""

from __future__ import annotations

import json

from gateway import chirpstack as cs
from gateway.service import _uplink_key
from tests.gateway import events as ev

DEV = "a84041000181c001"


def _up() -> tuple[str, dict[str, object]]:
    return ev.topic("app", DEV, "up"), ev.up("app", DEV, f_cnt=5, f_port=10, data=b"\x01")


def test_key_is_the_one_the_parsed_event_gives() -> None:
    topic, doc = _up()
    for raw in (json.dumps(doc).encode(), json.dumps(doc, separators=(",", ":")).encode()):
        event = cs.parse_event(topic, raw)
        assert isinstance(event, cs.UplinkEvent)
        assert _uplink_key(raw) == f"up:{event.deduplication_id}"


def test_anything_uncertain_gives_no_key() -> None:
    _, doc = _up()
    dedup = str(doc["deduplicationId"])
    raw = json.dumps(doc, separators=(",", ":")).encode()
    reordered = json.dumps({"devAddr": "01", **doc}).encode()  # not the first field
    twice = raw[:-1] + b',"deduplicationId":"' + dedup.encode() + b'"}'
    escaped = raw.replace(dedup[:1].encode(), b"\\u00" + dedup[:1].encode().hex().encode(), 1)
    longer = raw.replace(dedup.encode(), dedup.encode() + b"0", 1)
    empty = raw.replace(dedup.encode(), b"", 1)
    for payload in (reordered, twice, escaped, longer, empty, b"", b"\x0a\x24", "text"):
        assert _uplink_key(payload) is None, payload[:60]
