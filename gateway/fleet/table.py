"""The rule table: which pure rule (gateway/rules/) a decoded uplink's message runs, and what
it gets besides the device and the fields."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config import Config
from gateway.rules import Outcome
from gateway.rules import bins as bin_rules
from gateway.rules import lamps as lamp_rules
from gateway.store.base import Device

__all__ = ["ORDERED_RULES", "RULES", "STATE_MESSAGES", "VERSION_MESSAGES", "Rule", "RuleInput"]

# uplink messages whose fields are merged into the twin's reported state
STATE_MESSAGES = frozenset(
    {"bin_status", "lamp_status", "lamp_counters", "lamp_presence", "device_info"}
)
# messages whose config_version is the node's reported config version
VERSION_MESSAGES = frozenset({"bin_status", "lamp_status", "device_info", "command_result"})
# rules that weigh a reading against the one before (the fill history, fault transitions): a
# late frame, older than one already applied, does not run them (gateway/fleet/core.py)
ORDERED_RULES = frozenset({"bin_status", "lamp_status"})


@dataclass(slots=True)  # not frozen: one per uplink, and a frozen init costs twice as much
class RuleInput:
    """What a rule of :data:`RULES` gets besides the device and the fields."""

    config: Config
    at: float  # the event's ChirpStack time (the receive time when it has none, issue 15.2)
    received: float  # the gateway's receive time: the device's last_seen
    lookup: Callable[[str], Device | None]  # other devices, read only (a lamp's neighbours)


Rule = Callable[[Device, dict[str, Any], RuleInput], Outcome]


def _bin_status(device: Device, fields: dict[str, Any], rin: RuleInput) -> Outcome:
    return bin_rules.apply_bin_status(device, fields, rin.config.bins, rin.at)


def _bin_alarm(device: Device, fields: dict[str, Any], rin: RuleInput) -> Outcome:
    return bin_rules.apply_bin_alarm(device, fields, rin.config.bins, rin.at)


def _lamp_status(device: Device, fields: dict[str, Any], rin: RuleInput) -> Outcome:
    return lamp_rules.apply_lamp_status(device, fields, rin.config.lamps, rin.at)


def _lamp_presence(device: Device, fields: dict[str, Any], rin: RuleInput) -> Outcome:
    return lamp_rules.apply_lamp_presence(
        device, fields, rin.config.lamps, rin.lookup, seen_at=rin.received
    )


RULES: Mapping[str, Rule] = {
    "bin_status": _bin_status,
    "bin_alarm": _bin_alarm,
    "lamp_status": _lamp_status,
    "lamp_presence": _lamp_presence,
}
