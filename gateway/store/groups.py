"""Group commands in the store (gateway/multicast.py), the same for SQLite and PostgreSQL.

A group command is one multicast frame for a registry group; its head (message, fields, the
8-bit ``command_id``, FCnt, expiry) is one ``group_commands`` row and each member's state one
``group_members`` row. They are in the store, not in one process's memory, so that with several
instances on one PostgreSQL (issue 16) any instance serves ``GET /api/v1/groups/.../commands``
and the instance that receives a member's ``command_result`` (a shared subscription sends it
to any of them) records it. A member's row is written only by the instance that processed its
result (each uplink is applied once fleet-wide), so two instances never race on one row.

Expiry is not written: a member still ``queued`` after the command's ``expires_at`` reads as
``expired`` (:func:`member_state`), the same on every instance without a job to run it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MIGRATION",
    "GroupHead",
    "GroupMember",
    "GroupStage",
    "head_of",
    "member_state",
    "select_heads",
]

_JSON = json.JSONEncoder(separators=(",", ":"), default=str)

# the same DDL on both engines (REAL is DOUBLE PRECISION's alias in PostgreSQL too)
MIGRATION = """
CREATE TABLE group_commands (
    id TEXT PRIMARY KEY,
    grp TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX group_commands_by_group ON group_commands (grp, created_at);
CREATE INDEX group_commands_by_expiry ON group_commands (expires_at);
CREATE TABLE group_members (
    command TEXT NOT NULL,
    dev_eui TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (command, dev_eui)
);
"""


@dataclass(frozen=True, slots=True)
class GroupHead:
    """A group command's head; ``doc`` holds message, fields, command_id, f_port, size, f_cnt."""

    id: str
    group: str
    created_at: float
    expires_at: float
    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class GroupMember:
    command: str
    dev_eui: str
    state: str
    error: str
    updated_at: float


def member_state(member: GroupMember, expires_at: float, now: float) -> str:
    """What a member is now: ``queued`` past the command's expiry reads as ``expired``."""
    return "expired" if member.state == "queued" and now > expires_at else member.state


@dataclass(slots=True)
class GroupStage:
    """Staged group-command writes of one batch (a later stage of the same row wins)."""

    heads: dict[str, GroupHead] = field(default_factory=dict)
    members: dict[tuple[str, str], GroupMember] = field(default_factory=dict)

    def size(self) -> int:
        return len(self.heads) + len(self.members)

    def add(self, head: GroupHead | None, members: Iterable[GroupMember] = ()) -> None:
        if head is not None:
            self.heads[head.id] = head
        for member in members:
            self.members[(member.command, member.dev_eui)] = member

    def merged(self, later: GroupStage) -> GroupStage:
        return GroupStage({**self.heads, **later.heads}, {**self.members, **later.members})

    def head_rows(self) -> list[tuple[Any, ...]]:
        return [(h.id, h.group, h.created_at, h.expires_at, _JSON.encode(h.doc)) for h in
                self.heads.values()]  # fmt: skip

    def member_rows(self) -> list[tuple[Any, ...]]:
        return [(m.command, m.dev_eui, m.state, m.error, m.updated_at) for m in
                self.members.values()]  # fmt: skip


def upsert_heads(mark: str) -> str:
    """The head upsert with ``mark`` as the placeholder (``?`` SQLite, ``%s`` psycopg)."""
    marks = ", ".join([mark] * 5)
    return (
        f"INSERT INTO group_commands (id, grp, created_at, expires_at, doc) VALUES ({marks})"
        " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, expires_at = excluded.expires_at"
    )


def upsert_members(mark: str) -> str:
    marks = ", ".join([mark] * 5)
    return (
        f"INSERT INTO group_members (command, dev_eui, state, error, updated_at) VALUES ({marks})"
        " ON CONFLICT (command, dev_eui) DO UPDATE SET state = excluded.state,"
        " error = excluded.error, updated_at = excluded.updated_at"
    )


def select_heads(
    mark: str, *, group: str | None, command: str | None, active_at: float | None, limit: int
) -> tuple[str, list[Any]]:
    """The heads a read asks for, newest first, with its parameters."""
    where: list[str] = []
    params: list[Any] = []
    if group is not None:
        where.append(f"grp = {mark}")
        params.append(group)
    if command is not None:
        where.append(f"id = {mark}")
        params.append(command)
    if active_at is not None:
        where.append(f"expires_at >= {mark}")
        params.append(active_at)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    params.append(limit)
    return (
        "SELECT id, grp, created_at, expires_at, doc FROM group_commands"
        f"{clause} ORDER BY created_at DESC, id LIMIT {mark}",
        params,
    )


def select_members(mark: str, count: int) -> str:
    marks = ", ".join([mark] * count)
    return (
        "SELECT command, dev_eui, state, error, updated_at FROM group_members"
        f" WHERE command IN ({marks}) ORDER BY command, dev_eui"
    )


def head_of(row: Any) -> GroupHead:
    return GroupHead(str(row[0]), str(row[1]), float(row[2]), float(row[3]), json.loads(row[4]))


def member_of(row: Any) -> GroupMember:
    return GroupMember(str(row[0]), str(row[1]), str(row[2]), str(row[3]), float(row[4]))


def assemble(
    heads: list[GroupHead], members: list[GroupMember]
) -> list[tuple[GroupHead, list[GroupMember]]]:
    by_command: dict[str, list[GroupMember]] = {}
    for member in members:
        by_command.setdefault(member.command, []).append(member)
    return [(head, by_command.get(head.id, [])) for head in heads]
