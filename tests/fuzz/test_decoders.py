"""Property-based fuzzing of every CPython decoder that reads outside bytes (issue 8).

For random input and for mutations of valid input, each decoder either answers or raises its
documented error type, nothing else (ARCHITECTURE.md invariant 2):

==========================================  ===============================================
decoder                                     documented errors
==========================================  ===============================================
``gateway.chirpstack.parse_event`` (JSON)   ``gateway.errors.InvalidEvent``
``gateway.chirpstack.parse_event`` (proto)  ``gateway.errors.InvalidEvent``
``protocol.codec.decode`` / ``decode_strict`` ``protocol.errors.ProtocolError``
``protocol.lorawan.PHYPayload`` + MIC,      ``protocol.errors.ProtocolError``
decrypt, MAC commands, FCnt
``tools.provision`` inventory TOML / CSV    ``tools.provision.errors.InventoryError``
``tools.provision.labels.TR005.parse``      ``tools.provision.errors.TR005Error``
``gateway.config.load_config``              ``gateway.errors.ConfigError``
==========================================  ===============================================

Nothing hangs (each test has a pytest-timeout) and memory stays bounded (tracemalloc after
thousands of hostile inputs).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import string
from pathlib import Path
from typing import Any

import cbor2
import hypothesis.strategies as st
import pytest
from chirpstack_api import integration
from hypothesis import HealthCheck, given, settings

from gateway import chirpstack as cs
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError, InvalidEvent
from protocol import codec
from protocol.errors import ProtocolError
from protocol.lorawan import (
    DataFrame,
    EncryptedJoinAccept,
    JoinRequest,
    PHYPayload,
    reconstruct_fcnt,
)
from protocol.lorawan.maccommands import parse_mac_commands
from tests.gateway.events import REFERENCE_UP, dumps, join, status, txack, up
from tests.helpers.faults import bounded_growth, mutated
from tests.helpers.procs import ROOT
from tools.provision.errors import InventoryError, TR005Error
from tools.provision.inventory import parse_csv, parse_toml
from tools.provision.labels import TR005

pytestmark = pytest.mark.timeout(120)

# `make test` runs a quick pass; `make soak` sets CITYPACK_FUZZ_EXAMPLES to a few thousand
EXAMPLES = int(os.environ.get("CITYPACK_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # no timed tests; pytest-timeout catches a hang
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # same examples in CI every run; the seeds below vary the corpus
)

APP = "0b8e3c2a-7d61-4f0e-9b8e-5c1d2a3f4e5d"
DEV = "70b3d57ed0051a2f"
EVENTS = ("up", "join", "ack", "txack", "status", "log", "location", "integration", "bogus")

# any JSON value, nested
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)

_BIN_STATUS = codec.encode(
    "bin_status", {"fill_percent": 40, "temperature_c": 12, "battery_percent": 85}
)[1]

TOML_VALUES = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.lists(st.integers() | st.text(max_size=5), max_size=3),
)

# --- ChirpStack events -------------------------------------------------------------------------

_SEED_EVENTS = [
    json.loads(REFERENCE_UP),
    up(APP, DEV, f_cnt=7, f_port=10, data=_BIN_STATUS),
    join(APP, DEV),
    status(APP, DEV),
    txack(APP, DEV, "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"),
]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += _paths(value, (*prefix, index))
    return out


@st.composite
def mutated_event(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ChirpStack event with some values replaced by arbitrary JSON or removed."""
    doc = copy.deepcopy(draw(st.sampled_from(_SEED_EVENTS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return doc


def _event_topic(event: str, dev: str = DEV) -> str:
    return f"application/{APP}/device/{dev}/event/{event}"


def _parse(topic: str, raw: bytes, marshaler: str = "json") -> None:
    try:
        cs.parse_event(topic, raw, marshaler=marshaler)  # type: ignore[arg-type]
    except InvalidEvent:
        pass


@FUZZ
@given(doc=mutated_event(), event=st.sampled_from(EVENTS))
def test_chirpstack_json_mutated_events(doc: dict[str, Any], event: str) -> None:
    _parse(_event_topic(event), dumps(doc))


@FUZZ
@given(value=JSON_VALUES, event=st.sampled_from(EVENTS))
def test_chirpstack_json_any_document(value: Any, event: str) -> None:
    _parse(_event_topic(event), json.dumps(value).encode())


@FUZZ
@given(raw=st.binary(max_size=300) | mutated([dumps(d) for d in _SEED_EVENTS], max_edits=8))
def test_chirpstack_json_any_bytes(raw: bytes) -> None:
    _parse(_event_topic("up"), raw)


@FUZZ
@given(topic=st.text(max_size=80) | st.sampled_from([_event_topic(e) for e in EVENTS]))
def test_chirpstack_any_topic(topic: str) -> None:
    _parse(topic, dumps(_SEED_EVENTS[1]))


def _protobuf_seeds() -> list[bytes]:
    msg = integration.UplinkEvent()
    msg.deduplication_id = "5b3c0f2e-9a41-4e57-8f3c-2d7b1a9e6c10"
    msg.device_info.dev_eui = DEV
    msg.device_info.application_id = APP
    msg.dev_addr = "01f3a2c4"
    msg.f_cnt = 12
    msg.f_port = 10
    msg.data = _BIN_STATUS
    rx = msg.rx_info.add()
    rx.gateway_id = "0016c001f153a14c"
    rx.rssi = -90
    rx.snr = 7.5
    joined = integration.JoinEvent()
    joined.deduplication_id = "x"
    joined.device_info.dev_eui = DEV
    joined.dev_addr = "01020304"
    return [msg.SerializeToString(), joined.SerializeToString()]


@FUZZ
@given(
    raw=st.binary(max_size=300) | mutated(_protobuf_seeds(), max_edits=8),
    event=st.sampled_from(EVENTS),
)
def test_chirpstack_protobuf_any_bytes(raw: bytes, event: str) -> None:
    _parse(_event_topic(event), raw, marshaler="protobuf")


def test_chirpstack_deep_nesting_and_huge_numbers_are_invalid_events() -> None:
    for raw in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"deviceInfo":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"fCnt": 1' + b"0" * 5000 + b"}",
        b'{"fCnt": 1e999, "fPort": -1e999}',
        b'{"fCnt": NaN}',
        b"\xff\xfe" + "{}".encode("utf-16-le"),
    ):
        _parse(_event_topic("up"), raw)


def test_chirpstack_parser_memory_stays_bounded() -> None:
    rng = random.Random(8)
    seeds = [dumps(d) for d in _SEED_EVENTS]

    def call(i: int) -> None:
        raw = bytearray(seeds[i % len(seeds)])
        for _ in range(3):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        _parse(_event_topic("up", f"{i:016x}"), bytes(raw))

    assert bounded_growth(call, 2000) < 512 * 1024


# --- application payloads (CBOR) ---------------------------------------------------------------

_VECTORS = json.loads((ROOT / "protocol" / "vectors" / "payloads.json").read_text())
_PAYLOAD_SEEDS = [bytes.fromhex(c["hex"]) for c in _VECTORS["cases"]]
_FPORTS = sorted({c["fport"] for c in _VECTORS["cases"]})

CBOR_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.integers(-2, 30) | st.text(max_size=3), children, max_size=8)
    ),
    max_leaves=20,
)


def _decode(fport: int, data: bytes, direction: str | None) -> None:
    for decoder in (codec.decode, codec.decode_strict):
        try:
            decoder(fport, data, direction)
        except ProtocolError:
            pass


@FUZZ
@given(
    fport=st.sampled_from(_FPORTS) | st.integers(-5, 300),
    data=st.binary(max_size=260) | mutated(_PAYLOAD_SEEDS, max_edits=6),
    direction=st.sampled_from(["up", "down", None]),
)
def test_codec_any_bytes(fport: int, data: bytes, direction: str | None) -> None:
    _decode(fport, data, direction)


@FUZZ
@given(fport=st.sampled_from(_FPORTS), value=CBOR_VALUES)
def test_codec_any_cbor_document(fport: int, value: Any) -> None:
    _decode(fport, cbor2.dumps(value), None)


def test_codec_length_bombs_and_deep_nesting() -> None:
    bombs = [
        b"\xa1\x00\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # {0: bytes of 2**64-1}
        b"\xa1\x00\x7a\xff\xff\xff\xff",  # {0: text of 4 GiB}
        b"\xbb\xff\xff\xff\xff\xff\xff\xff\xff",  # map of 2**64-1 pairs
        b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00",  # array of 2**32
        b"\x81" * 5000 + b"\x00",  # nesting
        b"\xa1\x00" * 3000 + b"\x00",
        b"\xd8\x1e\x82\x01\x00",  # a rational (tag 30) with a zero denominator
        b"\xc2\x5a\xff\xff\xff\xff",  # bignum of 4 GiB
        b"\xa1\x00\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
    ]
    for fport in _FPORTS:
        for data in bombs:
            _decode(fport, data, None)


def test_codec_memory_stays_bounded() -> None:
    rng = random.Random(2)

    def call(i: int) -> None:
        data = bytearray(_PAYLOAD_SEEDS[i % len(_PAYLOAD_SEEDS)])
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        _decode(_FPORTS[i % len(_FPORTS)], bytes(data), None)

    assert bounded_growth(call, 2000) < 256 * 1024


# --- LoRaWAN frames ------------------------------------------------------------------------------

_LORAWAN = json.loads((ROOT / "protocol" / "vectors" / "lorawan.json").read_text())
_FRAME_SEEDS = [bytes.fromhex(v["phy"]) for k in ("data", "join_request", "join_accept")
                for v in _LORAWAN[k]]  # fmt: skip
_KEY = bytes.fromhex(_LORAWAN["data"][0]["nwk_s_key"])
_APP_KEY = bytes.fromhex(_LORAWAN["join_accept"][0]["app_key"])


def _read_frame(phy: bytes, last: int | None) -> None:
    try:
        frame = PHYPayload.from_bytes(phy)
    except ProtocolError:
        return
    try:
        if isinstance(frame, DataFrame):
            full = reconstruct_fcnt(last, frame.fcnt16)
            frame.mic_ok(_KEY, full)
            frame.decrypt(nwk_s_key=_KEY, app_s_key=_KEY, fcnt=full)
            frame.mac_commands(nwk_s_key=_KEY, fcnt=full, strict=False)
            frame.mac_commands(nwk_s_key=_KEY, fcnt=full)
        elif isinstance(frame, JoinRequest):
            frame.verify_mic(_APP_KEY)
        elif isinstance(frame, EncryptedJoinAccept):
            frame.decrypt(_APP_KEY, verify=False)
            frame.decrypt(_APP_KEY)
        frame.to_bytes()
    except ProtocolError:
        pass


@FUZZ
@given(
    phy=st.binary(max_size=260) | mutated(_FRAME_SEEDS, max_edits=5),
    last=st.none() | st.integers(0, 2**32 - 1),
)
def test_lorawan_any_frame(phy: bytes, last: int | None) -> None:
    _read_frame(phy, last)


@FUZZ
@given(raw=st.binary(max_size=64), uplink=st.booleans(), strict=st.booleans())
def test_lorawan_any_mac_commands(raw: bytes, uplink: bool, strict: bool) -> None:
    try:
        parse_mac_commands(raw, uplink=uplink, strict=strict)
    except ProtocolError:
        pass


def test_lorawan_memory_stays_bounded() -> None:
    rng = random.Random(3)

    def call(i: int) -> None:
        phy = bytearray(_FRAME_SEEDS[i % len(_FRAME_SEEDS)])
        phy[rng.randrange(len(phy))] = rng.randrange(256)
        _read_frame(bytes(phy), rng.choice([None, 0, 65535, 2**32 - 1]))

    assert bounded_growth(call, 1500) < 256 * 1024


# --- provisioning: inventories and TR005 ---------------------------------------------------------

_TOML_SEED = """[[device]]
dev_eui = "70b3d57ed0051a2f"
join_eui = "0000000000000000"
kind = "bin"
name = "bin-1"
latitude = 56.15
longitude = 10.2
street = "Main"
serial = "SN-0001"
region = "EU868"
"""
_CSV_SEED = (
    "dev_eui,join_eui,kind,name,latitude,longitude,street,group,board,serial,region\n"
    "70b3d57ed0051a2f,0000000000000000,lamp,lamp-1,56.1,10.2,Main,g1,heltec_v3,SN-1,EU868\n"
    "70b3d57ed0051a30,,bin,bin-2,,,,,,,\n"
)


def _inventory(text: str) -> None:
    for parse in (parse_toml, parse_csv):
        try:
            parse(text, "fuzz")
        except InventoryError:
            pass


@FUZZ
@given(
    raw=st.text(max_size=400)
    | mutated([_TOML_SEED.encode(), _CSV_SEED.encode()], max_edits=6).map(
        lambda b: b.decode("utf-8", "replace")
    )
)
def test_inventory_any_text(raw: str) -> None:
    _inventory(raw)


@FUZZ
@given(
    entries=st.lists(st.dictionaries(st.sampled_from(
        ["dev_eui", "join_eui", "kind", "name", "latitude", "longitude", "street", "group",
         "board", "serial", "region", "colour"]), TOML_VALUES, max_size=11), max_size=4)
)  # fmt: skip
def test_inventory_any_toml_values(entries: list[dict[str, Any]]) -> None:
    lines = []
    for entry in entries:
        lines.append("[[device]]")
        for key, value in entry.items():
            if value is None:
                continue
            lines.append(f"{key} = {_toml_value(value)}")
    _inventory("\n".join(lines) + "\n")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value) if isinstance(value, int) or value == value else "nan"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        inner = ", ".join(
            f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None
        )
        return "{" + inner + "}"
    return '""'


_TR005_SEED = "LW:D0:0000000000000000:70B3D57ED0051A2F:FFFF0001:OTOKEN:SSN-0001:PX:C1A2B"
_TR005_ALPHABET = string.ascii_letters + string.digits + ":;-_ \t\n\x00é"


@FUZZ
@given(
    text=st.text(max_size=450)
    | st.text(alphabet=_TR005_ALPHABET, max_size=120)
    | mutated([_TR005_SEED.encode()], max_edits=6).map(lambda b: b.decode("latin-1"))
)
def test_tr005_any_string(text: str) -> None:
    try:
        parsed = TR005.parse(text)
    except TR005Error as exc:
        assert exc.field  # names the element
        return
    assert TR005.parse(parsed.to_string()) == parsed  # what parses round-trips


def test_tr005_non_text_is_refused() -> None:
    for value in (None, b"LW:D0", 12, ["LW"]):
        with pytest.raises(TR005Error):
            TR005.parse(value)  # type: ignore[arg-type]


# --- gateway config files ------------------------------------------------------------------------

_CONFIG_SEED = """[mqtt]
url = "mqtt://127.0.0.1:1883"
client_id = "gw"
qos = 1
marshaler = "json"
[store]
url = "sqlite:///x.db"
batch_max = 500
[api]
listen = "127.0.0.1:8080"
[lamps]
profiles = {default = {config_version = 1, base_level = 30, boost_level = 100}}
[availability]
factor = 2.5
"""
_SECTION_KEYS = {
    "mqtt": [
        "url",
        "client_id",
        "qos",
        "marshaler",
        "queue_size",
        "reconnect_min_s",
        "tls_ca_file",
    ],
    "store": ["url", "batch_max", "batch_interval_s", "retention_days", "synchronous"],
    "api": ["listen", "enabled", "token_file"],
    "publish": ["base_topic", "homeassistant"],
    "bins": ["full_threshold_percent", "forecast_samples"],
    "lamps": ["profiles", "presence_dim_level", "day_end_hour_utc"],
    "availability": ["factor", "check_interval_s"],
    "commands": ["region", "mac_headroom_bytes"],
    "web": ["tile_url", "stream_keepalive_s"],
    "nonsense": ["x"],
}


@FUZZ
@given(
    document=st.dictionaries(
        st.sampled_from(sorted(_SECTION_KEYS)),
        JSON_VALUES,
        max_size=4,
    ),
    environ=st.dictionaries(
        st.sampled_from(["CITYPACK_MQTT_QOS", "CITYPACK_STORE_BATCH_MAX", "CITYPACK_API_ENABLED",
                         "CITYPACK_LAMPS_PROFILES", "CITYPACK_AVAILABILITY_FACTOR"]),
        st.text(max_size=12), max_size=3),
)  # fmt: skip
def test_config_any_document(document: dict[str, Any], environ: dict[str, str]) -> None:
    # sections holding tables of their real keys with arbitrary values, or arbitrary values
    doc: dict[str, Any] = {}
    for section, value in document.items():
        if isinstance(value, dict) and value:
            keys = _SECTION_KEYS[section]
            doc[section] = {keys[i % len(keys)]: v for i, v in enumerate(value.values())}
        else:
            doc[section] = value
    doc.setdefault("mqtt", {"url": "mqtt://127.0.0.1:1883"})
    try:
        parse_config(doc, environ=environ)
    except ConfigError as exc:
        assert str(exc)


@settings(FUZZ, max_examples=max(EXAMPLES // 2, 20))
@given(raw=st.binary(max_size=400) | mutated([_CONFIG_SEED.encode()], max_edits=8))
def test_config_any_file(raw: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("cfg") / "gateway.toml"
    path.write_bytes(raw)
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        assert "\n" not in str(exc).strip() or "TOML" in str(exc)


def test_config_unreadable_paths_are_config_errors(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.toml", tmp_path):
        with pytest.raises(ConfigError):
            load_config(path, environ={})


def test_base64_and_types_in_up_event_are_invalid_events_not_crashes() -> None:
    good = up(APP, DEV, f_cnt=1, f_port=10, data=b"\xa0")
    for key, value in (
        ("data", "!!!not base64"),
        ("data", base64.b64encode(b"x" * 10).decode() + "="),
        ("fCnt", "12"),
        ("fCnt", -1),
        ("fCnt", 2**40),
        ("fPort", 256),
        ("rxInfo", {"rssi": 1}),
        ("deviceInfo", None),
        ("time", "not a time"),
    ):
        doc = {**good, key: value}
        _parse(_event_topic("up"), dumps(doc))
