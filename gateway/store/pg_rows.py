"""Rows of the PostgreSQL store (gateway/store/postgres.py): the column lists, the conversions
between table rows and the store's records, and one batch's staged writes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg

from gateway.store.base import (
    CommandRecord,
    DeadLetter,
    Device,
    EventRecord,
    UplinkRecord,
    device_from_row,
)
from gateway.store.groups import GroupStage

__all__ = [
    "COMMAND_COLUMNS",
    "DEVICE_SELECT",
    "JSON",
    "UPLINK_COLUMNS",
    "Staged",
    "column_names",
    "command_of",
    "command_row",
    "device_of",
    "event_of",
]

JSON = json.JSONEncoder(separators=(",", ":"), default=str)
COMMAND_COLUMNS = (
    "id",
    "dev_eui",
    "message",
    "fields",
    "command_id",
    "f_port",
    "data",
    "confirmed",
    "state",
    "created_at",
    "published_at",
    "sent_at",
    "acknowledged_at",
    "applied_at",
    "finished_at",
    "expires_at",
    "f_cnt_down",
    "error",
    "replaced_by",
    "source",
)
UPLINK_COLUMNS = (
    "dev_eui, received_at, deduplication_id, time, dev_addr, f_cnt, f_port, dr, frequency,"
    " rssi, snr, gateways, message, fields, data"
)
DEVICE_SELECT = "SELECT dev_eui, kind, doc, twin, last_f_cnt, last_dev_addr, version FROM devices"


@dataclass(slots=True)
class Staged:
    """One batch's staged writes."""

    devices: dict[str, tuple[Device, str | None]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    uplinks: list[UplinkRecord] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    commands: dict[str, CommandRecord] = field(default_factory=dict)
    groups: GroupStage = field(default_factory=GroupStage)

    def size(self) -> int:
        return (
            len(self.devices)
            + len(self.seen)
            + len(self.uplinks)
            + len(self.dead)
            + len(self.events)
            + len(self.commands)
            + self.groups.size()
        )

    def touches(self, dev_eui: str) -> bool:
        return dev_eui in self.devices or any(c.dev_eui == dev_eui for c in self.commands.values())

    def merged(self, later: Staged) -> Staged:
        """This batch (not written) followed by what was staged meanwhile (which wins)."""
        return Staged(
            devices={**self.devices, **later.devices},
            seen=self.seen | later.seen,
            uplinks=self.uplinks + later.uplinks,
            dead=self.dead + later.dead,
            events=self.events + later.events,
            commands={**self.commands, **later.commands},
            groups=self.groups.merged(later.groups),
        )


def device_of(row: Any) -> Device:
    registry = json.loads(row[2])
    twin = json.loads(row[3]) if row[3] else None
    return device_from_row(row[0], row[1], registry, twin, (row[4], row[5]))


def column_names(cur: psycopg.AsyncCursor[Any]) -> list[str]:
    return [d.name for d in cur.description or ()]


def command_of(row: dict[str, Any]) -> CommandRecord:
    row = dict(row)
    row["data"] = bytes(row["data"])
    return CommandRecord.from_row(row)


def command_row(c: CommandRecord) -> tuple[Any, ...]:
    values = {s: getattr(c, s) for s in COMMAND_COLUMNS}
    values["fields"] = JSON.encode(c.fields)
    return tuple(values[s] for s in COMMAND_COLUMNS)


def event_of(r: dict[str, Any]) -> EventRecord:
    return EventRecord(
        type=r["type"], dev_eui=r["dev_eui"], at=r["at"], data=json.loads(r["data"]), id=r["id"]
    )
