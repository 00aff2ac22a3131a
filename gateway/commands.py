"""Command lifecycle and the per-device queue (ARCHITECTURE.md invariant 4).

States: ``queued`` (in the gateway's queue; ``published_at`` is set once it was handed to
ChirpStack's queue with our own ``id``) → ``sent`` (``txack``) → ``acknowledged`` (``ack`` with
``acknowledged: true``, confirmed downlinks) → ``applied`` (a ``command_result`` uplink echoing the
``command_id`` with ``outcome: applied``). Terminal failures: ``failed`` (nack, ``log``
``DOWNLINK_PAYLOAD_SIZE``/``F_CNT_DOWN`` for our queue item, result ``rejected``/``unsupported``,
too large for the data rate; a ``command_result`` with ``outcome: applied`` that arrives later
for a nacked command still turns it into ``applied``, since the node's word counts), ``expired``
(``log`` ``EXPIRED`` or the gateway's timeout), ``replaced`` (a newer command with the same
message replaced it before it was handed over), and ``cancelled`` (an operator took it back
before it was handed over, ``POST /api/v1/commands/{id}/cancel``, :mod:`gateway.lifecycle`).

Reference: ChirpStack v4's device queue (chirpstack src/storage/device_queue.rs, downlink/;
docs, Device classes) (queue semantics: unconfirmed items leave
ChirpStack's queue at ``txack``, confirmed ones at ``ack``; no ordering between events, so every
transition only moves forward and events are correlated by ``queueItemId``).

One downlink per device in ChirpStack's queue: a device's next command is published only when
none of its commands is still in ChirpStack's queue (published and not yet txacked, or confirmed
and not yet acked). Over MQTT ChirpStack cannot take an item back, so only unpublished commands
are replaceable, and a command counts as handed over from the moment its publish *starts*
(:meth:`CommandManager.mark_published`, committed before the first byte goes out): the broker
may forward it to ChirpStack before its PUBACK reaches us, or the connection may drop after it
did. A publish that failed is repeated with the same ``id``, never replaced: the id is the
primary key of ChirpStack's ``device_queue_item`` table, so a repeat adds no second item while
the first waits. The broker's PUBACK is recorded (a ``puback:<id>`` key in the store); a command
handed over without one when the gateway starts was being published when it stopped, and is
published again once. The one case this cannot cover over MQTT: the stopped process's publish
did reach ChirpStack, which sent the command and deleted it before the restarted gateway saw
the ``txack``; the repeat is then a second copy of the same bytes, delivered after the first.
tests/gateway/test_one_downlink.py checks the invariant under random interleavings.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from gateway.chirpstack import AckEvent, LogEvent, TxAckEvent
from gateway.config import CommandsConfig
from gateway.errors import CommandRejected, PayloadTooLarge, UnknownDevice
from gateway.metrics import Metrics
from gateway.store.base import TERMINAL_STATES, CommandRecord, Device, Store
from protocol import catalogue, codec
from protocol.errors import ProtocolError
from protocol.lorawan.region import REGIONS

__all__ = ["CONFIG_MESSAGES", "CommandManager", "by_device", "max_payload"]

CONFIG_MESSAGES = ("lamp_profile", "bin_config", "device_config")
_RANK = {"queued": 0, "sent": 1, "acknowledged": 2, "applied": 3}
_PUBACK = "puback:"  # idempotency key recorded once the broker acknowledged a command's publish
_NACKED_PER_DEVICE = 8  # nacked commands a late command_result may still turn into applied


def by_device(commands: list[CommandRecord]) -> dict[str, list[CommandRecord]]:
    """``commands`` by devEUI, each device's in the order given."""
    grouped: dict[str, list[CommandRecord]] = {}
    for command in commands:
        grouped.setdefault(command.dev_eui, []).append(command)
    return grouped


def max_payload(
    region: str,
    dr: int | None,
    *,
    device_class: str = "CLASS_A",
    rx1_dr_offset: int = 0,
    rx2_dr: int | None = None,
) -> int:
    """Largest downlink payload in the receive window the device will hear next (ChirpStack sizes
    a queue item for its first downlink opportunity, reference §3.5); the N of RP002-1.0.4
    §2.x.6 for that data rate, from :mod:`protocol.lorawan.region`.

    - Class C: RX2 (ChirpStack schedules class C downlinks "immediately" on the RX2 frequency
      and data rate), at ``rx2_dr``: the region's default (EU868 DR0, 51 bytes) unless the
      network moved it with RXParamSetupReq (L2 1.0.4 §5.4).
    - Class A: RX1, at the RX1 data rate of the last uplink ``dr`` with ``rx1_dr_offset``
      (RP002 §2.x.7). Unknown ``dr`` (never heard, or not an uplink DR) gives RX2's limit, the
      window ChirpStack falls back to.
    """
    plan = REGIONS[region.upper()]
    rx2 = plan.max_frm_payload(plan.rx2_data_rate if rx2_dr is None else rx2_dr)
    if device_class == "CLASS_C" or dr is None:
        return rx2
    try:
        return plan.max_frm_payload(plan.rx1_data_rate(dr, rx1_dr_offset))
    except ProtocolError:
        return rx2


class CommandManager:
    """Holds the active commands in memory (loaded from the store) and stages every change."""

    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        config: CommandsConfig,
        logger: logging.Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.config = config
        self.log = logger
        self.clock = clock
        self.active: dict[str, CommandRecord] = {}
        self._by_device: dict[str, dict[str, CommandRecord]] = {}  # index: O(1) per uplink
        # Commands failed by a MAC-level nack, by device and command_id, until their expiry: the
        # node may still have received and applied them (a class C ack times out while the node
        # waits out its duty cycle), and its command_result is the word that counts.
        self._nacked: dict[str, dict[int, CommandRecord]] = {}
        # in memory only: publishes under way, and handed-over commands to publish again (same id)
        self._publishing: set[str] = set()
        self._republish: set[str] = set()

    async def load(self) -> None:
        for command in await self.store.active_commands():
            self._add(command)
        await self.recheck_handovers()

    async def recheck_handovers(self) -> None:
        """Handed over, but no PUBACK recorded: the process (or, with several instances, the
        dispatching instance) stopped while publishing it, so the broker may never have had it.
        Published again, same id (module docstring). At start, and when an instance takes over
        the dispatch job (gateway/fleet_sync.py)."""
        for command in list(self.active.values()):
            if (
                command.state == "queued"
                and command.published_at is not None
                and command.id not in self._publishing
                and not await self.store.seen(_PUBACK + command.id)
            ):
                self._republish.add(command.id)

    def for_device(self, dev_eui: str) -> list[CommandRecord]:
        commands = self._by_device.get(dev_eui)
        if not commands:
            return []
        return sorted(commands.values(), key=lambda c: c.created_at)

    def _add(self, command: CommandRecord) -> None:
        self.active[command.id] = command
        self._by_device.setdefault(command.dev_eui, {})[command.id] = command

    def _remove(self, command: CommandRecord) -> None:
        self.active.pop(command.id, None)
        self._republish.discard(command.id)
        commands = self._by_device.get(command.dev_eui)
        if commands is not None:
            commands.pop(command.id, None)
            if not commands:
                del self._by_device[command.dev_eui]

    def has_active(self, dev_eui: str) -> bool:
        return dev_eui in self._by_device

    def replace_device(self, dev_eui: str, commands: list[CommandRecord]) -> None:
        """The device's active commands as the store has them now (another gateway instance
        changed them: gateway/store/postgres.py). A command already held is updated in place,
        so whoever holds it sees the change."""
        held = {c.id: c for c in self.for_device(dev_eui)}
        republish = self._republish & set(held)
        for command in held.values():
            self._remove(command)
        for command in commands:
            current = held.get(command.id, command)
            if current is not command:
                for name in CommandRecord.__slots__:  # type: ignore[attr-defined]
                    setattr(current, name, getattr(command, name))
            if current.state not in TERMINAL_STATES:
                self._add(current)
        self._republish |= {i for i in republish if i in self.active}

    def refresh(self, commands: list[CommandRecord]) -> dict[str, list[CommandRecord]]:
        """Every active command as the store has it now (:meth:`replace_device` for every
        device); returns them by devEUI. After a refused batch (gateway/service.py), and when
        this instance takes over the dispatch job (``_lead_dispatch``): the instance that held
        it may have committed a handover after the last change this instance read, and
        :meth:`recheck_handovers` must see it, or a command the dead instance marked handed
        over and never published would wait for a PUBACK that never comes while the device's
        newer commands queue behind it."""
        grouped = by_device(commands)
        for dev_eui in set(self._by_device) | set(grouped):
            self.replace_device(dev_eui, grouped.get(dev_eui, []))
        return grouped

    def has_waiting(self, dev_eui: str) -> bool:
        """Whether the device has a command not yet handed to ChirpStack."""
        return any(
            c.state == "queued" and c.published_at is None
            for c in self._by_device.get(dev_eui, {}).values()
        )

    # --- submit ----------------------------------------------------------------------------------

    def submit(
        self,
        device: Device | None,
        message: str,
        fields: dict[str, Any],
        *,
        confirmed: bool | None = None,
        source: str = "api",
        expires_in_s: float | None = None,
    ) -> CommandRecord:
        """Validate, encode and queue a command; raises :class:`CommandError` subclasses. It
        expires ``expires_in_s`` from now (``[commands] timeout_s`` when None)."""
        if device is None:
            raise UnknownDevice("no such device", dev_eui="")
        try:
            spec = catalogue.message(message)
        except ProtocolError as exc:
            raise CommandRejected(f"unknown message {message!r}") from exc
        if spec.direction != "down":
            raise CommandRejected(f"{message} is an uplink message, not a command")
        if spec.device != "common" and spec.device != device.kind:
            raise CommandRejected(
                f"{message} is a {spec.device} command; device {device.dev_eui} is a {device.kind}",
                dev_eui=device.dev_eui,
            )
        if device.decommissioned_at is not None:
            raise CommandRejected(
                f"device {device.dev_eui} is decommissioned; register it again (PUT) first",
                dev_eui=device.dev_eui,
            )
        if not isinstance(fields, dict):
            raise CommandRejected("fields: expected an object")
        command_id = self._allocate_id(device)
        self._nacked.get(device.dev_eui, {}).pop(command_id, None)  # the id now means this one
        full = {**fields, "command_id": command_id}
        try:
            f_port, data = codec.encode(message, full)
        except ProtocolError as exc:
            text = str(exc)  # codec errors already start with the message name: say it once
            text = text if text.startswith(f"{message}:") else f"{message}: {text}"
            raise CommandRejected(text, dev_eui=device.dev_eui) from exc
        limit, window = self.size_limit(device)
        if len(data) > limit:
            raise PayloadTooLarge(
                f"{message} is {len(data)} bytes; {window} allows {limit}",
                dev_eui=device.dev_eui,
                size=len(data),
                limit=limit,
            )
        now = self.clock()
        command = CommandRecord(
            id=str(uuid.uuid4()),
            dev_eui=device.dev_eui,
            message=message,
            fields=full,
            command_id=command_id,
            f_port=f_port,
            data=data,
            confirmed=self.config.confirmed if confirmed is None else confirmed,
            created_at=now,
            expires_at=now + (self.config.timeout_s if expires_in_s is None else expires_in_s),
            source=source,
        )
        for older in self.for_device(device.dev_eui):
            if older.message == message and older.state == "queued" and older.published_at is None:
                older.replaced_by = command.id
                self._finish(older, "replaced", now, f"replaced by {command.id}")
        device.next_command_id = (command_id + 1) % 256
        if message in CONFIG_MESSAGES:
            device.desired[message] = {k: v for k, v in full.items() if k != "command_id"}
            version = full.get("config_version")
            if isinstance(version, int):
                device.desired_version = version
        device.updated_at = now
        self.store.stage_device(device)
        self._add(command)
        self.store.stage_command(command)
        self.metrics.pending.inc(self.metrics.downlinks.labels("queued"))
        return command

    def _allocate_id(self, device: Device) -> int:
        used = {c.command_id for c in self.for_device(device.dev_eui)}
        for step in range(256):
            candidate = (device.next_command_id + step) % 256
            if candidate not in used:
                return candidate
        raise CommandRejected("256 commands are active for this device", dev_eui=device.dev_eui)

    # --- dispatch --------------------------------------------------------------------------------

    @staticmethod
    def in_chirpstack_queue(command: CommandRecord) -> bool:
        if command.published_at is None or command.state in TERMINAL_STATES:
            return False
        return command.state == "queued" or (command.state == "sent" and command.confirmed)

    def next_to_send(self, dev_eui: str) -> CommandRecord | None:
        """The device's command to publish now: one whose publish must be repeated, else the
        oldest unpublished one when none of its commands is in ChirpStack's queue."""
        pending = self.for_device(dev_eui)
        for command in pending:
            if command.id in self._republish and command.id not in self._publishing:
                return command
        if any(self.in_chirpstack_queue(c) for c in pending):
            return None
        for command in pending:
            if command.state == "queued" and command.published_at is None:
                return command
        return None

    def is_republish(self, command: CommandRecord) -> bool:
        """Whether ``command`` was handed over before and is to be published again."""
        return command.id in self._republish

    def devices_waiting(self) -> set[str]:
        return {
            c.dev_eui
            for c in self.active.values()
            if (c.state == "queued" and c.published_at is None) or c.id in self._republish
        }

    def size_limit(self, device: Device | None) -> tuple[int, str]:
        """The payload limit in the window ``device`` hears next, less the MAC headroom, and
        the window's name for messages ("RX2 DR0", "RX1 DR5")."""
        cfg = self.config
        plan = REGIONS[cfg.region.upper()]
        device_class = device.device_class if device is not None else ""
        dr = device.last_dr if device is not None else None
        rx2_dr = plan.rx2_data_rate if cfg.rx2_dr < 0 else cfg.rx2_dr
        limit = max_payload(
            cfg.region,
            dr,
            device_class=device_class,
            rx1_dr_offset=cfg.rx1_dr_offset,
            rx2_dr=rx2_dr,
        )
        window = f"RX2 DR{rx2_dr}"
        if device_class != "CLASS_C" and dr is not None:
            try:
                window = f"RX1 DR{plan.rx1_data_rate(dr, cfg.rx1_dr_offset)}"
            except ProtocolError:
                pass
        return limit - cfg.mac_headroom_bytes, window

    def check_size(self, command: CommandRecord, device: Device | None) -> bool:
        """Recheck the size against the window the device hears now, just before sending."""
        limit, window = self.size_limit(device)
        if len(command.data) > limit:
            error = f"payload {len(command.data)} > {limit} in {window}"
            self._finish(command, "failed", self.clock(), error)
            return False
        return True

    @staticmethod
    def cancellable(command: CommandRecord) -> bool:
        """Only a command never handed to ChirpStack can be taken back over MQTT: ChirpStack's
        ``command/down`` only enqueues (reference chirpstack.md §3; flushing a device queue is
        the gRPC ``DeviceService.FlushQueue``, §5)."""
        return command.state == "queued" and command.published_at is None

    def cancel(self, command: CommandRecord, reason: str, *, taken_back: bool = False) -> bool:
        """``cancelled`` when :meth:`cancellable`, or when ``taken_back`` says ChirpStack's queue
        no longer holds this ``queued`` command (gateway/chirpstack_queue.py removed it);
        False (unchanged) otherwise."""
        if not (self.cancellable(command) or (taken_back and command.state == "queued")):
            return False
        self._republish.discard(command.id)  # taken back: never published again
        self._finish(command, "cancelled", self.clock(), reason)
        return True

    def mark_published(self, command: CommandRecord) -> None:
        """Handed over to ChirpStack from now on: call it *before* the publish starts (and commit
        it), so the command is never replaced while the broker may already have forwarded it."""
        command.published_at = self.clock()
        self._publishing.add(command.id)
        self._republish.discard(command.id)
        self.store.stage_command(command)

    def unmark_published(self, command: CommandRecord) -> None:
        """The publish did not start after all (the handover could not be committed)."""
        self._publishing.discard(command.id)
        if command.state == "queued" and command.id in self.active:
            command.published_at = None
            self.store.stage_command(command)

    def publish_finished(self, command: CommandRecord, *, delivered: bool) -> None:
        """The publish ended: PUBACK (``delivered``) or an error after which the broker may or
        may not have it. Then it stays handed over and is published again with the same id."""
        self._publishing.discard(command.id)
        if delivered:
            self.store.stage_seen(_PUBACK + command.id)  # the broker has it: no repeat at load
        elif command.state == "queued" and command.id in self.active:
            self._republish.add(command.id)

    # --- events ----------------------------------------------------------------------------------

    def _advance(self, command: CommandRecord, state: str, now: float) -> bool:
        if command.state in TERMINAL_STATES or _RANK[state] <= _RANK[command.state]:
            return False
        if command.published_at is None:
            command.published_at = now
        if _RANK[state] >= 1 and command.sent_at is None:
            command.sent_at = now
        if state == "acknowledged":
            command.acknowledged_at = now
        if state == "applied":
            command.applied_at = now
            command.finished_at = now
            self._remove(command)
        command.state = state
        self.store.stage_command(command)
        self.metrics.pending.inc(self.metrics.downlinks.labels(state))
        return True

    def _finish(self, command: CommandRecord, state: str, now: float, error: str) -> None:
        if command.state in TERMINAL_STATES:
            return
        command.state = state
        command.error = error
        command.finished_at = now
        self._remove(command)
        self.store.stage_command(command)
        self.metrics.pending.inc(self.metrics.downlinks.labels(state))

    async def _find(self, queue_item_id: str) -> CommandRecord | None:
        if not queue_item_id:
            return None
        command = self.active.get(queue_item_id)
        if command is None:
            command = await self.store.get_command(queue_item_id)
        return command

    async def on_txack(self, event: TxAckEvent) -> CommandRecord | None:
        command = await self._find(event.queue_item_id)
        if command is None:
            return None
        if command.f_cnt_down is None:
            command.f_cnt_down = event.f_cnt_down
        if not self._advance(command, "sent", self.clock()):
            self.store.stage_command(command)  # keep f_cnt_down learnt late
        return command

    async def on_ack(self, event: AckEvent) -> CommandRecord | None:
        command = await self._find(event.queue_item_id)
        if command is None:
            return None
        now = self.clock()
        if event.acknowledged:
            self._advance(command, "acknowledged", now)
        elif command.state not in ("acknowledged", "applied"):
            self._finish(command, "failed", now, "not acknowledged by the device (nack)")
            nacked = self._nacked.setdefault(command.dev_eui, {})
            nacked[command.command_id] = command
            while len(nacked) > _NACKED_PER_DEVICE:
                del nacked[next(iter(nacked))]
        return command

    async def on_log(self, event: LogEvent) -> CommandRecord | None:
        command = await self._find(event.queue_item_id)
        if command is None:
            return None
        now = self.clock()
        if event.code == "EXPIRED":
            self._finish(command, "expired", now, "expired in ChirpStack's queue")
        elif event.code in ("DOWNLINK_PAYLOAD_SIZE", "F_CNT_DOWN"):
            detail = ", ".join(f"{k}={v}" for k, v in sorted(event.context.items()))
            self._finish(command, "failed", now, f"{event.code}: {detail}")
        else:
            return None
        return command

    def on_result(self, dev_eui: str, fields: dict[str, Any]) -> CommandRecord | None:
        """A ``command_result`` uplink: the node applied (or refused) ``command_id``."""
        command_id = fields.get("command_id")
        candidates = [
            c
            for c in self.for_device(dev_eui)
            if c.command_id == command_id and c.published_at is not None
        ]
        now = self.clock()
        outcome = fields.get("outcome", "applied")
        if not candidates:
            return self._late_result(dev_eui, command_id, outcome, now)
        command = candidates[-1]
        if outcome == "applied":
            self._advance(command, "applied", now)
        else:
            self._finish(command, "failed", now, f"device answered {outcome}")
        return command

    def _late_result(
        self, dev_eui: str, command_id: Any, outcome: Any, now: float
    ) -> CommandRecord | None:
        """A result for a command that failed only by nack: the node did apply it after all."""
        nacked = self._nacked.get(dev_eui)
        command = nacked.pop(command_id, None) if nacked and isinstance(command_id, int) else None
        if command is None or outcome != "applied":
            return None
        if command.expires_at is not None and command.expires_at <= now:
            return None
        command.state = "applied"
        command.error = ""
        command.applied_at = command.finished_at = now
        self.store.stage_command(command)
        self.metrics.pending.inc(self.metrics.downlinks.labels("applied"))
        return command

    def on_join(self, dev_eui: str) -> int:
        """ChirpStack flushes a device's queue at OTAA join by default (reference §3.7,
        chirpstack#216): items handed over but not yet sent go back to our queue."""
        count = 0
        for command in self.for_device(dev_eui):
            if command.id in self._publishing:
                # its publish may reach ChirpStack after the flush: it stays handed over and is
                # published again with the same id once this publish ends
                self._republish.add(command.id)
                count += 1
            elif command.state == "queued" and command.published_at is not None:
                command.published_at = None
                self.store.stage_command(command)
                count += 1
        return count

    def expire(self) -> list[CommandRecord]:
        now = self.clock()
        expired = []
        for command in list(self.active.values()):
            if command.expires_at is not None and command.expires_at <= now:
                self._finish(command, "expired", now, "timed out before the device applied it")
                expired.append(command)
        return expired

    def expire_unsent(self, command: CommandRecord) -> bool:
        """Expire ``command`` if its time is up and it was never handed to ChirpStack (which
        would only drop it with a ``log`` EXPIRED, gateway/README.md §1); whether it did."""
        now = self.clock()
        if command.published_at is not None or command.expires_at is None:
            return False
        if command.expires_at > now or command.state in TERMINAL_STATES:
            return False
        self._finish(command, "expired", now, "timed out before it could be sent")
        return True
