"""The OS2iot emulator's records and its request validation, with OS2iot's shapes and quirks.

What OS2iot's backend does, as docs/os2iot.md describes it (read from OS2iot-backend's source):

- ``CreateIoTDeviceDto`` is checked by class-validator with no whitelist and no transform:
  unknown fields are ignored, types are not coerced; any failing item of a ``createMany`` batch
  fails the whole request with ``400 {"statusCode":400,"message":[ValidationError…],
  "error":"Bad Request"}``; a batch holds 1..50 items.
- ``metadata`` is a *JSON-encoded string* of a flat object of non-empty strings; a JSON object
  is refused.
- A duplicate DevEUI (exact, case-sensitive, as OS2iot compares it) is an item error
  ``MESSAGE.ID-INVALID-OR-ALREADY-IN-USE``; the batch answer is 201 with per-item errors, in
  request order.
- The ChirpStack device is named ``("OS2IOT-" + name).lower()``.
- Downlink rows: pending = not flushed, not sent, not acknowledged (oldest first, 25 at most);
  history = sent (newest first, 25 at most); items carry no id.

Validation errors never echo a key (the real service does echo ``value``; the emulator leaves
``value`` out for key fields so a test snapshot can never hold one).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "BATCH_MAX",
    "DataTarget",
    "DataTargetLog",
    "Downlink",
    "IotDevice",
    "ValidationFailed",
    "iso_now",
    "validate_device",
]

BATCH_MAX = 50  # create-iot-device-batch.dto.ts ArrayMaxSize(50)
DEVICE_TYPES = ("LORAWAN", "GENERIC_HTTP", "MQTT_INTERNAL_BROKER", "MQTT_EXTERNAL_BROKER", "SIGFOX")
_HEX16 = re.compile(r"^[0-9a-fA-F]{16}$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_KEY_FIELDS = frozenset({"OTAAapplicationKey", "networkSessionKey", "applicationSessionKey"})


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ValidationFailed(Exception):
    """A class-validator failure: ``errors`` is the list OS2iot puts in ``message``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


@dataclass
class IotDevice:
    id: int
    name: str
    application_id: int
    dev_eui: str  # as sent (OS2iot keeps the case)
    device_profile_id: str
    activation_type: str
    app_key: str = field(repr=False)
    latitude: float | None = None
    longitude: float | None = None
    comment: str | None = None
    comment_on_location: str | None = None
    metadata: str | None = None
    device_model_id: int | None = None
    skip_fcnt_check: bool = False
    is_disabled: bool = False
    created_at: str = field(default_factory=iso_now)
    updated_at: str = field(default_factory=iso_now)
    latest_received: dict[str, Any] | None = None
    received_times: list[str] = field(default_factory=list)

    @property
    def chirpstack_name(self) -> str:
        return ("OS2IOT-" + self.name).lower()

    def entity(self, *, with_settings: bool = False) -> dict[str, Any]:
        """The saved entity as OS2iot returns it (GET adds ``lorawanSettings`` and the latest
        message). The real entity carries the AppKey in plaintext; the emulator leaves it out."""
        location = (
            {"type": "Point", "coordinates": [self.longitude, self.latitude]}
            if self.latitude is not None and self.longitude is not None
            else None
        )
        doc: dict[str, Any] = {
            "id": self.id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "name": self.name,
            "type": "LORAWAN",
            "location": location,
            "commentOnLocation": self.comment_on_location,
            "comment": self.comment,
            "metadata": self.metadata,
            "deviceModel": self.device_model_id,
            "application": {"id": self.application_id},
            "deviceEUI": self.dev_eui,
            "chirpstackApplicationId": None,
        }
        if with_settings:
            doc["lorawanSettings"] = {
                "activationType": self.activation_type,
                "devEUI": self.dev_eui,
                "deviceProfileID": self.device_profile_id,
                "skipFCntCheck": self.skip_fcnt_check,
                "isDisabled": self.is_disabled,
            }
            doc["latestReceivedMessage"] = (
                None
                if self.latest_received is None
                else {"rawData": self.latest_received, "sentTime": self.received_times[-1]}
            )
            doc["receivedMessagesMetadata"] = [{"sentTime": t} for t in self.received_times]
        return doc


@dataclass
class Downlink:
    device_id: int
    payload: str  # hex, as OS2iot stores it
    port: int
    confirmed: bool
    queue_item_id: str
    created_at: str = field(default_factory=iso_now)
    send_at: str | None = None
    f_cnt_down: int | None = None
    acknowledged: bool | None = None
    acknowledged_at: str | None = None
    flushed: bool = False

    def item(self) -> dict[str, Any]:
        """``DownlinkQueueDto``: no id, no queueItemId, no flushed (docs/os2iot.md §3.2)."""
        return {
            "payload": self.payload,
            "port": self.port,
            "fCntDown": self.f_cnt_down,
            "sendAt": self.send_at,
            "acknowledged": self.acknowledged,
            "acknowledgedAt": self.acknowledged_at,
            "createdAt": self.created_at,
        }


@dataclass
class DataTarget:
    id: int
    name: str
    application_id: int
    url: str
    timeout_ms: int
    authorization_header: str = field(repr=False)
    last_message_date: str | None = None
    device_ids: set[int] = field(default_factory=set)

    def entity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": "HTTP_PUSH",
            "applicationId": self.application_id,
            "url": self.url,
            "timeout": self.timeout_ms,
            "lastMessageDate": self.last_message_date,
        }


@dataclass
class DataTargetLog:
    type: str  # OK | ERROR
    status_code: int | None
    message: str
    iot_device_id: int
    created_at: str = field(default_factory=iso_now)

    def row(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "statusCode": self.status_code,
            "message": self.message,
            "iotDevice": {"id": self.iot_device_id},
            "createdAt": self.created_at,
        }


def _error(prop: str, value: Any, constraint: str, text: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"property": prop, "constraints": {constraint: text}, "children": []}
    if prop not in _KEY_FIELDS:
        doc["value"] = value
    return doc


def _metadata_ok(value: Any) -> bool:
    """IsMetadataJson: a JSON string of a flat object whose keys and values are non-empty
    strings (src/helpers/is-metadata-json.validator.ts)."""
    if not isinstance(value, str):
        return False
    try:
        doc = json.loads(value)
    except ValueError:
        return False
    return isinstance(doc, dict) and all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in doc.items()
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_device(item: Any) -> list[dict[str, Any]]:
    """Class-validator errors of one ``CreateIoTDeviceDto`` (empty when it passes)."""
    if not isinstance(item, dict):
        return [_error("data", None, "isObject", "each value in data must be an object")]
    errors: list[dict[str, Any]] = []
    name = item.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 50:
        errors.append(_error("name", name, "length", "name must be 1-50 characters"))
    if item.get("type") not in DEVICE_TYPES:
        errors.append(_error("type", item.get("type"), "isEnum", "type must be a valid enum"))
    app = item.get("applicationId")
    if not (isinstance(app, int | float) and not isinstance(app, bool) and app >= 1):
        errors.append(_error("applicationId", app, "min", "applicationId must not be less than 1"))
    for prop, bound in (("longitude", 180), ("latitude", 90)):
        value = item.get(prop)
        if value is not None and not (_number(value) and abs(value) <= bound):
            errors.append(_error(prop, value, "isNumber", f"{prop} must be within ±{bound}"))
    for prop in ("comment", "commentOnLocation"):
        value = item.get(prop)
        if value is not None and (not isinstance(value, str) or len(value) > 1024):
            errors.append(_error(prop, value, "maxLength", f"{prop} must be a string ≤ 1024"))
    if "metadata" in item and item["metadata"] is not None and not _metadata_ok(item["metadata"]):
        errors.append(
            _error("metadata", item["metadata"], "isMetadataJson", "metadata must be a json")
        )
    model = item.get("deviceModelId")
    if model is not None and (not isinstance(model, int) or isinstance(model, bool)):
        errors.append(_error("deviceModelId", model, "isInt", "deviceModelId must be an integer"))
    if item.get("type") == "LORAWAN":
        errors += _validate_lorawan(item.get("lorawanSettings"))
    return errors


def _validate_lorawan(settings: Any) -> list[dict[str, Any]]:
    if not isinstance(settings, dict):
        return [_error("lorawanSettings", None, "isObject", "lorawanSettings must be an object")]
    errors: list[dict[str, Any]] = []
    eui = settings.get("devEUI")
    if not isinstance(eui, str) or not _HEX16.match(eui):
        errors.append(_error("devEUI", eui, "isHexadecimal", "devEUI must be 16 hex characters"))
    profile = settings.get("deviceProfileID")
    try:
        uuid.UUID(str(profile))
        profile_ok = isinstance(profile, str)
    except ValueError:
        profile_ok = False
    if not profile_ok:
        errors.append(_error("deviceProfileID", profile, "isUuid", "must be a UUID"))
    if settings.get("activationType") == "OTAA":
        key = settings.get("OTAAapplicationKey")
        if not isinstance(key, str) or not _HEX32.match(key):
            errors.append(
                _error("OTAAapplicationKey", key, "isHexadecimal", "must be 32 hex characters")
            )
    for prop in ("skipFCntCheck", "isDisabled"):
        value = settings.get(prop)
        if value is not None and not isinstance(value, bool):
            errors.append(_error(prop, value, "isBoolean", f"{prop} must be a boolean value"))
    return errors
