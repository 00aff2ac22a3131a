"""Fleet rules: pure functions from a device, its decoded uplink and the config to derived events,
commands and twin changes. No I/O and no mutation here (CONVENTIONS.md habit 17, "effects leave
one way"): a rule reads the device and returns an :class:`Outcome`; the fleet core
(:mod:`gateway.fleet`) gathers outcomes into its effects and the service applies them to the
cached device (:meth:`TwinChange.apply`), stores and publishes them.

- :mod:`gateway.rules.bins`: full, fire, tilt, pickup; fill rate and forecast; the collection list.
- :mod:`gateway.rules.lamps`: profiles pushed and verified by config version; lighting ahead of
  traffic; day-burner and lamp-failure.
- :mod:`gateway.rules.availability`: online/offline from the expected report interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.store.base import Device

__all__ = ["Outcome", "PlannedCommand", "TwinChange"]


@dataclass(frozen=True, slots=True)
class PlannedCommand:
    """A command a rule wants sent: the service queues it like an API command. ``expires_in_s``:
    how long it is worth sending (its ``expires_at``, which ChirpStack's queue honours as
    ``expiresAt``); None is ``[commands] timeout_s``, as for an API command."""

    dev_eui: str
    message: str
    fields: dict[str, Any]
    confirmed: bool = False
    expires_in_s: float | None = None


@dataclass(slots=True, init=False)
class TwinChange:
    """What should change in one device's twin: ``attrs`` are :class:`~gateway.store.Device`
    attributes set (``availability``, ``last_seen``, ``desired_version``...), the three dicts are
    merged key by key into ``reported``, ``desired`` and ``derived`` (rule state). Keys are only
    ever set, never removed, as the rules did when they wrote the device themselves.

    ``__init__`` (here and in :class:`Outcome`) is written out: default factories are one call
    each, and every uplink makes a few of these (issue 17: the loop's per-event cost)."""

    attrs: dict[str, Any]
    reported: dict[str, Any]
    desired: dict[str, Any]
    derived: dict[str, Any]

    def __init__(self) -> None:
        self.attrs = {}
        self.reported = {}
        self.desired = {}
        self.derived = {}

    def __bool__(self) -> bool:
        return bool(self.attrs or self.reported or self.desired or self.derived)

    def update(self, other: TwinChange) -> None:
        """Add ``other``'s changes (made later: they win)."""
        if other.attrs:
            self.attrs.update(other.attrs)
        if other.reported:
            self.reported.update(other.reported)
        if other.desired:
            self.desired.update(other.desired)
        if other.derived:
            self.derived.update(other.derived)

    def apply(self, device: Device) -> None:
        """Make the change on ``device`` (the service's cached copy; the only writer)."""
        for name, value in self.attrs.items():
            setattr(device, name, value)
        if self.reported:
            device.reported.update(self.reported)
        if self.desired:
            device.desired.update(self.desired)
        if self.derived:
            device.derived.update(self.derived)


@dataclass(slots=True, init=False)
class Outcome:
    """What a rule derived for its device: events ``(type, data)``, commands (for it or for
    other devices, e.g. a presence boost of the neighbours) and the change of its own twin."""

    events: list[tuple[str, dict[str, Any]]]
    commands: list[PlannedCommand]
    twin: TwinChange

    def __init__(self) -> None:
        self.events = []
        self.commands = []
        self.twin = TwinChange()

    def event(self, type: str, **data: Any) -> None:
        self.events.append((type, data))

    def derived(self, device: Device, key: str) -> Any:
        """``device.derived[key]`` as this outcome leaves it (a rule reads what it wrote)."""
        changed = self.twin.derived
        return changed[key] if key in changed else device.derived.get(key)

    def extend(self, other: Outcome) -> None:
        self.events.extend(other.events)
        self.commands.extend(other.commands)
        self.twin.update(other.twin)
