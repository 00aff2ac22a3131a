"""Parsing of the MQTT integration's ``command/down`` messages (ChirpStack
``integration/mod.rs`` ``handle_down_command``; reference/chirpstack.md §4-§5).

The topic is ``application/{application_id}/device/{dev_eui}/command/down``; the payload a
``DownlinkCommand`` as JSON (pbjson, unknown keys ignored: that includes ``flushQueue``, which is
not a ``DownlinkCommand`` field) or protobuf. The payload's ``devEui`` must match the topic's
(chirpstack/chirpstack#72); the fPort is cast to u8 before it is validated, as ChirpStack does;
an ``object`` (codec NONE here) encodes to an empty payload.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from chirpstack_api import integration
from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError

from tools.netsim.config import CommandError

__all__ = ["DownCommand", "parse_down_command"]


@dataclass(frozen=True)
class DownCommand:
    """What a ``command/down`` message asks to enqueue."""

    dev_eui: str  # lower case
    data: bytes
    f_port: int
    confirmed: bool
    item_id: str | None
    expires_at: datetime | None


def parse_down_command(
    topic: str, payload: bytes, marshaler: str, application_id: str
) -> DownCommand:
    """Parse one message; raises :class:`CommandError` with ChirpStack's reason."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "application" or parts[2] != "device":
        raise CommandError("not a command topic")
    if parts[5] != "down" or parts[4] != "command":
        raise CommandError(f"unknown command {parts[5]!r}")
    if parts[1] != application_id:
        raise CommandError(f"application {parts[1]} is not served here")
    topic_dev_eui = parts[3]
    command = integration.DownlinkCommand()
    try:
        if marshaler == "protobuf":
            command.ParseFromString(payload)
        else:
            document = json.loads(payload)
            if not isinstance(document, dict):
                raise CommandError("the command is not a JSON object")
            json_format.ParseDict(document, command, ignore_unknown_fields=True)
    except (ValueError, json_format.ParseError, ProtobufDecodeError) as exc:
        raise CommandError(f"cannot parse the command: {exc}") from exc
    if command.dev_eui != topic_dev_eui:
        # chirpstack/chirpstack#72: "Payload dev_eui … does not match topic dev_eui …"
        raise CommandError(
            f"Payload dev_eui {command.dev_eui} does not match topic dev_eui {topic_dev_eui}"
        )
    f_port = command.f_port & 0xFF  # ChirpStack casts to u8 before validating
    if f_port == 0:
        raise CommandError("fPort must be > 0")
    data = bytes(command.data)
    if command.HasField("object"):
        data = b""  # codec NONE: the object encodes to an empty payload
    expires_at = (
        command.expires_at.ToDatetime(tzinfo=UTC) if command.HasField("expires_at") else None
    )
    return DownCommand(
        dev_eui=topic_dev_eui.lower(),
        data=data,
        f_port=f_port,
        confirmed=command.confirmed,
        item_id=command.id or None,
        expires_at=expires_at,
    )
