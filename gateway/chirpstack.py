"""ChirpStack v4 MQTT integration: event parsing and downlink command building.

Source: ChirpStack v4 docs, Integrations › MQTT (topics) and › Events (event JSON: pbjson
serializer, ``emit_fields`` on ``integration.*`` messages, defaults omitted in nested
``gw.*``/``common.*``); chirpstack src/integration/mqtt.rs (``DownlinkCommand``: ``devEui`` must
equal the topic's string, our own ``id`` UUID; the ``json = false`` protobuf marshaler,
``chirpstack_api.integration``).

Parsing is tolerant where ChirpStack varies (unknown keys ignored, absent defaults filled in, both
``lowerCamelCase`` and ``snake_case`` accepted) and strict where data is wrong: a key present with
the wrong type, bad base64 or a malformed document raises :class:`~gateway.errors.InvalidEvent`
naming the field; nothing else escapes.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from gateway.errors import InvalidEvent

__all__ = [
    "EVENT_TYPES",
    "AckEvent",
    "DeviceInfo",
    "Event",
    "IntegrationEvent",
    "JoinEvent",
    "LocationEvent",
    "LogEvent",
    "RxInfo",
    "StatusEvent",
    "TxAckEvent",
    "UplinkEvent",
    "build_downlink",
    "command_topic",
    "event_subscription",
    "parse_event",
    "parse_topic",
]

Marshaler = Literal["json", "protobuf"]
EVENT_TYPES = ("up", "join", "ack", "txack", "status", "log", "location", "integration")
_EUI = re.compile(r"^[0-9a-fA-F]{16}$")
_FRACTION = re.compile(r"(\.\d{6})\d+")


class _Value(msgspec.Struct, frozen=True):
    """What the parser hands on: immutable values, built in C. The event types were frozen
    dataclasses, whose ``__init__`` sets each field through ``object.__setattr__``: a full uplink
    with its device info and one gateway parsed in 12.6-13.0 µs then, 8.7-9.6 µs now (the old
    and new module alternated; issue 17)."""


class DeviceInfo(_Value, frozen=True):
    dev_eui: str
    tenant_id: str = ""
    tenant_name: str = ""
    application_id: str = ""
    application_name: str = ""
    device_profile_id: str = ""
    device_profile_name: str = ""
    device_name: str = ""
    device_class_enabled: str = "CLASS_A"
    tags: Mapping[str, str] = msgspec.field(default_factory=dict)


class RxInfo(_Value, frozen=True):
    gateway_id: str
    rssi: int = 0
    snr: float = 0.0
    channel: int = 0
    latitude: float | None = None
    longitude: float | None = None


class _Base(_Value, frozen=True):
    event: str
    topic_application_id: str
    device_info: DeviceInfo
    time: str

    @property
    def dev_eui(self) -> str:
        return self.device_info.dev_eui

    @property
    def time_s(self) -> float | None:
        """``time`` as a Unix timestamp (None when absent)."""
        return rfc3339_timestamp(self.time)


class UplinkEvent(_Base, frozen=True):
    deduplication_id: str
    dev_addr: str
    adr: bool
    dr: int
    f_cnt: int
    f_port: int
    confirmed: bool
    data: bytes
    object: Mapping[str, Any] | None
    rx_info: tuple[RxInfo, ...]
    frequency: int | None
    spreading_factor: int | None
    bandwidth: int | None
    region_config_id: str

    @property
    def best_rssi(self) -> int | None:
        return _shared_signal(_RSSI, max((r.rssi for r in self.rx_info), default=None))

    @property
    def best_snr(self) -> float | None:
        return _shared_signal(_SNR, max((r.snr for r in self.rx_info), default=None))


# RSSI comes in whole dBm and SNR in steps of 0.25 dB (SX130x): a few hundred values across a
# city, yet each uplink's are new objects, and every device's twin keeps its last ones (52
# bytes a device, issue 17). One object per value; bounded, past it a value is used as it
# came. Zero as it came: -0.0 == 0.0 as a key, and they print differently.
_RSSI: dict[int, int] = {}
_SNR: dict[float, float] = {}
_SIGNAL_MAX = 2048
_Signal = TypeVar("_Signal", int, float)


def _shared_signal(table: dict[_Signal, _Signal], value: _Signal | None) -> _Signal | None:
    if not value:
        return value
    shared = table.get(value)
    if shared is None:
        if len(table) >= _SIGNAL_MAX:
            return value
        shared = table[value] = value
    return shared


class JoinEvent(_Base, frozen=True):
    deduplication_id: str
    dev_addr: str
    region_config_id: str


class AckEvent(_Base, frozen=True):
    deduplication_id: str
    queue_item_id: str
    acknowledged: bool
    f_cnt_down: int


class TxAckEvent(_Base, frozen=True):
    downlink_id: int
    queue_item_id: str
    f_cnt_down: int
    gateway_id: str
    frequency: int | None
    power: int | None


class StatusEvent(_Base, frozen=True):
    deduplication_id: str
    margin: int
    external_power_source: bool
    battery_level_unavailable: bool
    battery_level: float


class LogEvent(_Base, frozen=True):
    level: str
    code: str
    description: str
    context: Mapping[str, str]

    @property
    def queue_item_id(self) -> str:
        return self.context.get("queue_item_id", "")


class LocationEvent(_Base, frozen=True):
    deduplication_id: str
    latitude: float | None
    longitude: float | None
    altitude: float | None


class IntegrationEvent(_Base, frozen=True):
    """Removed in ChirpStack v4.15.0 (reference §1); parsed only so old servers do no harm."""

    integration_name: str
    event_type: str
    object: Mapping[str, Any] | None


Event = (
    UplinkEvent
    | JoinEvent
    | AckEvent
    | TxAckEvent
    | StatusEvent
    | LogEvent
    | LocationEvent
    | IntegrationEvent
)


# --- topics (reference §1) ----------------------------------------------------------------------


def event_subscription(application_id: str = "", shared_group: str = "") -> str:
    """``application/+/device/+/event/+`` (or one application), optionally ``$share/<group>/``."""
    topic = f"application/{application_id or '+'}/device/+/event/+"
    return f"$share/{shared_group}/{topic}" if shared_group else topic


def parse_topic(topic: str) -> tuple[str, str, str]:
    """``(application_id, dev_eui, event)`` from an event topic; :class:`InvalidEvent` otherwise."""
    parts = topic.split("/")
    if (
        len(parts) != 6
        or parts[0] != "application"
        or parts[2] != "device"
        or parts[4] != "event"
        or not parts[1]
    ):
        raise InvalidEvent(f"not a ChirpStack event topic: {topic!r}", topic=topic)
    if not _EUI.match(parts[3]):
        raise InvalidEvent(f"bad devEui in topic: {parts[3]!r}", topic=topic)
    if parts[5] not in EVENT_TYPES:
        raise InvalidEvent(f"unknown event type {parts[5]!r}", topic=topic)
    return parts[1], parts[3], parts[5]


def command_topic(application_id: str, dev_eui: str) -> str:
    """``application/<APP_UUID>/device/<DEV_EUI>/command/down`` (reference §3)."""
    return f"application/{application_id}/device/{dev_eui}/command/down"


# --- typed field access ---------------------------------------------------------------------------


@functools.cache
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel_keys(value: Any) -> Any:
    """ChirpStack accepts and may write snake_case (reference §3); normalise to lowerCamelCase
    once, so the getters below need one lookup per key. Map values (``tags``, ``context``,
    ``object``) keep their keys."""
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = _camel(key) if isinstance(key, str) and "_" in key else key
        out[name] = item if name in _OPAQUE_MAPS else _camel_keys(item)
    return out


_OPAQUE_MAPS = frozenset({"tags", "context", "object", "metadata", "variables"})


def _get(doc: Mapping[str, Any], key: str) -> Any:
    return doc.get(key)


def _str(doc: Mapping[str, Any], key: str, default: str = "") -> str:
    value = doc.get(key)
    if value is None:
        return default
    if type(value) is not str:
        raise InvalidEvent(f"{key}: expected a string, got {type(value).__name__}", key=key)
    return value


def _int(doc: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = doc.get(key)
    if value is None:
        return default
    if type(value) is int:
        return value
    # pbjson writes u32/i32 as numbers; u64 as strings; JS-born values can be 25.0
    if isinstance(value, bool):
        raise InvalidEvent(f"{key}: expected an integer, got a boolean", key=key)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value):
        return int(value)
    raise InvalidEvent(f"{key}: expected an integer, got {value!r:.40}", key=key)


def _uint(doc: Mapping[str, Any], key: str, default: int = 0, maximum: int = 2**32 - 1) -> int:
    value = _int(doc, key, default)
    if not 0 <= value <= maximum:
        raise InvalidEvent(f"{key}: {value} out of range 0..{maximum}", key=key)
    return value


def _float(doc: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = _get(doc, key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(f"{key}: expected a number, got {value!r:.40}", key=key)
    return float(value)


def _opt_float(doc: Mapping[str, Any], key: str) -> float | None:
    return None if _get(doc, key) is None else _float(doc, key)


def _bool(doc: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = _get(doc, key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidEvent(f"{key}: expected a boolean, got {value!r:.40}", key=key)
    return value


def _obj(doc: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = _get(doc, key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidEvent(f"{key}: expected an object, got {type(value).__name__}", key=key)
    return value


def _str_map(doc: Mapping[str, Any], key: str) -> dict[str, str]:
    value = _obj(doc, key) or {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, str):
            raise InvalidEvent(f"{key}.{k}: expected a string", key=key)
        out[k] = v
    return out


_RFC3339 = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d{1,9})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)


def _time(doc: Mapping[str, Any]) -> str:
    """The event time, checked against RFC 3339 (reference §2: up to 9 fractional digits);
    converted to a timestamp only when asked (:attr:`_Base.time_s`)."""
    text = _str(doc, "time")
    if text and not _RFC3339.match(text):
        raise InvalidEvent(f"time: not RFC 3339: {text!r:.60}", key="time")
    return text


def rfc3339_timestamp(text: str) -> float | None:
    if not text:
        return None
    fast = _rfc3339_fast(text)
    return fast if fast is not None else _rfc3339_full(text)


def _rfc3339_full(text: str) -> float | None:
    try:
        # datetime keeps 6 fractional digits
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", text.upper().replace("Z", "+00:00")))
    except ValueError:
        return None  # e.g. 30 February: the shape was right, the date is not
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


_MINUTES: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM" -> epoch seconds, from the full parser


def _rfc3339_fast(text: str) -> float | None:
    """ChirpStack's shape (pbjson: ``YYYY-MM-DDTHH:MM:SS``, 0-9 fractional digits, ``+00:00``;
    ``Z`` also taken; reference chirpstack.md section 2) from a cache of the minute, else None
    for the full parse. The same float as that parse (whole seconds, then microseconds, as
    ``timedelta`` sums them); each minute is parsed, and so checked, by it the first time. An
    uplink's time used to cost a regex and a datetime per event (issue 17)."""
    if text.endswith("+00:00"):
        end = len(text) - 6
    elif text.endswith("Z"):
        end = len(text) - 1
    else:
        return None
    if end < 19 or text[16] != ":":
        return None
    second = text[17:19]
    if not (second.isascii() and second.isdigit()) or second >= "60":
        return None
    if end > 19:
        digits = text[20:end]
        if text[19] != "." or not (digits.isascii() and digits.isdigit()):
            return None
        micro = int((digits + "00000")[:6])
    else:
        micro = 0
    key = text[:16]
    minute = _MINUTES.get(key)
    if minute is None:
        parsed = _rfc3339_full(key + ":00Z") if text[10] == "T" else None
        if parsed is None:
            return None
        if len(_MINUTES) >= 4096:
            _MINUTES.clear()
        minute = _MINUTES[key] = int(parsed)
    return ((minute + int(second)) * 1_000_000 + micro) / 1_000_000


_INFO_KEYS = (
    "tenantId",
    "tenantName",
    "applicationId",
    "applicationName",
    "deviceProfileId",
    "deviceProfileName",
    "deviceName",
)


def _device_info(doc: Mapping[str, Any], topic_dev_eui: str) -> DeviceInfo:
    info = _obj(doc, "deviceInfo") or {}
    dev_eui = _str(info, "devEui") or topic_dev_eui
    if dev_eui != topic_dev_eui:  # the usual case (equal strings) needs no further checks
        if not _EUI.match(dev_eui):
            raise InvalidEvent(f"deviceInfo.devEui: not 16 hex digits: {dev_eui!r:.40}")
        if topic_dev_eui and dev_eui.lower() != topic_dev_eui.lower():
            raise InvalidEvent(
                f"deviceInfo.devEui {dev_eui} does not match the topic's {topic_dev_eui}",
                dev_eui=topic_dev_eui,
            )
    get = info.get
    texts: list[str] = []
    for key in _INFO_KEYS:  # inline checks: this runs for every event
        value = get(key)
        if value is None:
            value = ""
        elif type(value) is not str:
            raise InvalidEvent(f"{key}: expected a string, got {type(value).__name__}", key=key)
        texts.append(value)
    return DeviceInfo(
        dev_eui=dev_eui.lower(),
        tenant_id=texts[0],
        tenant_name=texts[1],
        application_id=texts[2],
        application_name=texts[3],
        device_profile_id=texts[4],
        device_profile_name=texts[5],
        device_name=texts[6],
        device_class_enabled=_str(info, "deviceClassEnabled", "CLASS_A"),
        tags=_str_map(info, "tags") if get("tags") else {},
    )


# --- events --------------------------------------------------------------------------------------


def _from_protobuf(event: str, payload: bytes) -> dict[str, Any]:
    from chirpstack_api import integration
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError

    classes = {
        "up": integration.UplinkEvent,
        "join": integration.JoinEvent,
        "ack": integration.AckEvent,
        "txack": integration.TxAckEvent,
        "status": integration.StatusEvent,
        "log": integration.LogEvent,
        "location": integration.LocationEvent,
    }
    if event == "integration":
        # IntegrationEvent left ChirpStack (and chirpstack_api) in v4.15.0, so there is no class
        # to decode it with: accepted by its topic alone and ignored, as in JSON mode (counted
        # in citypack_events; gateway/README.md §5)
        return {}
    cls = classes.get(event)
    if cls is None:
        raise InvalidEvent(f"no protobuf message for event {event!r}")
    try:
        message = cls.FromString(payload)
        doc = json_format.MessageToDict(message)
    except (DecodeError, ValueError, TypeError, RuntimeError) as exc:
        raise InvalidEvent(f"{event}: not a protobuf {cls.__name__}: {exc}") from exc
    if not isinstance(doc, dict):  # pragma: no cover - MessageToDict returns a dict
        raise InvalidEvent("protobuf did not give an object")
    return doc


def _from_json(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(doc).__name__}")
    if "_" in "".join(doc):  # any snake_case key (one C-level scan)
        camel: dict[str, Any] = _camel_keys(doc)
        return camel
    return doc


# --- the up event: one typed decoder (msgspec), JSON bytes or a protobuf message's dict ---------
#
# Every field is optional and may be null (ChirpStack omits defaults; null means absent, as
# for the other events above). ``strict=False`` is the tolerance ChirpStack's serializers need:
# pbjson writes u64 as strings, JavaScript-born numbers can be 25.0. Ranges are the LoRaWAN
# ones (fPort u8, DR 0..15, fCnt u32). A wrong type, range or base64 raises msgspec's
# ValidationError naming the field's path, turned into InvalidEvent by _decode_up.

_U8 = Annotated[int, msgspec.Meta(ge=0, le=255)]
_DR = Annotated[int, msgspec.Meta(ge=0, le=15)]
_U32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]


class _Location(msgspec.Struct):
    latitude: float | None = None
    longitude: float | None = None


class _Rx(msgspec.Struct, rename="camel"):
    gateway_id: str | None = None
    rssi: int | None = None
    snr: float | None = None
    channel: int | None = None
    location: _Location | None = None


class _Lora(msgspec.Struct, rename="camel"):
    spreading_factor: int | None = None
    bandwidth: int | None = None


class _Modulation(msgspec.Struct):
    lora: _Lora | None = None


class _Tx(msgspec.Struct):
    frequency: _U32 | None = None
    modulation: _Modulation | None = None


class _Info(msgspec.Struct, rename="camel"):
    dev_eui: str | None = None
    tenant_id: str | None = None
    tenant_name: str | None = None
    application_id: str | None = None
    application_name: str | None = None
    device_profile_id: str | None = None
    device_profile_name: str | None = None
    device_name: str | None = None
    device_class_enabled: str | None = None
    tags: dict[str, str] | None = None


class _Up(msgspec.Struct, rename="camel"):
    deduplication_id: str | None = None
    time: str | None = None
    device_info: _Info | None = None
    dev_addr: str | None = None
    adr: bool | None = None
    dr: _DR | None = None
    f_cnt: _U32 | None = None
    f_port: _U8 | None = None
    confirmed: bool | None = None
    data: bytes | None = None  # base64 in JSON (msgspec checks it)
    object: dict[str, Any] | None = None
    rx_info: list[_Rx] | None = None
    tx_info: _Tx | None = None
    region_config_id: str | None = None


_UP_DECODER = msgspec.json.Decoder(_Up, strict=False)
# A snake_case spelling of one of the names above anywhere in the document: the document is
# normalised to lowerCamelCase first (reference §3). A false hit (an ``object`` key that
# happens to be such a name) only costs the detour; _camel_keys keeps map keys as they are.
_SNAKE_NAMES = sorted(
    {
        name
        for struct in (_Up, _Info, _Rx, _Lora, _Tx, _Modulation, _Location)
        for name in struct.__struct_fields__
        if "_" in name
    }
)
_SNAKE_KEY = re.compile(rb'"(?:' + "|".join(_SNAKE_NAMES).encode() + rb')"\s*:')
_PATH = re.compile(r"^(.*?)(?: - at `\$\.?(.*)`)?$", re.DOTALL)


def _invalid_up(exc: msgspec.MsgspecError, dev_eui: str) -> InvalidEvent:
    """msgspec's "Expected `int`, got `str` - at `$.fCnt`" as "fCnt: expected `int`, got `str`"."""
    match = _PATH.match(str(exc))
    text, key = (match.group(1), match.group(2) or "") if match else (str(exc), "")
    if not isinstance(exc, msgspec.ValidationError):  # (a subclass of DecodeError)
        error = InvalidEvent(f"not valid JSON: {text}")
    elif not key:
        # the document itself, e.g. "Expected `object`, got `array`"
        error = InvalidEvent(f"expected a JSON object: {text}")
    elif text.startswith("Invalid base64"):
        error = InvalidEvent(f"{key}: not valid base64", key=key)
    else:
        error = InvalidEvent(f"{key}: {text[:1].lower()}{text[1:]}", key=key)
    error.dev_eui = dev_eui  # type: ignore[attr-defined]
    return error


def _decode_up(
    payload: bytes, marshaler: Marshaler, application_id: str, topic_dev_eui: str
) -> UplinkEvent:
    """The ``up`` event; raises only :class:`InvalidEvent`."""
    try:
        if marshaler == "protobuf":
            up = msgspec.convert(_from_protobuf("up", payload), _Up, strict=False)
        elif _SNAKE_KEY.search(payload):
            up = msgspec.convert(_from_json(payload), _Up, strict=False)
        else:
            up = _UP_DECODER.decode(payload)
    except msgspec.MsgspecError as exc:
        raise _invalid_up(exc, topic_dev_eui.lower()) from exc
    except RecursionError as exc:  # msgspec skipping an unknown value nested past its limit
        raise InvalidEvent("not valid JSON: nested too deeply") from exc
    info = up.device_info or _Info()
    dev_eui = info.dev_eui or topic_dev_eui
    if dev_eui != topic_dev_eui:  # the usual case (equal strings) needs no further checks
        if not _EUI.match(dev_eui):
            raise InvalidEvent(f"deviceInfo.devEui: not 16 hex digits: {dev_eui!r:.40}")
        if topic_dev_eui and dev_eui.lower() != topic_dev_eui.lower():
            raise InvalidEvent(
                f"deviceInfo.devEui {dev_eui} does not match the topic's {topic_dev_eui}",
                dev_eui=topic_dev_eui,
            )
    time_text = up.time or ""
    if time_text and not _RFC3339.match(time_text):
        raise InvalidEvent(f"time: not RFC 3339: {time_text!r:.60}", key="time")
    rx_info = tuple(
        RxInfo(
            rx.gateway_id or "",
            rx.rssi or 0,
            rx.snr or 0.0,
            rx.channel or 0,
            rx.location.latitude if rx.location is not None else None,
            rx.location.longitude if rx.location is not None else None,
        )
        for rx in up.rx_info or ()
    )
    tx = up.tx_info
    lora = tx.modulation.lora if tx is not None and tx.modulation is not None else None
    return UplinkEvent(
        "up",
        application_id,
        DeviceInfo(
            dev_eui.lower(),
            info.tenant_id or "",
            info.tenant_name or "",
            info.application_id or "",
            info.application_name or "",
            info.device_profile_id or "",
            info.device_profile_name or "",
            info.device_name or "",
            info.device_class_enabled or "CLASS_A",
            info.tags or {},
        ),
        time_text,
        up.deduplication_id or "",
        up.dev_addr or "",
        bool(up.adr),
        up.dr or 0,
        up.f_cnt or 0,
        up.f_port or 0,
        bool(up.confirmed),
        up.data or b"",
        up.object,
        rx_info,
        tx.frequency if tx is not None else None,
        (lora.spreading_factor or 0) if lora is not None else None,
        (lora.bandwidth or 0) if lora is not None else None,
        up.region_config_id or "",
    )


def parse_event(topic: str, payload: bytes, *, marshaler: Marshaler = "json") -> Event:
    """Parse one ChirpStack event; raises only :class:`InvalidEvent`."""
    application_id, topic_dev_eui, event = parse_topic(topic)
    if event == "up":  # the one event of the hot path: a typed decoder, straight from bytes
        return _decode_up(payload, marshaler, application_id, topic_dev_eui)
    doc = _from_protobuf(event, payload) if marshaler == "protobuf" else _from_json(payload)
    info = _device_info(doc, topic_dev_eui)
    base: dict[str, Any] = {
        "event": event,
        "topic_application_id": application_id,
        "device_info": info,
        "time": _time(doc),
    }
    try:
        if event == "join":
            return JoinEvent(
                **base,
                deduplication_id=_str(doc, "deduplicationId"),
                dev_addr=_str(doc, "devAddr"),
                region_config_id=_str(doc, "regionConfigId"),
            )
        if event == "ack":
            return AckEvent(
                **base,
                deduplication_id=_str(doc, "deduplicationId"),
                queue_item_id=_str(doc, "queueItemId"),
                acknowledged=_bool(doc, "acknowledged"),
                f_cnt_down=_uint(doc, "fCntDown"),
            )
        if event == "txack":
            tx = _obj(doc, "txInfo") or {}
            return TxAckEvent(
                **base,
                downlink_id=_uint(doc, "downlinkId"),
                queue_item_id=_str(doc, "queueItemId"),
                f_cnt_down=_uint(doc, "fCntDown"),
                gateway_id=_str(doc, "gatewayId"),
                frequency=_uint(tx, "frequency") if _get(tx, "frequency") is not None else None,
                power=_int(tx, "power") if _get(tx, "power") is not None else None,
            )
        if event == "status":
            return StatusEvent(
                **base,
                deduplication_id=_str(doc, "deduplicationId"),
                margin=_int(doc, "margin"),
                external_power_source=_bool(doc, "externalPowerSource"),
                battery_level_unavailable=_bool(doc, "batteryLevelUnavailable"),
                battery_level=_float(doc, "batteryLevel"),
            )
        if event == "log":
            level = _get(doc, "level")
            code = _get(doc, "code")
            return LogEvent(
                **base,
                # protobuf enums may arrive as numbers from other serializers
                level=_enum(level, ("INFO", "WARNING", "ERROR"), "level", "INFO"),
                code=_enum(code, _LOG_CODES, "code", "UNKNOWN"),
                description=_str(doc, "description"),
                context=_str_map(doc, "context"),
            )
        if event == "location":
            loc = _obj(doc, "location") or {}
            return LocationEvent(
                **base,
                deduplication_id=_str(doc, "deduplicationId"),
                latitude=_opt_float(loc, "latitude"),
                longitude=_opt_float(loc, "longitude"),
                altitude=_opt_float(loc, "altitude"),
            )
        return IntegrationEvent(
            **base,
            integration_name=_str(doc, "integrationName"),
            event_type=_str(doc, "eventType"),
            object=_obj(doc, "object"),
        )
    except InvalidEvent as exc:
        exc.context.setdefault("dev_eui", info.dev_eui)
        exc.dev_eui = info.dev_eui  # type: ignore[attr-defined]
        raise


_LOG_CODES = (
    "UNKNOWN",
    "DOWNLINK_PAYLOAD_SIZE",
    "UPLINK_CODEC",
    "DOWNLINK_CODEC",
    "OTAA",
    "UPLINK_F_CNT_RESET",
    "UPLINK_MIC",
    "UPLINK_F_CNT_RETRANSMISSION",
    "DOWNLINK_GATEWAY",
    "RELAY_NEW_END_DEVICE",
    "F_CNT_DOWN",
    "EXPIRED",
)


def _enum(value: Any, names: tuple[str, ...], key: str, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, str):
        return value  # an unknown future code is kept as text
    if isinstance(value, int) and not isinstance(value, bool):
        return names[value] if 0 <= value < len(names) else f"{default}_{value}"
    raise InvalidEvent(f"{key}: expected an enum name, got {value!r:.40}", key=key)


# --- downlinks (reference §3) -------------------------------------------------------------------


def build_downlink(
    *,
    dev_eui: str,
    f_port: int,
    data: bytes,
    confirmed: bool,
    command_uuid: str | None = None,
    expires_at: float | None = None,
    marshaler: Marshaler = "json",
) -> tuple[str, bytes]:
    """A ``DownlinkCommand`` payload and its ``id``.

    ``dev_eui`` is written exactly as it appears in the command topic (ChirpStack compares the two
    strings case-sensitively and silently drops a mismatch, chirpstack/chirpstack#72).
    """
    if not 1 <= f_port <= 255:  # ChirpStack casts to u8 before checking: refuse here (ref §3)
        raise ValueError(f"fPort {f_port} out of range 1..255")
    command_uuid = command_uuid or str(uuid.uuid4())
    uuid.UUID(command_uuid)  # an invalid UUID makes ChirpStack drop the command
    expires = (
        datetime.fromtimestamp(expires_at, UTC).isoformat().replace("+00:00", "Z")
        if expires_at is not None
        else None
    )
    if marshaler == "protobuf":
        from chirpstack_api import integration

        message = integration.DownlinkCommand(
            id=command_uuid, dev_eui=dev_eui, confirmed=confirmed, f_port=f_port, data=data
        )
        if expires_at is not None:
            message.expires_at.FromSeconds(int(expires_at))
        return command_uuid, bytes(message.SerializeToString())
    doc: dict[str, Any] = {
        "id": command_uuid,
        "devEui": dev_eui,
        "confirmed": confirmed,
        "fPort": f_port,
        "data": base64.b64encode(data).decode("ascii"),
    }
    if expires is not None:
        doc["expiresAt"] = expires
    return command_uuid, json.dumps(doc, separators=(",", ":")).encode()
