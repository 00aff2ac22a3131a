"""Fleet rules: pure functions from a device, its decoded uplink and the config to derived events
and commands. No I/O here, so each rule has fast tests; the service stores and publishes results.

- :mod:`gateway.rules.bins`: full, fire, tilt, pickup; fill rate and forecast; the collection list.
- :mod:`gateway.rules.lamps`: profiles pushed and verified by config version; lighting ahead of
  traffic; day-burner and lamp-failure.
- :mod:`gateway.rules.availability`: online/offline from the expected report interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Outcome", "PlannedCommand"]


@dataclass(frozen=True, slots=True)
class PlannedCommand:
    """A command a rule wants sent: the service queues it like an API command."""

    dev_eui: str
    message: str
    fields: dict[str, Any]
    confirmed: bool = False


@dataclass(slots=True)
class Outcome:
    """What a rule derived: events ``(type, data)`` and commands."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    commands: list[PlannedCommand] = field(default_factory=list)

    def event(self, type: str, **data: Any) -> None:
        self.events.append((type, data))

    def extend(self, other: Outcome) -> None:
        self.events.extend(other.events)
        self.commands.extend(other.commands)
