"""ChirpStack v4 integration events: the protobuf messages and their JSON form.

Source: ChirpStack api/proto/integration/integration.proto with its pbjson serializer rules and
protobuf marshaling; ChirpStack
``api/rust/build.rs`` (pbjson with ``emit_fields`` for ``integration.*``) and pbjson-types
``timestamp.rs``/``duration.rs``. The messages themselves come from the ``chirpstack-api``
package, so the protobuf form is byte-for-byte what ChirpStack's ``json=false`` marshaler sends.

The JSON rules, as ChirpStack's serde/pbjson serializer applies them (not Python's
``json_format``, whose rules differ):

- keys are lowerCamelCase JSON names in ``.proto`` declaration order;
- messages of the ``integration`` package (the events and ``DeviceInfo``) **emit defaults**:
  scalars, strings, bytes, enums, maps and repeated fields are always present; sub-message
  fields only when set;
- nested ``gw.*`` / ``common.*`` messages **omit defaults** (``channel: 0`` is absent);
- enums are their value names, bytes standard base64, uint64/int64 strings (pbjson), float32 the
  shortest decimal that reads back as the same float32 (serde/ryu), timestamps RFC 3339 with a
  ``+00:00`` offset and 0, 3, 6 or 9 fractional digits (chrono ``to_rfc3339``), durations
  ``"1s"`` / ``"1.500s"``, ``google.protobuf.Struct`` a plain JSON object.
"""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime
from typing import Any, Literal

from chirpstack_api import integration
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = [
    "EVENT_MESSAGES",
    "Marshaler",
    "chirpstack_json",
    "encode_event",
    "rfc3339",
    "timestamp",
]

Marshaler = Literal["json", "protobuf"]

# The event name in the topic (reference §1) → its protobuf message.
EVENT_MESSAGES: dict[str, Any] = {
    "up": integration.UplinkEvent,
    "join": integration.JoinEvent,
    "ack": integration.AckEvent,
    "txack": integration.TxAckEvent,
    "status": integration.StatusEvent,
    "log": integration.LogEvent,
    "location": integration.LocationEvent,
}

_EMIT_DEFAULTS_PACKAGE = "integration"  # build.rs: emit_fields only for ".integration"

_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def rfc3339(value: datetime) -> str:
    """chrono ``to_rfc3339()`` of a UTC instant: ``+00:00`` and 0/3/6 fractional digits.

    Python carries microseconds, so the 9-digit form of nanosecond instants never occurs here.
    """
    value = value.astimezone(UTC)
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    micros = value.microsecond
    if micros == 0:
        frac = ""
    elif micros % 1000 == 0:
        frac = f".{micros // 1000:03d}"
    else:
        frac = f".{micros:06d}"
    return f"{base}{frac}+00:00"


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def _float32(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (what serde_json prints)."""
    packed = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


def _duration(seconds: int, nanos: int) -> str:
    if nanos == 0:
        return f"{seconds}s"
    frac = f"{abs(nanos):09d}"
    if nanos % 1_000_000 == 0:
        frac = frac[:3]
    elif nanos % 1000 == 0:
        frac = frac[:6]
    sign = "-" if seconds < 0 or nanos < 0 else ""
    return f"{sign}{abs(seconds)}.{frac}s"


def _scalar(field: Any, value: Any) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else value
    if kind == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if kind == FieldDescriptor.TYPE_FLOAT:
        return _float32(value)
    if kind in _INT64_TYPES:
        return str(value)
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return chirpstack_json(value)
    return value


def _is_default(field: Any, value: Any) -> bool:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return bool(value == 0)
    return not value


def chirpstack_json(message: Message) -> Any:
    """The JSON value (dict, or str for well-known types) ChirpStack would print for ``message``."""
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        seconds = message.seconds  # type: ignore[attr-defined]
        nanos = message.nanos  # type: ignore[attr-defined]
        return rfc3339(datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000))
    if name == "google.protobuf.Duration":
        return _duration(message.seconds, message.nanos)  # type: ignore[attr-defined]
    if name == "google.protobuf.Struct":
        return json_format.MessageToDict(message)
    emit_defaults = message.DESCRIPTOR.file.package == _EMIT_DEFAULTS_PACKAGE
    out: dict[str, Any] = {}
    fields: Any = message.DESCRIPTOR.fields
    for field in fields:
        value = getattr(message, field.name)
        is_map = (
            field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        )
        if is_map:
            if value or emit_defaults:
                value_field = field.message_type.fields_by_name["value"]
                out[field.json_name] = {k: _scalar(value_field, value[k]) for k in sorted(value)}
        elif field.is_repeated:
            if value or emit_defaults:
                out[field.json_name] = [_scalar(field, item) for item in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE or field.containing_oneof is not None:
            # Sub-messages (and oneof members) appear only when set, in every package.
            if message.HasField(field.name):
                out[field.json_name] = _scalar(field, value)
        elif field.has_presence:
            if message.HasField(field.name):
                out[field.json_name] = _scalar(field, value)
        elif emit_defaults or not _is_default(field, value):
            out[field.json_name] = _scalar(field, value)
    return out


def encode_event(message: Message, marshaler: Marshaler) -> bytes:
    """The MQTT payload of an event: compact JSON or the binary protobuf (reference §4)."""
    if marshaler == "protobuf":
        return message.SerializeToString()
    return json.dumps(chirpstack_json(message), separators=(",", ":")).encode()
