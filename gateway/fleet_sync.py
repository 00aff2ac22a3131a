"""What one gateway instance does beside its own work when other instances share its store
(PostgreSQL; gateway/README.md "Running several instances", ARCHITECTURE.md "Scale").

- **Once-per-fleet jobs** (:meth:`FleetSync.lead`): command dispatch to ChirpStack's queue and
  maintenance (command expiry, availability checks, retention) run on the instance holding the
  job's advisory lock, taken over within seconds when it dies
  (:class:`gateway.store.pg_coordination.Leadership`). Rule-planned commands (profile pushes,
  neighbour boosts) are planned while an uplink is processed, which happens once per uplink
  across the fleet (dedup keys in the database), and handed to ChirpStack by the dispatcher.
- **Change feed** (:meth:`FleetSync.feed`): on every ``NOTIFY`` of another instance's commit
  (and each second without one; at most every :data:`FEED_GAP_S`, the notifications of the
  gap answered by one read) the devices whose ``version`` moved are read again, with their
  active commands, and replace this instance's cached copies, so its API, dashboard and
  dispatcher see what the others did. At once: a device this instance does not know, and one
  with an active command (the dispatcher must see it). Every other one is *lagging*: read
  when this instance's API is asked anything (:meth:`FleetSync.catch_up`, gateway/api/deps.py),
  before its maintenance runs, and otherwise :data:`CATCH_UP_S` after it lagged; while a
  dashboard page is open (its live stream), every changed device at once. Processing
  never needs the feed (a claim reads a device again when its version moved,
  gateway/store/postgres.py); reading every device another instance changed at once cost
  each instance about a sixth of its loop per other instance. Events the others processed go
  to this instance's live
  stream (not to MQTT: the instance that processed them published them); a ``fuota_answer``
  among them goes to this instance's campaign engine when it leads the ``fuota`` job
  (gateway/fuota_campaign.py).
- **Fleet view** (:meth:`FleetSync.instances`): every instance writes a heartbeat row every
  :data:`HEARTBEAT_S`; one whose last heartbeat is older than :data:`UP_WITHIN_S` counts as down,
  and one silent for :data:`FORGET_AFTER_S` is deleted by the next heartbeat of any instance (a
  client id that was retired, a host that never came back), so the view does not grow with
  every instance that ever ran. A day: long enough that an operator sees a dead instance as
  down; a client id that comes back later simply appears again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gateway.commands import by_device
from gateway.errors import StoreError
from gateway.store.base import CommandRecord, Device, EventRecord
from gateway.store.pg_coordination import Leadership, listen
from gateway.store.postgres import PostgresStore, connect_kwargs

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = [
    "CATCH_UP_S",
    "FEED_GAP_S",
    "FORGET_AFTER_S",
    "HEARTBEAT_S",
    "READ_CHUNK",
    "UP_WITHIN_S",
    "FleetSync",
]

HEARTBEAT_S = 2.0
# the change feed reads at most this often: another instance commits a batch every few ms while
# it drains a backlog, and each read re-reads the devices that batch changed
FEED_GAP_S = 0.1
# a lagging device (module docstring) is read at the latest this long after it lagged (plus
# the feed's one-second poll) when nothing asked for it sooner
CATCH_UP_S = 2.0
READ_CHUNK = 2000  # devices read and taken at once (FleetSync._read)
UP_WITHIN_S = 10.0
FORGET_AFTER_S = 86_400.0


class FleetSync:
    def __init__(self, gateway: Gateway, store: PostgresStore, *, logger: logging.Logger) -> None:
        self.gateway = gateway
        self.store = store
        self.log = logger
        self.kwargs = connect_kwargs(store.password_file)
        self.leaders: dict[str, Leadership] = {}
        self.started_at = time.time()
        self.host = socket.gethostname()
        self._xmin: int | None = None
        self._failures = 0
        # devices seen changed while this instance's own batch held them: read again next time
        # (the feed has moved past their transaction)
        self._deferred: set[str] = set()
        # devices another instance changed, not read yet (module docstring): devEUI -> version
        self._lagging: dict[str, int] = {}
        self._lag_due = 0.0  # time.monotonic() by which the lagging ones are read

    def lead(self, job: str, body: Callable[[], Awaitable[None]]) -> Coroutine[Any, Any, None]:
        """Run ``body`` while this instance holds ``job`` (forever)."""
        leadership = Leadership(self.store.url, self.kwargs, job, logger=self.log)
        self.leaders[job] = leadership
        return leadership.run(body)

    def leading(self) -> list[str]:
        return sorted(job for job, leader in self.leaders.items() if leader.held.is_set())

    async def feed(self) -> None:
        store = self.store
        await listen(store.url, self.kwargs, self.on_changes, logger=self.log,
                     own_tag=store.notify_tag, min_gap_s=FEED_GAP_S)  # fmt: skip

    async def on_changes(self) -> None:
        store = self.store
        try:
            xmin, versions, events = await store.changes(self._xmin)
        except StoreError as exc:
            self._failed(exc)
            return
        # the events first: changes() returns each once, whatever happens to the reads below
        self._relay(events)
        try:
            known = self.gateway.devices
            held = self.gateway.commands.has_active
            watched = self.gateway.publisher.watched()  # a live page is open: all at once
            stale = set(self._deferred)
            if not self._lagging:
                self._lag_due = time.monotonic() + CATCH_UP_S
            for dev_eui, version, active in versions:
                if (store.version_of(dev_eui) or 0) >= version:
                    continue
                if watched or active or held(dev_eui) or dev_eui not in known:
                    stale.add(dev_eui)  # the dispatcher needs it, or the registry lacks it
                else:
                    self._lagging[dev_eui] = version
            if self._lagging and time.monotonic() >= self._lag_due:
                stale.update(self._still_lagging())
            await self._read(sorted(stale))
        except StoreError as exc:
            self._failed(exc)
            return
        self._failures = 0
        self._xmin = xmin

    def _failed(self, exc: StoreError) -> None:
        self._failures += 1
        if self._failures in (1, 10) or self._failures % 100 == 0:
            self.log.warning("change feed read failed", extra={"error": str(exc)})

    def _relay(self, events: list[EventRecord]) -> None:
        """Events other instances committed: to this instance's live stream, and a node's
        answer to its campaign engine when it leads the ``fuota`` job (fuota_campaign.py)."""
        if not events:
            return
        fuota = self.gateway.fuota
        if fuota is not None and fuota.leading:
            for event in events:
                if event.type == "fuota_answer":
                    try:
                        data = bytes.fromhex(str(event.data.get("data", "")))
                        f_port = int(event.data.get("f_port", 0))
                    except (TypeError, ValueError):
                        continue
                    fuota.on_relayed(event.dev_eui, f_port, data)
        self.gateway.publisher.heard_elsewhere(events, ())

    async def catch_up(self) -> None:
        """Read the lagging devices now (module docstring): before an API answer or the
        maintenance reads this instance's copies. A store error leaves them lagging."""
        if not self._lagging:
            return
        try:
            await self._read(self._still_lagging())
        except StoreError as exc:
            self.log.debug("catching up failed", extra={"error": str(exc)})

    async def _read(self, stale: list[str]) -> None:
        """Read ``stale`` (with their active commands) and take them as this instance's copies,
        :data:`READ_CHUNK` at a time: the flush lock is held while a chunk is taken, and a
        catch-up after a busy hour of another instance's can name most of the fleet."""
        for first in range(0, len(stale), READ_CHUNK):
            chunk = stale[first : first + READ_CHUNK]
            lagging = {d: self._lagging[d] for d in chunk if d in self._lagging}
            loaded, commands = await self.store.reload(chunk)
            changed = await self._adopt(loaded, commands, lagging)
            if changed:
                self.gateway.publisher.heard_elsewhere((), changed)

    def _still_lagging(self) -> list[str]:
        """The lagging devices, less those this instance has had since at their lagging
        version or later (dropped unread): a claim reads a device another instance changed
        (gateway/store/postgres.py ``claim_devices``), and processing it commits a newer one.
        Under load most of the devices one instance lags behind on, the next uplinks bring to
        it; reading them again was a second read of each."""
        version_of = self.store.version_of
        for dev_eui, version in list(self._lagging.items()):
            if (version_of(dev_eui) or 0) >= version:
                del self._lagging[dev_eui]
        return sorted(self._lagging)

    def lagging(self) -> int:
        """How many devices another instance changed that this one has not read yet."""
        return len(self._lagging)

    async def _adopt(
        self,
        loaded: list[tuple[Device, int]],
        commands: list[CommandRecord],
        lagging: dict[str, int],
    ) -> list[Device]:
        """Take the devices read as this instance's copies (those ``lagging`` named are no
        longer lagging at the versions read); the cached devices that changed."""
        store = self.store
        grouped = by_device(commands)
        changed = []
        async with self.gateway.flush_lock:  # no commit of ours is half-way through
            for dev_eui, version in lagging.items():
                if self._lagging.get(dev_eui) == version:  # read, as of this version or later
                    del self._lagging[dev_eui]
            for device, version in loaded:
                dev_eui = device.dev_eui
                # this instance's open batch holds it (its claim checks the version), or this
                # instance already has this version or a newer one (it committed it itself)
                if store.busy(dev_eui):
                    self._deferred.add(dev_eui)
                    continue
                self._deferred.discard(dev_eui)
                if (store.version_of(dev_eui) or 0) >= version:
                    continue
                cached = self.gateway.adopt_device(device, grouped.get(dev_eui, []))
                store.note_version(cached, version)
                changed.append(cached)
        return changed

    async def heartbeat(self) -> None:
        client_id = self.gateway.config.mqtt.client_id
        while True:
            try:
                await self.store.heartbeat(
                    client_id,
                    self.host,
                    self.started_at,
                    forget_before=time.time() - FORGET_AFTER_S,
                )
            except StoreError as exc:
                self.log.debug("heartbeat failed", extra={"error": str(exc)})
            await asyncio.sleep(HEARTBEAT_S)

    async def instances(self) -> dict[str, Any]:
        """Every instance heard within :data:`FORGET_AFTER_S`, with ``up`` and how many are up."""
        now = time.time()
        rows = await self.store.instances()
        for row in rows:
            row["up"] = now - row["heartbeat_at"] < UP_WITHIN_S
        return {"instances": rows, "up": sum(1 for r in rows if r["up"])}
