"""Lamp groups on the air: class C multicast groups from the registry, and group commands.

A multicast group is made of the registered devices that share a registry ``group`` (or
``street``, ``[multicast] group_by``). It lives in ChirpStack (``gateway/chirpstack_grpc.py``,
or in an OS2iot city as an OS2iot multicast, ``gateway/os2iot_groups.py``)
under the name ``citypack:<group_by>:<name>``, class C, DELAY scheduling, on the configured
frequency and data rate; its membership is brought in line with the registry before every
command (members added, leavers removed).

Keys. Each group's McKey and McAddr are derived from one secret (``[multicast] key_file``, 32
hex digits) and the group's name with AES-CMAC (RFC 4493), so they survive a restart without
being stored and no two groups share a key; the session keys ChirpStack needs come from the
McKey as TS004-1.0.0 (remote multicast setup) §3.1.2 defines them:
McAppSKey = aes128_encrypt(McKey, 0x01 | McAddr | pad16), McNwkSKey = aes128_encrypt(McKey, 0x02 |
McAddr | pad16), McAddr little-endian. A node learns the McKey through McGroupSetupReq (port 200,
the firmware's remote multicast setup package) and hears the group only inside a class C session
(McClassCSessionReq, TS004 §4.4); this module sends neither yet (that needs the TS004 codec of
protocol/fuota). The McKey is never logged or returned by the API.

Group commands. One command (e.g. ``lamp_override``) is encoded once with one ``command_id``
and enqueued once in the group's multicast queue: one frame on the air for the whole group
(per gateway covering it). Every member is then tracked on its own: ``queued`` until its
``command_result`` uplink echoes the ``command_id`` (``applied``, or ``failed`` with the node's
outcome), ``expired`` after ``command_timeout_s``, ``failed`` at once if ChirpStack would not
take it into the group. The ``command_id`` is one no member uses for an active unicast command,
and every member's next unicast id moves past it, so a result is never ambiguous. ChirpStack
publishes no txack/ack for multicast frames, so there is no ``sent`` per member.

Group commands are kept in the store (gateway/store/groups.py), committed before the frame is
enqueued, so the instance that receives a member's result (any of several on one PostgreSQL, or
this one after a restart) reads the command from there (:meth:`MulticastManager.ensure_known`);
the API reads them from the store too. This process also keeps the last ``_KEEP`` in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.chirpstack_grpc import ChirpStackGroups, GroupSpec
from gateway.config import ChirpstackConfig, MulticastConfig, read_secret
from gateway.errors import (
    ChirpStackApiError,
    CommandRejected,
    ConfigError,
    NotCommitted,
    PayloadTooLarge,
    StoreError,
    UnknownGroup,
)
from gateway.os2iot_groups import Os2iotGroups
from gateway.store.base import Device, Store
from gateway.store.groups import GroupHead, GroupMember, member_state
from protocol import catalogue, codec
from protocol.errors import ProtocolError
from protocol.fuota import keys as fuota_keys
from protocol.lorawan.crypto import aes_cmac
from protocol.lorawan.region import REGIONS

__all__ = [
    "GroupCommand",
    "GroupKeys",
    "MemberState",
    "MulticastManager",
    "derive_group_keys",
    "mc_session_keys",
    "read_group_secret",
]

_KEEP = 1000  # group commands kept for GET and result matching
_WAITING = "queued"


@dataclass(frozen=True)
class GroupKeys:
    """A group's McKey, McAddr and session keys (never in a repr)."""

    mc_addr: int
    mc_key: bytes = field(repr=False)
    mc_app_s_key: bytes = field(repr=False)
    mc_nwk_s_key: bytes = field(repr=False)


def mc_session_keys(mc_key: bytes, mc_addr: int) -> tuple[bytes, bytes]:
    """(McAppSKey, McNwkSKey): TS004-1.0.0 §3.1.2 through protocol/fuota/keys.py."""
    return fuota_keys.mc_app_s_key(mc_key, mc_addr), fuota_keys.mc_nwk_s_key(mc_key, mc_addr)


def derive_group_keys(secret: bytes, name: str) -> GroupKeys:
    """The keys of the group called ``name`` (AES-CMAC of the name under ``secret``)."""
    label = name.encode("utf-8")
    mc_key = aes_cmac(secret, b"citypack/multicast/mckey\x00" + label)
    mc_addr = int.from_bytes(aes_cmac(secret, b"citypack/multicast/mcaddr\x00" + label)[:4], "big")
    app_s_key, nwk_s_key = mc_session_keys(mc_key, mc_addr)
    return GroupKeys(mc_addr, mc_key, app_s_key, nwk_s_key)


def read_group_secret(path: str) -> bytes:
    """The ``[multicast] key_file`` secret (32 hex digits); :class:`ConfigError` otherwise."""
    try:
        secret = bytes.fromhex(read_secret(path))
    except ValueError:
        secret = b""
    if len(secret) != 16:
        raise ConfigError(
            "multicast.key_file: expected 32 hex digits (an AES-128 key)", key="multicast.key_file"
        )
    return secret


@dataclass
class MemberState:
    state: str = _WAITING  # queued | applied | failed | expired
    error: str = ""
    updated_at: float = 0.0


@dataclass
class GroupCommand:
    """One command sent to a group in one multicast frame, with every member's state."""

    id: str
    group: str
    message: str
    fields: dict[str, Any]
    command_id: int
    f_port: int
    size: int
    f_cnt: int | None
    created_at: float
    expires_at: float
    members: dict[str, MemberState]

    @property
    def state(self) -> str:
        """``queued`` while a member may still answer; else ``applied`` (all applied),
        ``failed`` (one failed) or ``expired``."""
        states = {m.state for m in self.members.values()}
        if _WAITING in states:
            return _WAITING
        if states <= {"applied"}:
            return "applied"
        return "failed" if "failed" in states else "expired"

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {"queued": 0, "applied": 0, "failed": 0, "expired": 0}
        for member in self.members.values():
            counts[member.state] += 1
        return {
            "id": self.id,
            "group": self.group,
            "message": self.message,
            "fields": self.fields,
            "command_id": self.command_id,
            "f_port": self.f_port,
            "size": self.size,
            "f_cnt": self.f_cnt,
            "state": self.state,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "counts": counts,
            "members": [
                {"dev_eui": dev_eui, "state": m.state, "error": m.error, "updated_at": m.updated_at}
                for dev_eui, m in sorted(self.members.items())
            ],
        }


class MulticastManager:
    """Groups in ChirpStack and group commands; owned by the gateway service."""

    def __init__(
        self,
        *,
        config: MulticastConfig,
        chirpstack: ChirpstackConfig,
        application_id: str,
        devices: Mapping[str, Device],
        active_command_ids: Callable[[str], set[int]],
        stage_device: Callable[[Device], None],
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
        client: ChirpStackGroups | Os2iotGroups | None = None,
        store: Store | None = None,
        commit: Callable[[Callable[[], None]], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.application_id = config.application_id or application_id
        self.devices = devices
        self._active_ids = active_command_ids
        self._stage_device = stage_device
        self.clock = clock
        self.log = logger or logging.getLogger("citypack.gateway")
        self._secret = read_group_secret(config.key_file)
        self.chirpstack = chirpstack
        self._token = read_secret(chirpstack.api_token_file) if client is None else ""
        self._client_instance = client
        self._group_ids: dict[str, str] = {}  # registry group -> ChirpStack multicast group id
        self.commands: dict[str, GroupCommand] = {}
        self._by_member: dict[tuple[str, int], GroupCommand] = {}
        self._lock = asyncio.Lock()
        # the store keeps every group command (gateway/store/groups.py); ``commit(stage)``
        # stages one and makes it durable before it is enqueued
        self.store = store
        self._commit = commit

    @property
    def client(self) -> ChirpStackGroups | Os2iotGroups:
        """Made on first use, inside the running event loop (grpc.aio binds to it)."""
        if self._client_instance is None:
            self._client_instance = ChirpStackGroups(
                target=self.chirpstack.api,
                token=self._token,
                tls=self.chirpstack.api_tls,
                timeout_s=self.chirpstack.api_timeout_s,
            )
        return self._client_instance

    async def close(self) -> None:
        if self._client_instance is not None:
            await self._client_instance.close()
            self._client_instance = None

    # -- groups ------------------------------------------------------------------------------
    def chirpstack_name(self, group: str) -> str:
        return f"citypack:{self.config.group_by}:{group}"

    def members(self, group: str, kind: str | None = None) -> list[Device]:
        """Registered devices of the group (of ``kind``, when given)."""
        return sorted(
            (
                d
                for d in self.devices.values()
                if d.registered
                and getattr(d, self.config.group_by) == group
                and (kind is None or d.kind == kind)
            ),
            key=lambda d: d.dev_eui,
        )

    def groups(self) -> dict[str, list[str]]:
        """Every registry group with its members' DevEUIs."""
        out: dict[str, list[str]] = {}
        for device in self.devices.values():
            name = getattr(device, self.config.group_by)
            if device.registered and name:
                out.setdefault(name, []).append(device.dev_eui)
        return {name: sorted(euis) for name, euis in sorted(out.items())}

    def chirpstack_id(self, group: str) -> str | None:
        """The ChirpStack id of the group's multicast group, once a command made or found it."""
        return self._group_ids.get(group)

    def keys(self, group: str) -> GroupKeys:
        return derive_group_keys(self._secret, self.chirpstack_name(group))

    async def ensure_group(self, group: str, members: list[str]) -> tuple[str, dict[str, str]]:
        """The ChirpStack group for ``group`` with exactly ``members``; creates it if needed.
        Returns its id and the members ChirpStack refused, with the reason."""
        name = self.chirpstack_name(group)
        cached = self._group_ids.get(group)
        if cached is not None:
            try:
                current = await self.client.members(self.application_id, cached)
            except ChirpStackApiError as exc:
                if exc.context.get("code") != "NOT_FOUND":
                    raise
                del self._group_ids[group]  # deleted in ChirpStack meanwhile: find or create
            else:
                return cached, await self._sync(cached, current, members)
        keys = self.keys(group)
        spec = GroupSpec(
            name=name,
            application_id=self.application_id,
            mc_addr=keys.mc_addr,
            mc_nwk_s_key=keys.mc_nwk_s_key,
            mc_app_s_key=keys.mc_app_s_key,
            dr=self.config.dr,
            frequency_hz=self.config.frequency_hz,
        )
        group_id = await self.client.find(self.application_id, name)
        if group_id is None:
            group_id = await self.client.create(spec)
            self.log.info("multicast group created", extra={"group": group, "id": group_id})
        else:  # made before this start: bring a changed data rate, frequency or key in line
            found = await self.client.get(group_id)
            if not self.client.matches(spec, found):
                await self.client.update(group_id, spec, int(found.f_cnt))
                self.log.info("multicast group updated", extra={"group": group, "id": group_id})
        self._group_ids[group] = group_id
        current = await self.client.members(self.application_id, group_id)
        return group_id, await self._sync(group_id, current, members)

    async def _sync(self, group_id: str, current: set[str], members: list[str]) -> dict[str, str]:
        """Add the missing members and remove the leavers; the refused ones, with why."""
        return await self.client.sync_members(self.application_id, group_id, current, members)

    # -- group commands ----------------------------------------------------------------------
    def _allocate_id(self, members: list[Device]) -> int:
        used: set[int] = set()
        for device in members:
            used |= self._active_ids(device.dev_eui)
            used |= {cid for (dev, cid) in self._by_member if dev == device.dev_eui}
        start = max(d.next_command_id for d in members)
        for step in range(256):
            candidate = (start + step) % 256
            if candidate not in used:
                return candidate
        raise CommandRejected("256 commands are active for the members of this group")

    async def submit(self, group: str, message: str, fields: dict[str, Any]) -> GroupCommand:
        """Encode once, enqueue once in the group's multicast queue, track every member."""
        try:
            spec = catalogue.message(message)
        except ProtocolError as exc:
            raise CommandRejected(f"unknown message {message!r}") from exc
        if spec.direction != "down":
            raise CommandRejected(f"{message} is an uplink message, not a command")
        if not isinstance(fields, dict):
            raise CommandRejected("fields: expected an object")
        kind = None if spec.device == "common" else spec.device
        async with self._lock:
            self.expire()
            members = self.members(group, kind)
            if not members:
                raise UnknownGroup(
                    f"no registered {kind or 'device'} has {self.config.group_by} {group!r}",
                    group=group,
                )
            command_id = self._allocate_id(members)
            full = {**fields, "command_id": command_id}
            try:
                f_port, data = codec.encode(message, full)
            except ProtocolError as exc:
                raise CommandRejected(f"{message}: {exc}") from exc
            limit = REGIONS["EU868"].max_frm_payload(self.config.dr)
            if len(data) > limit:
                raise PayloadTooLarge(
                    f"{message} is {len(data)} bytes; the group's DR{self.config.dr} allows "
                    f"{limit}",
                    size=len(data),
                    limit=limit,
                )
            now = self.clock()
            euis = [d.dev_eui for d in members]
            group_id, refused = await self.ensure_group(group, euis)
            expires_at = now + self.config.command_timeout_s
            command = GroupCommand(
                id=str(uuid.uuid4()),
                group=group,
                message=message,
                fields=full,
                command_id=command_id,
                f_port=f_port,
                size=len(data),
                f_cnt=None,  # set once the network server answers the enqueue
                created_at=now,
                expires_at=expires_at,
                members={
                    eui: (
                        MemberState("failed", refused[eui], now)
                        if eui in refused
                        else MemberState(_WAITING, "", now)
                    )
                    for eui in euis
                },
            )
            # tracked before the enqueue's answer: the frame may go out and a member's result
            # come back before that answer does (OS2iot's enqueue is two HTTP calls); in the
            # store first, so that another instance receiving a result finds it
            self._remember(command)
            try:
                await self._save(command, members=True)
            except StoreError as exc:  # never enqueued, and no longer tracked (503)
                self._forget(command)
                self.commands.pop(command.id, None)
                if isinstance(exc, NotCommitted):  # its rows stay staged: written as failed
                    for member in command.members.values():
                        if member.state == _WAITING:
                            member.state = "failed"
                            member.error = "not enqueued: the store could not commit it"
                    self._stage(command, members=True)
                raise
            try:
                f_cnt = await self.client.enqueue(
                    group_id, f_port, data, datetime.fromtimestamp(expires_at, UTC)
                )
            except Exception as exc:  # refused or unreachable: the members fail, saying why
                self._forget(command)
                for member in command.members.values():
                    if member.state == _WAITING:
                        member.state, member.error = "failed", f"not enqueued: {exc}"[:200]
                await self._save(command, members=True)
                raise
            command.f_cnt = f_cnt
            await self._save(command, members=False)
            for device in members:  # the unicast allocator starts past this id
                device.next_command_id = (command_id + 1) % 256
                self._stage_device(device)
        self.log.info(
            "group command enqueued",
            extra={"group": group, "message": message, "members": len(euis), "f_cnt": f_cnt},
        )
        return command

    async def _save(self, command: GroupCommand, *, members: bool) -> None:
        """Stage ``command`` and, with ``commit``, make it durable now: ``commit`` stages it
        again when the store refused the batch holding it (gateway/service.py
        ``flush_staged``: several instances)."""
        if self._commit is None:
            self._stage(command, members=members)
        else:
            await self._commit(lambda: self._stage(command, members=members))

    def _remember(self, command: GroupCommand) -> None:
        self.commands[command.id] = command
        for dev_eui, member in command.members.items():
            if member.state == _WAITING:
                self._by_member[(dev_eui, command.command_id)] = command
        while len(self.commands) > _KEEP:
            oldest = self.commands.pop(next(iter(self.commands)))
            self._forget(oldest)

    def _forget(self, command: GroupCommand) -> None:
        for dev_eui in command.members:
            if self._by_member.get((dev_eui, command.command_id)) is command:
                del self._by_member[(dev_eui, command.command_id)]

    def on_result(self, dev_eui: str, fields: Mapping[str, Any]) -> GroupCommand | None:
        """A member's ``command_result``: the group command it answers, if any."""
        command_id = fields.get("command_id")
        if not isinstance(command_id, int):
            return None
        command = self._by_member.pop((dev_eui, command_id), None)
        if command is None:
            return None
        member = command.members[dev_eui]
        outcome = fields.get("outcome", "applied")
        member.updated_at = self.clock()
        if outcome == "applied":
            member.state = "applied"
        else:
            member.state, member.error = "failed", f"the node answered {outcome}"
        if self.store is not None:
            self.store.stage_group_member(
                GroupMember(command.id, dev_eui, member.state, member.error, member.updated_at)
            )
        return command

    # -- the store (gateway/store/groups.py) ---------------------------------------------------
    def _stage(self, command: GroupCommand, *, members: bool) -> None:
        if self.store is None:
            return
        head = GroupHead(
            command.id,
            command.group,
            command.created_at,
            command.expires_at,
            {
                "message": command.message,
                "fields": command.fields,
                "command_id": command.command_id,
                "f_port": command.f_port,
                "size": command.size,
                "f_cnt": command.f_cnt,
            },
        )
        rows = (
            [GroupMember(command.id, e, m.state, m.error, m.updated_at)
             for e, m in command.members.items()]
            if members
            else []
        )  # fmt: skip
        self.store.stage_group_command(head, rows)

    def _from_rows(self, head: GroupHead, rows: list[GroupMember]) -> GroupCommand:
        now = self.clock()
        members = {}
        for row in rows:
            state = member_state(row, head.expires_at, now)
            error = "no result" if state == "expired" and row.state == _WAITING else row.error
            members[row.dev_eui] = MemberState(state, error, row.updated_at)
        doc = head.doc
        return GroupCommand(
            id=head.id,
            group=head.group,
            message=str(doc.get("message", "")),
            fields=dict(doc.get("fields") or {}),
            command_id=int(doc.get("command_id", 0)),
            f_port=int(doc.get("f_port", 0)),
            size=int(doc.get("size", 0)),
            f_cnt=doc.get("f_cnt"),
            created_at=head.created_at,
            expires_at=head.expires_at,
            members=members,
        )

    async def ensure_known(self, dev_eui: str, fields: Mapping[str, Any]) -> None:
        """Before a ``command_result`` is applied: a group command this process does not know
        (submitted by another instance, or before a restart) is read from the store."""
        command_id = fields.get("command_id")
        if self.store is None or not isinstance(command_id, int):
            return
        if (dev_eui, command_id) in self._by_member:
            return
        for head, rows in await self.store.group_commands(active_at=self.clock(), limit=1000):
            if head.id in self.commands:
                continue
            command = self._from_rows(head, rows)
            self.commands[command.id] = command
            for eui, member in command.members.items():
                if member.state == _WAITING:
                    self._by_member.setdefault((eui, command.command_id), command)

    async def reload(self) -> None:
        """The active group commands as the store has them (after a batch the store refused,
        gateway/service.py ``_abandon_batch``): a member's result applied in the dropped batch
        waits for its result again, which the broker sends again with the batch."""
        if self.store is None:
            return
        self.commands.clear()
        self._by_member.clear()
        found = await self.store.group_commands(active_at=self.clock(), limit=_KEEP)
        for head, rows in reversed(found):  # oldest first, as _remember keeps them
            self._remember(self._from_rows(head, rows))

    async def read(self, command_id: str) -> GroupCommand | None:
        """A group command as the store has it (any instance's results), else from memory."""
        if self.store is None:
            return self.get(command_id)
        found = await self.store.group_commands(command=command_id, limit=1)
        return self._from_rows(*found[0]) if found else None

    async def read_group(self, group: str, limit: int = 1000) -> list[GroupCommand]:
        """The group's latest ``limit`` commands, oldest first, as the store has them."""
        if self.store is None:
            return self.for_group(group)[-limit:]
        rows = await self.store.group_commands(group=group, limit=limit)
        return [self._from_rows(head, members) for head, members in reversed(rows)]

    def expire(self) -> list[GroupCommand]:
        """Members still waiting past their command's expiry become ``expired``."""
        now = self.clock()
        changed: list[GroupCommand] = []
        for command in self.commands.values():
            if command.expires_at > now or command.state != _WAITING:
                continue
            for member in command.members.values():
                if member.state == _WAITING:
                    member.state, member.error, member.updated_at = "expired", "no result", now
            self._forget(command)
            changed.append(command)
        return changed

    def get(self, command_id: str) -> GroupCommand | None:
        self.expire()
        return self.commands.get(command_id)

    def for_group(self, group: str) -> list[GroupCommand]:
        self.expire()
        return [c for c in self.commands.values() if c.group == group]
