"""``citypack/devices/{devEui}/set``: a command from MQTT (ARCHITECTURE.md "Normalised MQTT").

Off unless ``[publish] accept_set = true`` (then the gateway subscribes; otherwise it does not
even subscribe). Any client the broker lets publish there can dim or reboot a lamp, so the broker
must restrict the topic (gateway/README.md shows a mosquitto ACL). What arrives is checked here
before the command manager sees it (issue 14):

- at most ``[mqtt] max_event_bytes`` bytes;
- a JSON object ``{"message": str, "fields": {...}, "confirmed": bool?}`` and nothing else, at
  most :data:`MAX_DEPTH` levels deep (the deepest command, ``lamp_profile``, is 4: document,
  ``fields``, ``steps``, a step), so a deeply nested document is refused before it can exhaust
  the parser or the encoder;
- a *retained* message is never applied: it would run again on every restart and resubscribe
  (MQTT 3.1.1 §3.3.1.3). The service ignores it and clears it with a zero-length retained
  publish; a zero-length payload is that clearing and is ignored without a word.

Everything refused here becomes a ``command_rejected`` event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_DEPTH", "InvalidSet", "SetRequest", "parse_set"]

MAX_DEPTH = 6
_KEYS = frozenset({"message", "fields", "confirmed"})


class InvalidSet(ValueError):
    """A ``set`` payload that is not a command (the message says why, for the event)."""


@dataclass(frozen=True, slots=True)
class SetRequest:
    message: str
    fields: dict[str, Any]
    confirmed: bool | None


def _depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _bracket_depth(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting in ``raw`` outside strings (before ``json.loads``, which
    recurses once per level)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_set(raw: bytes, *, max_bytes: int) -> SetRequest:
    """The command in a ``set`` payload; :class:`InvalidSet` with the reason otherwise."""
    if len(raw) > max_bytes:
        raise InvalidSet(f"set payload of {len(raw)} bytes > {max_bytes}")
    if _bracket_depth(raw) > MAX_DEPTH:
        raise InvalidSet(f"set payload nested deeper than {MAX_DEPTH} levels")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidSet(f"set payload is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("message"), str):
        raise InvalidSet('expected {"message": ..., "fields": {...}}')
    extra = sorted(str(k) for k in doc if k not in _KEYS)
    if extra:
        raise InvalidSet(f"unknown key {extra[0]!r}; expected message, fields, confirmed")
    fields = doc.get("fields", {})
    confirmed = doc.get("confirmed")
    if not isinstance(fields, dict) or not isinstance(confirmed, bool | None):
        raise InvalidSet("fields must be an object, confirmed a boolean")
    if _depth(doc) > MAX_DEPTH:  # pragma: no cover - _bracket_depth saw it first
        raise InvalidSet(f"set payload nested deeper than {MAX_DEPTH} levels")
    return SetRequest(doc["message"], fields, confirmed)
