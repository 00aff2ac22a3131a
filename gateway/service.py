"""The gateway service, the I/O around the fleet core: MQTT, batching, flush/ack, command
dispatch, maintenance.

Data path (ARCHITECTURE.md "Where a byte goes"): MQTT ``application/+/device/+/event/+`` →
:func:`gateway.chirpstack.parse_event` → the store reads the fleet core asks for → the core's
``apply`` (:mod:`gateway.fleet`: dedup, decode, twin, history and rules, as effects, no I/O) →
its effects carried out (``_carry_out``: staged in the store, the cached devices changed,
commands submitted, events queued) → one commit per batch → MQTT PUBACK for the batch's messages
→ normalised topics published → commands dispatched to ``command/down``. The command manager
(``txack``/``ack``/``log``, a join's requeue, which command a ``command_result`` answers) and
the FUOTA and multicast hooks stay here (gateway/fleet/__init__.py says why).

Batching: a batch is committed when ``[store] batch_max`` messages are staged or when its first
message is ``batch_interval_s`` old (a timer makes sure of it when no further message arrives);
while a backlog waits it grows to ``batch_max`` (at most 5 intervals).
A quiet gateway adds at most ``batch_interval_s`` (10 ms by default) of latency; one catching up
amortises a transaction over hundreds of messages. Because messages are acknowledged only after
the commit, the broker's in-flight window for the gateway's client (mosquitto
``max_inflight_messages``, 20 by default) divided by ``batch_interval_s`` bounds the throughput:
raise it to a few hundred on a busy broker (gateway/README.md).

What an event does (unknown devices, fPort 0, undecodable payloads, dedup) is decided in
:mod:`gateway.fleet`. Events that do not parse (or are larger than ``[mqtt] max_event_bytes``)
are dead letters from here: the raw MQTT topic and payload with the reason, counted as
``invalid_event``.

Concurrency: everything runs on one event loop; a message is processed holding the flush lock,
so a flush from the API, a timer or the dispatcher never commits half a message even when the
store's reads suspend (PostgreSQL), and its MQTT ack joins the batch only once it is processed.
A store that commits without the loop waiting on it (``writes_off_loop``: SQLite's writer
thread, PostgreSQL's batch transaction on a connection of its own) commits without the flush
lock: the batch (acks, events, staged rows) is taken under the lock, and the loop receives and
processes the next one while it commits; one commit is in flight at a time, and a batch's
acks leave only after its commit (issue 17).

Several instances on one PostgreSQL store (gateway/README.md "Running several instances"): a
message's device is claimed in the database before it is processed (per-device serialisation,
gateway/store/postgres.py) and read again when another instance changed it; the messages already
waiting are taken with it and their devices claimed in one round trip
(:meth:`Gateway._claim_burst`); dispatch and maintenance run on one instance at a time; the rest
is in :mod:`gateway.fleet_sync`. A batch the store refuses
(:class:`~gateway.errors.StoreConflict`) is dropped whole: the devices are read again and the
MQTT session reconnects, so the broker sends its messages again.

Tasks run in one ``asyncio.TaskGroup`` with names: ``mqtt`` (connection and receive loop),
``publish`` (outbox), ``dispatch`` (downlinks), ``maintenance`` (expiry, availability, retention)
and ``api`` (uvicorn). :meth:`Gateway.stop` (SIGTERM) stops receiving, commits and acknowledges
what was processed, publishes ``bridge/state offline`` and ends the tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import aiomqtt

from gateway import chirpstack as cs
from gateway import heap
from gateway.bridge import Bridge
from gateway.commands import CONFIG_MESSAGES, CommandManager
from gateway.config import Config, read_secret
from gateway.errors import (
    CommandError,
    DeviceBusy,
    InvalidEvent,
    NotCommitted,
    StoreConflict,
    StoreError,
    StoreGone,
)
from gateway.fleet import Effects, FleetCore, Known
from gateway.fleet.core import never_heard
from gateway.fuota_campaign import CampaignEngine
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.multicast import MulticastManager
from gateway.os2iot import Os2iotClient, Os2iotDownlinks
from gateway.os2iot_groups import Os2iotGroups
from gateway.outbox import STATES_BACKLOG, Outbox
from gateway.publish import Publisher
from gateway.rules import PlannedCommand
from gateway.setcommand import InvalidSet, parse_set
from gateway.store import (
    CommandRecord,
    DeadLetter,
    Device,
    EventRecord,
    Store,
    create_store,
)
from gateway.turns import in_turns
from protocol.errors import ProtocolError

__all__ = ["Gateway"]


_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


@dataclass(slots=True)
class _Batch:
    """What one commit holds, taken from the gateway when the commit starts."""

    acks: list[tuple[int, int, int, float, bool]]  # (generation, mid, qos, received, is_uplink)
    events: list[EventRecord]
    dirty: set[str]
    availability: set[str]
    twins: list[tuple[Device, bytes]]
    counts: dict[Any, int]  # counter increments to add once it commits (gateway/metrics.py Tally)


# the events whose effects the fleet core decides (gateway/fleet/); the rest are the command
# manager's (txack, ack, log) or nothing to do (integration)
_CORE_EVENTS = (cs.UplinkEvent, cs.JoinEvent, cs.StatusEvent, cs.LocationEvent)
_T = TypeVar("_T")
# times an API change is made again when the store refused its batch (Gateway._committed_on)
API_ATTEMPTS = 3
_RETRY_MAX_S = 5.0  # longest wait between two commit attempts on a failing store
# messages already received and waiting that make a batch grow past its interval: a steady
# 1,000/s leaves one or two waiting, a restart draining the broker's queue leaves hundreds
_BACKLOG = 32
# messages taken from the receive queue at once with several instances, their devices claimed
# in one round trip (Gateway._claim_burst); a backlog after a restart makes bursts this long
_BURST = 32

# ChirpStack's JSON up event starts with its deduplicationId (field 1 of UplinkEvent, serialised
# in field order); a UUID has no character JSON would escape
_DEDUP_FIELD = b'{"deduplicationId":'
_DEDUP_ID = re.compile(rb"[0-9a-fA-F-]{36}")


def _uplink_key(payload: Any) -> str | None:
    """The dedup key ``_on_up`` will use for an up event (``up:<deduplicationId>``), read
    from the raw JSON without parsing it; None when not certain (another shape, protobuf,
    the field twice), and then nothing is read ahead for it (Gateway._claim_burst)."""
    if not isinstance(payload, bytes) or not payload.startswith(_DEDUP_FIELD):
        return None
    start = len(_DEDUP_FIELD)
    while payload[start : start + 1] == b" ":  # json.dumps's ": " (ChirpStack writes none)
        start += 1
    if payload[start : start + 1] != b'"':
        return None
    match = _DEDUP_ID.match(payload, start + 1)
    if match is None or payload[match.end() : match.end() + 1] != b'"':
        return None
    if payload.count(b'"deduplicationId"') != 1:
        return None
    return "up:" + match.group().decode()


def _count_devices(devices: Iterable[Device], counts: dict[tuple[str, str], int]) -> None:
    """Add ``devices`` not decommissioned to ``counts`` by (kind, availability): the
    ``citypack_devices`` gauge."""
    for device in devices:
        if device.decommissioned_at is not None:
            continue
        key = (device.kind, device.availability)
        counts[key] = counts.get(key, 0) + 1


class Gateway:
    """One gateway process. ``async with Gateway(config) as gw: await gw.run()``."""

    def __init__(
        self,
        config: Config,
        *,
        logger: logging.Logger | None = None,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        api_token: str | None = None,
    ) -> None:
        self.config = config
        self.log = logger or get_logger()
        self.clock = clock
        self.metrics = Metrics()
        self._m_outcomes: dict[str, Any] = {}  # citypack_uplinks_total{outcome}, by outcome
        self._m_events: dict[str, Any] = {}
        self.store: Store = store or create_store(
            config.store.url,
            synchronous=config.store.synchronous,
            password_file=config.store.password_file,
        )
        self.devices: dict[str, Device] = {}
        self.commands = CommandManager(
            store=self.store,
            metrics=self.metrics,
            config=config.commands,
            logger=self.log,
            clock=clock,
        )
        self.bridge = Bridge(
            config=config.mqtt,
            publisher_base=config.publish.base_topic,
            handler=self._on_message,
            on_connect=self._on_connect,
            on_stop=self.flush,
            accept_set=config.publish.accept_set,
            metrics=self.metrics,
            logger=self.log,
            chirpstack_events=config.os2iot.ingest != "http_push",
        )
        self.bridge.on_drained = self._on_drained
        self.outbox = Outbox(
            self.bridge, max_events=config.mqtt.queue_size, metrics=self.metrics, logger=self.log
        )
        self.bridge.drain = self.outbox.drain
        self.publisher = Publisher(
            config.publish,
            self.outbox.send,
            self.outbox.send_retained,
            client_id=config.mqtt.client_id,
        )
        self.os2iot: Os2iotDownlinks | None = None
        if config.os2iot.url and config.os2iot.downlinks:  # commands through OS2iot's API
            client = Os2iotClient(
                config.os2iot.url,
                read_secret(config.os2iot.api_key_file),
                timeout_s=config.os2iot.timeout_s,
            )
            self.os2iot = Os2iotDownlinks(config.os2iot, client, self, clock=clock)
        self.multicast: MulticastManager | None = None  # issue 18: group commands
        if config.multicast.enabled:
            self.multicast = MulticastManager(
                config=config.multicast,
                chirpstack=config.chirpstack,
                application_id=config.mqtt.application_id,
                devices=self.devices,
                active_command_ids=lambda eui: {
                    c.command_id for c in self.commands.for_device(eui)
                },
                stage_device=self.store.stage_device,
                clock=clock,
                logger=self.log,
                # an OS2iot city: its multicasts, through its API (gateway/os2iot_groups.py)
                client=Os2iotGroups(self.os2iot.client) if self.os2iot is not None else None,
                store=self.store,
                commit=self.flush_staged,
            )
        self.fuota: CampaignEngine | None = None  # issue 18: FUOTA campaigns
        if config.fuota.enabled and self.multicast is not None:
            self.fuota = CampaignEngine(
                config=config.fuota,
                multicast=self.multicast,
                store=self.store,
                send_unicast=self.send_raw_downlink,
                clock=clock,
                logger=self.log,
            )
        # the registry, exactly-once and the rules, without I/O (gateway/fleet/)
        self.core = FleetCore(config, self.devices, fuota=self.fuota is not None)
        self.api_token = api_token
        self.api_port: int | None = None
        self._store_ok = False
        self._acks: list[tuple[int, int, int, float, bool]] = []
        self._batch_started: float | None = None
        self._dirty_state: set[str] = set()
        self._dirty_availability: set[str] = set()
        self._events: list[EventRecord] = []
        self._tally = self.metrics.pending  # counted when the batch commits
        self._kicked: set[str] = set()
        self._kick = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        # a store that commits on its own thread (SQLite): the loop receives and processes the
        # next batch while one commits; _lane keeps one commit in flight, in order
        self._off_loop = bool(getattr(self.store, "writes_off_loop", False))
        self._lane = asyncio.Lock()
        self._lane_idle = asyncio.Event()  # clear while a commit taken by flush() is in flight
        self._lane_idle.set()
        # a batch flush() took that the store refused, until it is dropped (_abandon_refused)
        self._refused: tuple[str, int] | None = None
        self.refused_batches = 0  # batches the store refused and this instance dropped
        self._flush_spawned = False
        self._opened = False
        # run() is opening the store behind a listening API: it answers only its probes then
        # (/healthz says "starting", gateway/api/health.py)
        self.starting = False
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        # receive -> committed seconds of each uplink, when a benchmark asks for raw samples
        self.latency_samples: list[float] | None = None
        self._gauge_stale = True
        self._flush_timer: asyncio.TimerHandle | None = None
        self._store_failures = 0
        self._timer_tasks: set[asyncio.Future[None]] = set()
        self._store_lost = False  # a commit raised StoreGone: reopen before the next one
        self._parked: list[tuple[aiomqtt.Message, int]] = []  # received while it is lost
        self._retry_timer: asyncio.TimerHandle | None = None
        self._retry_at = 0.0  # time.monotonic() before which a failed store is not tried again
        self.fleet = None
        if self.store.shared:
            from gateway.fleet_sync import FleetSync
            from gateway.store.postgres import PostgresStore

            assert isinstance(self.store, PostgresStore)
            self.fleet = FleetSync(self, self.store, logger=self.log)
            if self.fuota is not None:  # answers heard here, matched where campaigns run
                self.fuota.relay = self._relay_fuota

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Gateway:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def store_ok(self) -> bool:
        """Whether the last commit (or read) succeeded: ``/readyz`` and ``citypack_store_ok``."""
        return self._store_ok

    @store_ok.setter
    def store_ok(self, value: bool) -> None:
        if value != self._store_ok:  # set at every commit: the gauge only when it changes
            self._store_ok = value
            self.metrics.store_ok.set(1 if value else 0)

    async def open(self) -> None:
        if self._opened:
            return
        await self.store.open()
        self.store_ok = True
        for device in await self.store.load_devices():
            self.devices[device.dev_eui] = device
        self.core.recount()
        await self.commands.load()
        if self.fuota is not None:
            await self.fuota.load()
        heap.settle(len(self.devices))  # the registry out of full GC passes (gateway/heap.py)
        self._opened = True
        self.update_device_gauge()
        migrated_from = getattr(self.store, "migrated_from", None)
        if migrated_from is not None:
            self.log.info("store schema migrated", extra={"from_version": migrated_from})
        self.log.info(
            "store open",
            extra={"devices": len(self.devices), "active_commands": len(self.commands.active)},
        )

    async def close(self) -> None:
        if self.multicast is not None:
            await self.multicast.close()
        if self.os2iot is not None:
            await self.os2iot.client.close()
        if self._opened:
            if self._retry_timer is not None:
                self._retry_timer.cancel()
                self._retry_timer = None
            with contextlib.suppress(StoreError):
                await self.flush()
            try:
                await self.store.close()
            except StoreError as exc:  # unacknowledged: the broker redelivers it
                self.log.error("store closed with uncommitted data", extra={"error": str(exc)})
            self._opened = False

    def stop(self) -> None:
        """Ask for a graceful stop (the SIGTERM handler calls this)."""
        self._stopping.set()
        self.bridge.stop()

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for: long-lived responses (the live stream) end then."""
        return self._stopping.is_set()

    @property
    def ready(self) -> bool:
        return self.bridge.connected.is_set() and self.store_ok

    async def run(self) -> None:
        """Run until :meth:`stop`; commits and acknowledges what it processed before returning.

        The API listens before the store opens: opening waits on PostgreSQL (the connection,
        a schema migration another instance may be running, gateway/store/postgres.py), and
        meanwhile an operator or a supervisor sees a live process, ``/healthz`` saying
        ``starting`` and ``/readyz`` 503. A store that cannot be opened stops the start."""
        api_socket = None
        if self.config.api.enabled:
            from gateway.api import bind_api

            api_socket = bind_api(self)  # an address in use fails here, as a plain OSError
        async with asyncio.TaskGroup() as group:
            server = None
            others: list[asyncio.Task[None]] = []
            self.starting = not self._opened
            if api_socket is not None:
                from gateway.api import start_api

                server, task = await start_api(self, group, api_socket)
                others.append(task)
            await self.open()  # raising here ends the API task too (the group cancels it)
            self.starting = False
            mqtt = group.create_task(self.bridge.run(), name="mqtt")
            others.append(group.create_task(self.outbox.run(), name="publish"))
            if self.fleet is None:
                others.append(group.create_task(self._dispatcher(), name="dispatch"))
                others.append(group.create_task(self._maintenance(), name="maintenance"))
            else:  # once per fleet: on the instance holding the job (gateway/fleet_sync.py)
                fleet = self.fleet
                for name, job in (
                    ("dispatch", self._lead_dispatch),
                    ("maintenance", self._maintenance),
                ):
                    others.append(group.create_task(fleet.lead(name, job), name=name))
                others.append(group.create_task(fleet.feed(), name="feed"))
                others.append(group.create_task(fleet.heartbeat(), name="heartbeat"))
            if self.os2iot is not None:  # reading handed-over commands back: once per fleet
                os2iot = self.os2iot
                others.append(
                    group.create_task(
                        os2iot.run()
                        if self.fleet is None
                        else self.fleet.lead("os2iot", os2iot.run),
                        name="os2iot",
                    )
                )
            if self.fuota is not None:  # campaigns: once per fleet, like os2iot
                fuota = self.fuota
                others.append(
                    group.create_task(
                        fuota.run() if self.fleet is None else self.fleet.lead("fuota", fuota.run),
                        name="fuota",
                    )
                )
            self.started.set()
            await mqtt
            if server is not None:
                server.should_exit = True
            for task in others:
                if task.get_name() != "api":
                    task.cancel()
        await self.flush()
        self.log.info("gateway stopped")

    # --- batching --------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Commit the batch, then acknowledge its MQTT messages and publish its effects; then
        let the published states catch up (:meth:`Outbox.wait_states_below`)."""
        await self._flush()
        await self.outbox.wait_states_below(STATES_BACKLOG)

    async def _flush(self) -> None:
        if not self._off_loop:
            async with self._flush_lock:
                await self._flush_locked()
            return
        # Off the loop: the batch is taken under the flush lock (no message is half processed),
        # and the commit is awaited without it, so messages go on being received and processed
        # into the next batch meanwhile. Their acks wait for the commit that holds them: one
        # in flight at a time (_lane), and this one's acks are only what it took.
        async with self._lane:
            self._flush_spawned = False
            async with self._flush_lock:
                taken = self._take_batch()
            if taken is None:
                return  # a failed store's back-off: the retry timer comes back for it
            self._lane_idle.clear()
            try:
                refused = await self._commit_taken(taken)
                if refused is not None:
                    self._refused = (refused, len(taken.acks))
            finally:
                self._lane_idle.set()
            if refused is not None:
                async with self._flush_lock:
                    await self._abandon_refused()
        due = self._flush_due()  # for what came in while this one committed
        if due and self.store_ok:
            self._spawn_flush()
        elif due is False:
            self._arm_timer()

    def _spawn_flush(self) -> None:
        if self._flush_spawned:
            return
        self._flush_spawned = True
        task = asyncio.ensure_future(self.flush())
        self._timer_tasks.add(task)
        task.add_done_callback(self._timer_tasks.discard)

    async def _flush_locked(self) -> bool:
        """:meth:`flush` with the flush lock held; False when the store refused the batch,
        this one or one :meth:`flush` took (dropped: :meth:`_abandon_batch`). Off the loop, a
        commit in flight (taken earlier, awaited without the flush lock) ends first: one commit
        at a time, acks in receive order. It never waits for the flush lock before it ends (a
        refused one is dropped after), so waiting for it here cannot deadlock."""
        await self._lane_idle.wait()
        if await self._abandon_refused():
            return False
        taken = self._take_batch()
        if taken is not None:
            refused = await self._commit_taken(taken)
            if refused is not None:
                await self._abandon_batch(refused, len(taken.acks))
                return False
        return True

    def _take_batch(self) -> _Batch | None:
        """The batch to commit (its acks, events and devices, staged in the store); None while
        a failed store waits for its back-off."""
        if self._store_failures and time.monotonic() < self._retry_at:
            # the store failed a moment ago: no new attempt before the back-off is over. A
            # locked SQLite file blocks each attempt for its busy_timeout, and attempts back
            # to back (timer, maintenance, every message) would leave the loop no time for
            # /readyz. The batch stays as it is; the retry timer comes back for it.
            self._arm_retry(self._retry_at - time.monotonic())
            return None
        acks, self._acks = self._acks, []
        events, self._events = self._events, []
        dirty, self._dirty_state = self._dirty_state, set()
        availability, self._dirty_availability = self._dirty_availability, set()
        counts = self._tally.take()
        self._batch_started = None
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        twins: list[tuple[Device, bytes]] = []
        for dev_eui in dirty:
            device = self.devices.get(dev_eui)
            if device is not None:
                twin = device.twin_json()  # once: stored and published
                self.store.stage_device(device, twin.decode())
                if device.decommissioned_at is None:  # its retained topics were cleared
                    twins.append((device, twin))
        return _Batch(acks, events, dirty, availability, twins, counts)

    async def _commit_taken(self, batch: _Batch) -> str | None:
        """Commit ``batch``; then acknowledge its messages and publish its effects, or keep it
        for the next attempt. The reason when the store refused it (StoreConflict): the
        caller drops it with :meth:`_abandon_batch`, holding the flush lock."""
        acks, events, dirty = batch.acks, batch.events, batch.dirty
        availability, twins = batch.availability, batch.twins
        try:
            if self._store_lost:
                await self._reopen_store()
            await self.store.commit()
            if not self.store_ok:
                self.log.info("store commits again", extra={"failures": self._store_failures})
            self.store_ok = True
            self._store_failures = 0
        except StoreConflict as exc:
            return str(exc)
        except StoreError as exc:
            if isinstance(exc, StoreGone):
                self._store_lost = True
            self._store_failures += 1
            self.metrics.store_failures.inc()
            backoff = min(_RETRY_MAX_S, 0.5 * 2 ** min(self._store_failures, 4))
            self._retry_at = time.monotonic() + backoff
            self._arm_retry(backoff)
            if self.store_ok or self._store_failures % 100 == 0:  # no log flood
                self.log.error(
                    "store commit failed; will retry",
                    extra={"error": str(exc), "failures": self._store_failures},
                )
            self.store_ok = False
            # keep the batch: nothing is acknowledged, everything is retried
            self._acks = acks + self._acks
            self._events = events + self._events
            self._tally.put_back(batch.counts)
            self._dirty_state |= dirty
            self._dirty_availability |= availability
            return None
        done = time.perf_counter()
        current = self.bridge.generation
        puback: list[int] = []  # QoS 1 on this connection: one write (Bridge.ack_many)
        observe = self.metrics.uplink_seconds.observe
        samples = self.latency_samples
        for generation, mid, qos, received, is_uplink in acks:
            if qos == 1 and generation == current:
                puback.append(mid)
            else:
                self.bridge.ack(generation, mid, qos)
            if is_uplink:
                observe(done - received)
                if samples is not None:
                    samples.append(done - received)
        self.bridge.ack_many(current, puback)
        self._tally.settle(batch.counts)
        if self._parked:
            task = asyncio.ensure_future(self._unpark())
            self._timer_tasks.add(task)
            task.add_done_callback(self._timer_tasks.discard)
        if twins:
            self.publisher.states(twins)
        for dev_eui in availability:
            device = self.devices.get(dev_eui)
            if device is not None and device.decommissioned_at is None:
                self.publisher.availability(device)
        for event in events:
            self.publisher.event(event)
        return None

    async def _abandon_refused(self) -> bool:
        """Drop the batch :meth:`flush` took and the store refused, if that is not done yet;
        with the flush lock held. The store put the refused writes back with what was staged
        since (gateway/store/postgres.py ``commit``), so whoever takes the flush lock first
        after the refusal drops them: a flush that ran between would commit the refused
        batch's rows without its acknowledgements, events and counts (its messages then come
        back as duplicates and their events are never published). True when it dropped one:
        what the caller staged since went with it."""
        refused, self._refused = self._refused, None
        if refused is None:
            return False
        await self._abandon_batch(*refused)
        return True

    async def _abandon_batch(self, reason: str, messages: int) -> None:
        """The store refused the batch (another instance changed one of its devices, seen by
        the version check): drop it whole, read the fleet again from the store, and reconnect
        so the broker sends the batch's unacknowledged messages again (dedup keeps what other
        batches committed from being applied twice)."""
        self.log.warning(
            "batch refused by the store; redelivering",
            extra={"error": reason, "messages": messages},
        )
        self.refused_batches += 1
        self.store.discard()
        self._events.clear()
        self._acks.clear()
        self._tally.clear()
        self._dirty_state.clear()
        self._dirty_availability.clear()
        stored = {d.dev_eui: d for d in await self.store.load_devices()}
        for dev_eui in list(self.devices):
            if dev_eui not in stored:
                del self.devices[dev_eui]  # created by the dropped batch
        commands = self.commands.refresh(await self.store.active_commands())
        for device in stored.values():
            self.adopt_device(device, commands.get(device.dev_eui, []))
        self.core.recount()  # devices the dropped batch auto-registered are gone again
        if self.multicast is not None:
            await self.multicast.reload()  # member results the dropped batch applied
        self.update_device_gauge()
        self.bridge.reconnect()

    async def _claim_for(self, event: cs.Event) -> None:
        """Claim the devices processing ``event`` may change: its own, and for a lamp's
        uplink the neighbours a presence boosts (claimed now rather than at commit, where one
        held elsewhere would refuse the whole batch)."""
        await self.claim(event.dev_eui)
        device = self.devices.get(event.dev_eui)
        if isinstance(event, cs.UplinkEvent) and device is not None and device.kind == "lamp":
            others = [d for d in device.neighbours if d != device.dev_eui and d in self.devices]
            if others:
                await self.claim_all([device.dev_eui, *others])

    async def claim_all(self, dev_euis: list[str], attempts: int = 5) -> None:
        """Claim several devices without waiting while holding any (no deadlock): a busy one
        makes this instance commit, wait for that one alone, then try the rest again. After
        ``attempts`` the rest is left to the check at commit."""
        for _ in range(attempts):
            busy = None
            for dev_eui in dev_euis:
                try:
                    changed = await self.store.claim_device(dev_eui)
                except DeviceBusy:
                    busy = dev_eui
                    break
                if changed:
                    await self._reload(dev_eui)
            if busy is None:
                return
            await self._flush_locked()
            if await self.store.claim_device(busy, wait=True):
                await self._reload(busy)

    async def _reload(self, dev_eui: str) -> None:
        device, commands = await self.store.load_device(dev_eui)
        if device is not None:
            self.adopt_device(device, commands)
        else:
            self.commands.replace_device(dev_eui, commands)

    @property
    def flush_lock(self) -> asyncio.Lock:
        """Held while a message is processed and while a batch commits."""
        return self._flush_lock

    async def claim(self, dev_eui: str) -> None:
        """Hold ``dev_eui`` in the store until this batch commits (several instances: the
        flush lock is held), reading it again when another instance changed it."""
        try:
            changed = await self.store.claim_device(dev_eui)
        except DeviceBusy:
            await self._flush_locked()  # holding nothing, waiting cannot deadlock
            changed = await self.store.claim_device(dev_eui, wait=True)
        if changed:
            await self._reload(dev_eui)

    def adopt_device(self, device: Device, commands: list[CommandRecord]) -> Device:
        """Take the stored ``device`` and its active commands as this instance's copy (another
        instance changed them); returns the cached object, updated in place."""
        cached = self.devices.get(device.dev_eui)
        if cached is None:
            self.devices[device.dev_eui] = cached = device
        else:
            cached.take(device)
        self.commands.replace_device(device.dev_eui, commands)
        if self.commands.has_waiting(device.dev_eui):
            self.kick(device.dev_eui)
        self.update_device_gauge()
        return cached

    async def _reopen_store(self) -> None:
        """The store's database went away (StoreGone): open it again and stage the whole
        in-memory state, which a new, empty database does not have (issue 14)."""
        await self.store.reopen()
        for device in self.devices.values():
            self.store.stage_device(device)
        for command in self.commands.active.values():
            self.store.stage_command(command)
        self._store_lost = False
        self.log.warning(
            "store reopened; devices and active commands written again",
            extra={"devices": len(self.devices), "active_commands": len(self.commands.active)},
        )

    async def _unpark(self) -> None:
        """Process the messages held while the store was away, in the order they came."""
        parked, self._parked = self._parked, []
        for message, generation in parked:
            await self._on_message(message, generation)

    def _arm_retry(self, delay_s: float = 1.0) -> None:
        """Retry a failed commit even when no message arrives to trigger a flush (the broker
        sends nothing past its in-flight window while nothing is acknowledged)."""
        if self._retry_timer is not None:
            return
        delay_s = max(delay_s, 0.01)

        def retry() -> None:
            self._retry_timer = None
            task = asyncio.ensure_future(self.flush())
            self._timer_tasks.add(task)
            task.add_done_callback(self._timer_tasks.discard)

        self._retry_timer = asyncio.get_running_loop().call_later(delay_s, retry)

    def _flush_due(self) -> bool | None:
        """True: commit now. False: not yet, a timer is needed. None: no batch.

        A batch is due at ``batch_max`` messages, or once it is ``batch_interval_s`` old unless
        a backlog waits (``_BACKLOG`` messages already received, as when a restart drains the
        broker's queue): then it keeps growing up to ``batch_max`` or 5 intervals, so one
        transaction covers hundreds of messages while catching up.
        """
        started = self._batch_started
        if started is None:
            return None
        if len(self._acks) >= self.config.store.batch_max:
            return True
        age = time.perf_counter() - started
        interval = self.config.store.batch_interval_s
        if age < interval:
            return False
        return self.bridge.pending_messages() < _BACKLOG or age >= 5 * interval

    async def _maybe_flush(self) -> None:
        due = self._flush_due()
        if due and len(self._acks) < self.config.store.batch_max:
            # paho hands over what one socket read gave: one loop turn lets the reader run, so
            # the backlog count includes what is already in the socket
            await asyncio.sleep(0)
            due = self._flush_due()
        if due and self._off_loop:
            if len(self._acks) >= 4 * self.config.store.batch_max:
                await self.flush()  # commits fall behind: receiving waits (bounded batch)
            elif not self._lane.locked():
                self._spawn_flush()
            # else the flush under way looks again when it ends
        elif due:
            await self.flush()
        elif due is False:
            self._arm_timer()

    def _arm_timer(self) -> None:
        if self._flush_timer is not None or self._batch_started is None:
            return
        interval = self.config.store.batch_interval_s
        age = time.perf_counter() - self._batch_started
        delay = max(interval - age, interval / 4)
        self._flush_timer = asyncio.get_running_loop().call_later(delay, self._timer_flush)

    def _timer_flush(self) -> None:
        self._flush_timer = None
        due = self._flush_due()
        if due:
            task = asyncio.ensure_future(self.flush())
            self._timer_tasks.add(task)
            task.add_done_callback(self._timer_tasks.discard)
        elif due is False:
            self._arm_timer()

    # --- incoming --------------------------------------------------------------------------------

    def _on_drained(self) -> None:
        for dev_eui in self.commands.devices_waiting():
            self.kick(dev_eui)

    async def _on_connect(self) -> None:
        # downlinks that waited for the connection, and states not published while offline
        for dev_eui in self.commands.devices_waiting():
            self.kick(dev_eui)

    async def _on_message(self, message: aiomqtt.Message, generation: int) -> None:
        if self._store_lost:
            # the store went away and is not back: nothing can be checked or staged. Held
            # unacknowledged (the broker's in-flight window bounds how many) until it is.
            self._parked.append((message, generation))
            self._arm_retry()
            return
        burst = [message]
        if self.fleet is not None:
            # several instances: the messages already waiting are taken with this one, so their
            # devices are claimed in one round trip (_claim_burst) instead of one each
            room = min(_BURST, self.config.store.batch_max - len(self._acks))
            burst += self.bridge.take_waiting(generation, room - 1)
        received = time.perf_counter()  # the burst's: when the first of it was taken
        async with self._flush_lock:
            if self.fleet is not None:
                await self._claim_burst(burst)
            for each in burst:
                topic = each.topic.value
                payload = each.payload
                if isinstance(payload, str):
                    raw = payload.encode()
                elif isinstance(payload, bytes | bytearray):
                    raw = bytes(payload)
                else:
                    raw = b"" if payload is None else str(payload).encode()
                if not await self._process_retrying(topic, raw, retained=each.retain):
                    # stopping with the store away: unacknowledged, the broker keeps it and
                    # what came after it (acks are in receive order)
                    return
                if self._batch_started is None:
                    self._batch_started = received
                # acked with the batch that holds its effects, never with an earlier one
                is_uplink = topic.endswith("/event/up")
                self._acks.append((generation, each.mid, each.qos, received, is_uplink))
        await self._maybe_flush()

    async def _claim_burst(self, burst: list[aiomqtt.Message]) -> None:
        """Claim, in one round trip, the devices the messages of ``burst`` will claim one by
        one in :meth:`_claim_for` (their devEUIs are in the topics), and read again in one
        more those another instance changed. Only a head start: a device held elsewhere is
        left to :meth:`_claim_for` (commit, then wait for it alone). A store error here sets
        ``store_ok`` False at once; :meth:`_process_retrying` then retries each message.
        A burst of one costs what :meth:`_claim_for` would."""
        assert self.fleet is not None
        wanted: list[str] = []
        unheard: list[str] = []
        keys: list[tuple[str, str]] = []
        for each in burst:
            topic = each.topic.value
            dev_eui = self.publisher.set_dev_eui(topic)
            if dev_eui is None:
                try:
                    _, dev_eui, kind = cs.parse_topic(topic)
                except InvalidEvent:
                    continue  # a dead letter: nothing to claim
                dev_eui = dev_eui.lower()
                device = self.devices.get(dev_eui)
                if kind == "up" and device is not None and device.kind == "lamp":
                    wanted += [d for d in device.neighbours if d in self.devices]
                if kind == "up" and (
                    device is None or (device.last_f_cnt is None and not never_heard(device))
                ):
                    # joined but no uplink yet: its frame counter proves nothing, so _on_up
                    # asks the store for its dedup key and its stored frame; both are read with
                    # the claim. A device never heard needs neither unless the claim finds
                    # another instance heard it: then _on_up reads
                    unheard.append(dev_eui)
                    key = _uplink_key(each.payload)
                    if key is not None:
                        keys.append((dev_eui, key))
            elif dev_eui not in self.devices:
                continue  # _on_set claims only a known device
            wanted.append(dev_eui)
        store = self.fleet.store
        try:
            changed, _ = await store.claim_devices(wanted, unheard=unheard, keys=keys)
            if changed:
                devices, commands = await store.load_devices_claimed(changed)
        except StoreError as exc:
            # noticed now, not after the first message's own claim waits for the pool too
            self._store_unreachable(exc)
            return
        if not changed:
            return
        for device in devices:
            self.adopt_device(device, commands.pop(device.dev_eui, []))
        for dev_eui, active in commands.items():  # no row: its commands alone
            self.commands.replace_device(dev_eui, active)

    async def _process_retrying(self, topic: str, raw: bytes, *, retained: bool) -> bool:
        """:meth:`process`, again while the store cannot be read (a PostgreSQL restart): the
        message waits unacknowledged, and the broker's in-flight window holds the rest. False:
        not processed (a stop was asked meanwhile)."""
        delay = 0.1
        while True:
            try:
                await self.process(topic, raw, retained=retained)
                return True
            except StoreError as exc:
                self._store_unreachable(exc)
            except Exception as exc:  # invariant 2: the gateway never stops on bad input
                self.log.exception("processing failed", extra={"topic": topic})
                self._dead_letter(topic, raw, f"internal error: {type(exc).__name__}: {exc}", "")
                return True
            if self._stopping.is_set():
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _store_unreachable(self, exc: StoreError) -> None:
        """A read or claim failed: ``store_ok`` False (``/readyz`` 503), counted, and logged
        once per 100 failures (no log flood)."""
        if self._store_failures % 100 == 0 or self.store_ok:
            self.log.error("store unreachable; retrying", extra={"error": str(exc)})
        self.store_ok = False
        self._store_failures += 1
        self.metrics.store_failures.inc()

    async def flush_staged(self, stage: Callable[[], None]) -> None:
        """``stage()`` (which stages writes that change no device) committed before this
        returns. The multicast manager's group commands go through here
        (gateway/multicast.py)."""

        async def make() -> None:
            stage()

        await self.refuse_unless_committing()
        await self._made_committed(make, "change")
        self.require_committed()

    async def process_committed(self, topic: str, raw: bytes) -> None:
        """Process one event that came outside MQTT (OS2iot's HTTP push, gateway/os2iot.py) and
        commit it before the caller answers: nothing sends it again. A store that cannot
        commit leaves ``store_ok`` False."""
        await self._made_committed(lambda: self.process(topic, raw), "event")

    async def _made_committed(self, make: Callable[[], Awaitable[None]], what: str) -> None:
        """``make()`` then a flush, again when the store refused a batch meanwhile (several
        instances; the batch may have held what ``make`` staged, and was dropped whole): the
        dedup key keeps an event once, a staged row is written over. :class:`StoreConflict`
        (503) after ``API_ATTEMPTS``."""
        for _ in range(API_ATTEMPTS):
            refused = self.refused_batches
            await make()
            await self.flush()
            if self.refused_batches == refused:
                return
        raise StoreConflict(f"the store refused this {what} {API_ATTEMPTS} times")

    async def process(self, topic: str, raw: bytes, *, retained: bool = False) -> None:
        """Process one MQTT message (staged; :meth:`flush` commits)."""
        set_dev = self.publisher.set_dev_eui(topic)
        if set_dev is not None:
            if self.config.publish.accept_set:  # off by default (gateway/setcommand.py)
                if self.fleet is not None and set_dev in self.devices:
                    await self.claim(set_dev)
                self._on_set(topic, set_dev, raw, retained=retained)
            return
        limit = self.config.mqtt.max_event_bytes
        if len(raw) > limit:
            self._count("invalid_event")
            self._dead_letter(topic, raw[:limit], f"event of {len(raw)} bytes > {limit}", "")
            return
        try:
            event = cs.parse_event(topic, raw, marshaler=self.config.mqtt.marshaler)  # type: ignore[arg-type]
        except InvalidEvent as exc:
            self._count("invalid_event")
            self._dead_letter(topic, raw, f"invalid event: {exc}", getattr(exc, "dev_eui", ""))
            return
        if self.fleet is not None:
            await self._claim_for(event)
        counter = self._m_events.get(event.event)
        if counter is None:
            counter = self._m_events[event.event] = self.metrics.events.labels(event.event)
        counter.inc()
        if isinstance(event, _CORE_EVENTS):
            await self._apply_event(topic, raw, event)
        elif isinstance(event, cs.TxAckEvent):
            self._command_changed(await self.commands.on_txack(event))
        elif isinstance(event, cs.AckEvent):
            self._command_changed(await self.commands.on_ack(event))
        elif isinstance(event, cs.LogEvent):
            await self._on_log(event)
        # IntegrationEvent: removed from ChirpStack in v4.15.0; counted, nothing to do

    def _dead_letter(self, topic: str, raw: bytes, reason: str, dev_eui: str) -> None:
        self.store.stage_dead_letter(DeadLetter(self.clock(), topic, raw, reason, dev_eui))
        self.log.warning("dead letter", extra={"topic": topic, "reason": reason[:200]})

    async def _apply_event(self, topic: str, raw: bytes, event: cs.Event) -> None:
        """An uplink, join, status or location event: the store reads the core needs, the core
        (gateway/fleet/core.py, no I/O), then its effects; the command and FUOTA parts stay here."""
        core = self.core
        reads = core.reads(event)
        seen = bool(reads.key) and await self.store.seen(reads.key)
        stored = None
        if reads.f_cnt is not None and not seen:
            stored = await self.store.f_cnt_payload(*reads.f_cnt)
        fx = core.apply(event, Known(self.clock(), seen, stored), topic=topic, raw=raw)
        device = fx.device
        if fx.command_result is not None and self.multicast is not None:
            assert device is not None
            # a group command submitted by another instance or before a restart (multicast.py)
            await self.multicast.ensure_known(device.dev_eui, fx.command_result)
        self._carry_out(fx)
        if device is None:
            return
        if fx.fuota is not None and self.fuota is not None:
            assert isinstance(event, cs.UplinkEvent)  # only an uplink carries FUOTA answers
            self.fuota.on_commands(device.dev_eui, fx.fuota, event.f_port, event.data)
        if fx.firmware is not None and self.fuota is not None:
            self.fuota.on_version(device.dev_eui, fx.firmware)
        if fx.command_result is not None:
            fields = fx.command_result
            # a group command's member first (gateway/multicast.py: its ids avoid active ones)
            grouped = self.multicast.on_result(device.dev_eui, fields) if self.multicast else None
            command = (
                None if grouped is not None else self.commands.on_result(device.dev_eui, fields)
            )
            self._command_changed(command)
            state = None if command is None else command.state
            self._carry_out(core.result_answered(device, fields, state, self.clock()))
        if fx.joined is not None:
            requeued = self.commands.on_join(device.dev_eui)
            self._emit(device, "device_joined", {"dev_addr": fx.joined, "requeued": requeued})
            self.kick(device.dev_eui)
        if fx.message is not None and self.commands.has_waiting(device.dev_eui):
            self.kick(device.dev_eui)

    def _relay_fuota(self, dev_eui: str, f_port: int, data: bytes) -> None:
        """A FUOTA answer heard while another instance leads the campaigns: a ``fuota_answer``
        event, committed with this batch, that the leader's change feed hands to its engine
        (gateway/fuota_campaign.py module docstring, gateway/fleet_sync.py)."""
        device = self.devices.get(dev_eui)
        if device is not None:
            self._emit(device, "fuota_answer", {"f_port": f_port, "data": data.hex()})

    def _carry_out(self, fx: Effects) -> None:
        """Do what the core said (gateway/fleet/effects.py): the only place its effects reach the
        device map, the cached twins, the store's staged rows, the metrics and the events."""
        if fx.new_device is not None:
            self.devices[fx.new_device.dev_eui] = fx.new_device
            self.core.registered(was_auto=True)
        for device, change in fx.changes.values():
            change.apply(device)
        self._dirty_state |= fx.dirty
        self._dirty_availability |= fx.availability
        if fx.gauge:
            self.update_device_gauge()
        store = self.store
        for key in fx.seen:
            store.stage_seen(key)
        for letter in fx.dead_letters:
            store.stage_dead_letter(letter)
            if fx.rejected is None:  # refused unknown devices are counted, not logged each
                self.log.warning(
                    "dead letter", extra={"topic": letter.topic, "reason": letter.reason[:200]}
                )
        if fx.uplink is not None:
            store.stage_uplink(fx.uplink)
        for record in fx.events:
            self._emit_record(record)
        for planned in fx.commands:
            self._plan(planned)
        if fx.outcome is not None:
            self._count(fx.outcome)
        if fx.rejected is not None:
            self._tally.inc(self.metrics.unknown_rejected.labels(fx.rejected))

    def _count(self, outcome: str) -> None:
        """Count a message's outcome with its batch (citypack_uplinks_total, at commit)."""
        counter = self._m_outcomes.get(outcome)
        if counter is None:
            counter = self._m_outcomes[outcome] = self.metrics.uplinks.labels(outcome)
        self._tally.inc(counter)

    def _plan(self, planned: PlannedCommand) -> None:
        target = self.devices.get(planned.dev_eui)
        if target is None or target.decommissioned_at is not None:
            return
        if planned.message in CONFIG_MESSAGES and any(
            c.message == planned.message for c in self.commands.for_device(target.dev_eui)
        ):
            return  # one config push at a time; the result (or expiry) decides the next
        try:
            command = self.commands.submit(
                target,
                planned.message,
                planned.fields,
                confirmed=planned.confirmed,
                source="rule",
                expires_in_s=planned.expires_in_s,
            )
        except CommandError as exc:
            self.log.warning(
                "rule command refused",
                extra={"dev_eui": target.dev_eui, "command": planned.message, "error": str(exc)},
            )
            return
        self._dirty_state.add(target.dev_eui)
        self._command_changed(command)

    def _emit(self, device: Device, type_: str, data: dict[str, Any]) -> None:
        self._emit_record(
            EventRecord(type=type_, dev_eui=device.dev_eui, at=self.clock(), data=data)
        )

    def _emit_record(self, record: EventRecord) -> None:
        self.store.stage_event(record)
        self._events.append(record)
        self._tally.inc(self.metrics.derived_events.labels(record.type))
        self._dirty_state.add(record.dev_eui)

    def _command_changed(self, command: CommandRecord | None) -> None:
        if command is None:
            return
        device = self.devices.get(command.dev_eui)
        if device is not None:
            self._emit(
                device,
                f"command_{command.state}",
                {
                    "id": command.id,
                    "message": command.message,
                    "command_id": command.command_id,
                    "error": command.error,
                },
            )
        self.kick(command.dev_eui)

    async def _on_log(self, event: cs.LogEvent) -> None:
        command = await self.commands.on_log(event)
        if command is not None:
            self._command_changed(command)
            return
        device = self.devices.get(event.dev_eui)
        if device is not None and event.level in ("WARNING", "ERROR"):
            self._emit(
                device,
                "chirpstack_log",
                {"level": event.level, "code": event.code, "description": event.description},
            )

    def _on_set(self, topic: str, dev_eui: str, raw: bytes, *, retained: bool) -> None:
        """``citypack/devices/{devEui}/set`` (checks: gateway/setcommand.py)."""
        if not raw:
            return  # a zero-length message clears a retained one (ours, see below): not a command
        try:
            if retained:
                # never applied: it would be applied again at every restart; cleared
                self.outbox.send(topic, b"", 1, True)
                raise InvalidSet("retained set messages are ignored (and cleared)")
            request = parse_set(raw, max_bytes=self.config.mqtt.max_event_bytes)
            self.submit_command(
                dev_eui, request.message, request.fields, confirmed=request.confirmed, source="mqtt"
            )
        except (InvalidSet, CommandError, TypeError, ProtocolError) as exc:
            self.log.warning("set refused", extra={"dev_eui": dev_eui, "error": str(exc)[:200]})
            self.publisher.event(
                EventRecord("command_rejected", dev_eui, self.clock(), {"error": str(exc)[:500]})
            )

    # --- commands --------------------------------------------------------------------------------

    def submit_command(
        self,
        dev_eui: str,
        message: str,
        fields: dict[str, Any],
        *,
        confirmed: bool | None = None,
        source: str = "api",
    ) -> CommandRecord:
        device = self.devices.get(dev_eui.lower())
        if device is None:
            from gateway.errors import UnknownDevice

            raise UnknownDevice(f"device {dev_eui} is not registered", dev_eui=dev_eui)
        command = self.commands.submit(device, message, fields, confirmed=confirmed, source=source)
        self._dirty_state.add(device.dev_eui)
        self.kick(device.dev_eui)
        return command

    async def submit_command_async(
        self,
        dev_eui: str,
        message: str,
        fields: dict[str, Any],
        *,
        confirmed: bool | None = None,
        source: str = "api",
    ) -> CommandRecord:
        """:meth:`submit_command` committed before the API answers (:meth:`change_committed`;
        with several instances the device is claimed first)."""
        return await self.change_committed(
            dev_eui,
            lambda: self.submit_command(
                dev_eui, message, fields, confirmed=confirmed, source=source
            ),
        )

    async def upsert_device_async(
        self, dev_eui: str, values: dict[str, Any], *, batched: bool = False
    ) -> Device:
        """:meth:`upsert_device` committed before the API answers (:meth:`change_committed`).
        ``batched`` (a bulk import, one instance): only staged; the caller calls
        :meth:`refuse_unless_committing` before the first, flushes once for all of them and
        calls :meth:`require_committed`."""
        if batched and self.fleet is None:  # the caller refused first (refuse_unless_committing)
            return self.upsert_device(dev_eui, values)
        return await self.change_committed(dev_eui, lambda: self.upsert_device(dev_eui, values))

    def refuse_while_failing(self) -> None:
        """An API change is refused before it is made while the store cannot commit (the last
        commit failed: a full disk, a database that is away): 503 ``store_unavailable``.
        Made and staged, it would be committed later behind a 503, when the client may have
        sent it again."""
        if not self.store_ok:
            raise StoreError("the store cannot commit now")

    async def refuse_unless_committing(self) -> None:
        """:meth:`refuse_while_failing` after committing what waits, so a store that has just
        failed is known before a change is made, not after it is staged."""
        await self._flush()
        self.refuse_while_failing()

    def require_committed(self, what: str = "change") -> None:
        """After the flush that was to commit an API change: :class:`NotCommitted` when that
        commit failed (the store fell over between the last good commit and this one). The
        change stays staged and is committed when the store commits again."""
        if not self.store_ok:
            raise NotCommitted(
                f"this {what} is not committed: the store failed as it was committed; it is "
                "kept and committed when the store recovers, unless this gateway stops first. "
                "Check whether it is there before sending it again"
            )

    async def change_committed(
        self, dev_eui: str, change: Callable[[], _T], *, refuse_failing: bool = True
    ) -> _T:
        """``change()`` (which stages changes to ``dev_eui`` and its commands) made and
        committed before the API answers: with several instances through :meth:`_committed_on`
        (claimed first, made again when the store refuses its batch); one instance: made, then
        flushed. ``change`` reads the device and its commands from this instance's maps, as a
        claim or a refused batch may have read them again. While the store fails it is not
        made (:meth:`refuse_while_failing`), unless ``refuse_failing`` is False: a change that
        records what already happened elsewhere (a command ChirpStack's queue gave back) is
        kept whatever the store does, and committed when it can be."""
        if self.fleet is None:
            if refuse_failing:
                await self.refuse_unless_committing()
            result = change()
            await self.flush()
            self.require_committed()
            return result
        return await self._committed_on(dev_eui, change, refuse_failing=refuse_failing)

    async def _committed_on(
        self, dev_eui: str, change: Callable[[], _T], *, refuse_failing: bool = True
    ) -> _T:
        """Several instances: ``change()`` made with ``dev_eui`` claimed, committed (and the
        device released) at once, before the API answers. A batch the store refuses is dropped
        whole (:meth:`_abandon_batch`: another instance held one of its other devices), and
        this change with it: it is made again on the copies read back, so no answer stands for
        a change that was dropped. :class:`StoreConflict` (503) after ``API_ATTEMPTS``."""
        for _ in range(API_ATTEMPTS):
            async with self._flush_lock:
                await self.claim(dev_eui.lower())
                try:
                    if refuse_failing:
                        self.refuse_while_failing()  # the flush below releases the claim
                    result = change()
                finally:
                    committed = await self._flush_locked()
            if committed:
                self.require_committed()
                return result
        raise StoreConflict(f"the store refused this change {API_ATTEMPTS} times")

    async def catch_up(self) -> None:
        """Several instances: read the devices another instance changed that this one's copies
        do not have yet (gateway/fleet_sync.py), before an API answer or the maintenance reads
        them. One instance: nothing to do."""
        if self.fleet is not None:
            await self.fleet.catch_up()

    def kick(self, dev_eui: str) -> None:
        self._kicked.add(dev_eui)
        self._kick.set()

    async def _dispatcher(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            await self.bridge.connected.wait()
            kicked, self._kicked = self._kicked, set()
            for index, dev_eui in enumerate(sorted(kicked)):
                try:
                    await self._dispatch_one(dev_eui)
                except StoreError as exc:  # the database is away (several instances): later
                    self.log.warning("dispatch waits for the store", extra={"error": str(exc)})
                    self._kicked.update(sorted(kicked)[index:])
                    await asyncio.sleep(1.0)
                    self._kick.set()
                    break

    async def _lead_dispatch(self) -> None:
        """The dispatcher on the instance that holds the ``dispatch`` job: first whatever waits
        (another instance may have died holding it, maybe mid-publish). The active commands
        are read again first: this instance's copies are as fresh as its change feed, which
        may not have read the previous holder's last commit (gateway/commands.py ``refresh``)."""
        async with self._flush_lock:
            await self._flush_locked()  # our own staged changes are in the store first
            self.commands.refresh(await self.store.active_commands())
            await self.commands.recheck_handovers()
            await self._flush_locked()  # the reads' transaction ends; nothing is held
        for dev_eui in self.commands.devices_waiting():
            self.kick(dev_eui)
        await self._dispatcher()

    async def _dispatch_one(self, dev_eui: str) -> None:
        if self.fleet is None:
            await self._dispatch_device(dev_eui)
            return
        async with self._flush_lock:  # the device is claimed until its state is committed
            await self.claim(dev_eui)
            await self._dispatch_device(dev_eui)
            await self._flush_locked()  # never leave a device held with no batch to commit it

    async def _dispatch_device(self, dev_eui: str) -> None:
        # several instances: _dispatch_one holds the flush lock (and the device) already
        commit = self._flush_locked if self.fleet is not None else self.flush
        command = self.commands.next_to_send(dev_eui)
        expired = False
        while command is not None and self.commands.expire_unsent(command):
            # worth sending no more (a rule's lighting-ahead override that waited past its
            # hold, gateway/rules/lamps.py): not handed to ChirpStack, the next one goes
            self._command_changed(command)
            expired = True
            command = self.commands.next_to_send(dev_eui)
        if command is None:
            if expired:
                await commit()
            return
        if self.commands.is_republish(command) and not self.bridge.backlog_drained():
            # the first copy's fate may be in the broker's backlog (ChirpStack may have sent or
            # refused and deleted it, which frees its id): published again only once that
            # backlog is processed (the bridge kicks the waiting devices then)
            return
        device = self.devices.get(dev_eui)
        application_id = (device.application_id if device else "") or (
            self.config.mqtt.application_id
        )
        if not application_id and self.os2iot is None:
            return  # the topic needs the application: sent once the device has been heard
        if not self.commands.check_size(command, device):
            self._command_changed(command)
            await commit()
            return
        if self.os2iot is not None:  # through OS2iot's API (gateway/os2iot.py)
            await self._dispatch_os2iot(command, commit)
            return
        _, payload = cs.build_downlink(
            dev_eui=dev_eui,
            f_port=command.f_port,
            data=command.data,
            confirmed=command.confirmed,
            command_uuid=command.id,
            expires_at=command.expires_at,
            marshaler=self.config.mqtt.marshaler,  # type: ignore[arg-type]
        )
        # Handed over from the moment the publish starts, and committed before it does: the
        # broker may forward it before our PUBACK arrives, and a restart must still see it as
        # in ChirpStack's queue, never as replaceable (invariant 4; gateway/commands.py).
        self.commands.mark_published(command)
        await commit()
        # not committed, or the store refused the batch and the command was read again
        if not self.store_ok or command.published_at is None:
            self.commands.unmark_published(command)
            self._kicked.add(dev_eui)  # retried on the next kick, once the store commits
            return
        if command.state != "queued":  # expired or answered while the commit waited
            self.commands.publish_finished(command, delivered=True)
            return
        try:
            await self.bridge.publish_downlink(cs.command_topic(application_id, dev_eui), payload)
        except aiomqtt.MqttError as exc:
            self.commands.publish_finished(command, delivered=False)
            self.log.warning("downlink publish failed", extra={"id": command.id, "error": str(exc)})
            self._kicked.add(dev_eui)  # published again, same id, after the reconnect
            return
        self.commands.publish_finished(command, delivered=True)
        self.log.info(
            "downlink queued at chirpstack",
            extra={"id": command.id, "dev_eui": dev_eui, "command": command.message},
        )
        await commit()  # the PUBACK on record: a restart does not publish it again

    async def send_raw_downlink(self, dev_eui: str, f_port: int, data: bytes) -> None:
        """A FUOTA setup downlink (ports 200-202), unconfirmed, straight to ChirpStack's queue:
        outside the command queue as ChirpStack's FUOTA server enqueues it; the campaign engine
        sends one at a time per device and waits for its answer (gateway/fuota_campaign.py)."""
        device = self.devices.get(dev_eui)
        application_id = (device.application_id if device else "") or (
            self.config.mqtt.application_id
        )
        _, payload = cs.build_downlink(
            dev_eui=dev_eui,
            f_port=f_port,
            data=data,
            confirmed=False,
            expires_at=self.clock() + 600.0,
            marshaler=self.config.mqtt.marshaler,  # type: ignore[arg-type]
        )
        await self.bridge.publish_downlink(cs.command_topic(application_id, dev_eui), payload)

    async def _dispatch_os2iot(
        self, command: CommandRecord, commit: Callable[[], Awaitable[object]]
    ) -> None:
        """As for MQTT: handed over (and committed) before OS2iot is called. OS2iot enqueues in
        ChirpStack before it answers 201, and its 500 means nothing was enqueued, so a refusal
        un-marks the command; a command handed over before a restart is looked for in OS2iot's
        queue first, since OS2iot has no queue-item id to refuse a second copy with."""
        assert self.os2iot is not None
        if self.os2iot.waiting_for_retry(command.dev_eui):
            return
        handed_before = command.published_at is not None
        self.commands.mark_published(command)
        await commit()
        # not committed, or the store refused the batch and the command was read again (as
        # stored: not handed over), as for MQTT (_dispatch_device)
        if not self.store_ok or command.published_at is None:
            self.commands.unmark_published(command)
            self._kicked.add(command.dev_eui)
            return
        if command.state != "queued":  # expired or answered while the commit waited
            self.commands.publish_finished(command, delivered=True)
            return
        if await self.os2iot.dispatch(command, look_first=handed_before):
            self.commands.publish_finished(command, delivered=True)
        else:
            self.commands.unmark_published(command)  # not in ChirpStack's queue: retried
        await commit()

    # --- maintenance -----------------------------------------------------------------------------

    async def _maintenance(self) -> None:
        interval = min(
            self.config.commands.check_interval_s,
            self.config.availability.check_interval_s,
        )
        last_prune = 0.0
        settled = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            await self.catch_up()  # availability reads last_seen of every device
            await self.tick_async()
            now = self.clock()
            if now - last_prune > 3600:
                last_prune = now
                history_days = self.config.store.retention_days
                try:
                    removed = await self.store.prune(
                        now - history_days * 86400, now - min(history_days, 7.0) * 86400
                    )
                except StoreError as exc:  # a locked or full store must not stop the service
                    self.log.error("retention failed; will retry", extra={"error": str(exc)})
                    last_prune = 0.0
                    removed = 0
                if removed:
                    self.log.info("retention", extra={"removed": removed})
            if time.monotonic() - settled >= heap.EVERY_S:  # open() settled it first
                settled = time.monotonic()
                took = heap.settle(len(self.devices))
                if took is not None:
                    self.log.info("heap settled", extra={"seconds": round(took, 3)})
            await self.flush()

    def tick(self) -> None:
        """Expire commands and check availability now (tests call it; the maintenance task runs
        :meth:`tick_async`, which yields to the event loop between chunks of devices)."""
        for command in self.commands.expire():
            self._command_changed(command)
        self._check_availability(list(self.devices.values()), self.clock())
        self.refresh_device_gauge()

    async def tick_async(self, chunk: int = 2000) -> None:
        for command in self.commands.expire():
            self._command_changed(command)
        devices = list(self.devices.values())
        now = self.clock()
        async for part in in_turns(devices, chunk):  # 100,000 must not stall the uplinks
            self._check_availability(part, now)
        await self.refresh_device_gauge_async(chunk)

    def _check_availability(self, devices: Iterable[Device], now: float) -> None:
        self._carry_out(self.core.check_availability(devices, now))

    def update_device_gauge(self) -> None:
        """Mark the ``citypack_devices`` gauge stale; it is recomputed when read (scrape, stats,
        maintenance), not once per uplink."""
        self._gauge_stale = True

    def refresh_device_gauge(self) -> None:
        if not self._gauge_stale:
            return
        self._gauge_stale = False
        counts: dict[tuple[str, str], int] = {}
        _count_devices(self.devices.values(), counts)
        self._set_device_gauge(counts)

    async def refresh_device_gauge_async(self, chunk: int = 2000) -> None:
        """:meth:`refresh_device_gauge`, yielding to the event loop between chunks of devices:
        at 100,000 devices one pass over them all holds the loop 17-50 ms on this 2-core
        machine, which the maintenance task (every 5 s) and each scrape of ``/metrics`` added
        to the uplinks waiting behind it (issue 17's p99). A device changed meanwhile marks the
        gauge stale again, so the next read counts anew."""
        if not self._gauge_stale:
            return
        self._gauge_stale = False
        counts: dict[tuple[str, str], int] = {}
        async for part in in_turns(list(self.devices.values()), chunk):
            _count_devices(part, counts)
        self._set_device_gauge(counts)

    def _set_device_gauge(self, counts: dict[tuple[str, str], int]) -> None:
        self.metrics.devices.clear()
        for (kind, availability), count in counts.items():
            self.metrics.devices.labels(kind, availability).set(count)

    # --- registry --------------------------------------------------------------------------------

    def upsert_device(self, dev_eui: str, values: dict[str, Any]) -> Device:
        dev_eui = dev_eui.lower()
        now = self.clock()
        device = self.devices.get(dev_eui)
        if device is None:
            device = Device(dev_eui=dev_eui, created_at=now)
            self.devices[dev_eui] = device
        elif not device.registered:
            self.core.registered(was_auto=False)  # registered now: room for another unknown one
        for key, value in values.items():
            setattr(device, key, value)
        device.registered = True
        device.updated_at = now
        self._dirty_state.add(dev_eui)
        self.update_device_gauge()
        return device

    # --- operator verbs (gateway/lifecycle.py) ----------------------------------------------------

    def emit(self, device: Device, type_: str, data: dict[str, Any]) -> None:
        """Stage a derived event for ``device`` (published after the next commit)."""
        self._emit(device, type_, data)

    def command_changed(self, command: CommandRecord) -> None:
        """A command changed state outside the event path: emit ``command_<state>``."""
        self._command_changed(command)
