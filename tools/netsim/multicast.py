"""Multicast groups, as ChirpStack v4 keeps and schedules them (class C).

Sources: chirpstack ``storage/multicast.rs`` (groups, members, the queue), ``downlink/multicast.rs``
(one frame per queue item), ``uplink``'s ``txack.rs`` (the item is deleted on the gateway's TX
ack, an error included); LoRaWAN L2 1.0.4 §4 and TS004-1.0.0 (remote multicast setup) §3 for
the frame: an unconfirmed data down with the group's McAddr as DevAddr and the group's own
32-bit FCnt, FRMPayload encrypted with McAppSKey and the MIC computed with McNwkSKey exactly as
a unicast downlink; FCtrl is all zero (no ADR, ACK, FPending or FOpts in multicast).

Enqueue (``multicast.rs enqueue``): the item goes to the group's gateways: the ones added to
the group, or else the smallest set of gateways that heard the members' last uplinks (ChirpStack
takes a minimum spanning tree of a gateway/device graph; here a greedy set cover, which gives
the same sets on ChirpStack's own test cases); one queue item per gateway, all with the group's
current FCnt, which is then incremented and returned. Class C DELAY scheduling: the first item
is due now, or ``multicast_class_c_margin`` after the latest one already queued for the group,
and the items of one enqueue are spaced by that margin per gateway so they do not collide. A
group whose members were never heard gets no item, yet its FCnt still advances (as ChirpStack).

Scheduling (``downlink/scheduler.rs``): a due item is sent ``imme`` on the group's frequency
and data rate; it is locked for two scheduler intervals so an unanswered gateway gets it again;
an item larger than the data rate's N, or past ``expires_at``, is deleted with a warning.
Class B and GPS-time scheduling are not emulated: such groups are refused at creation.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from protocol.lorawan.data import DataFrame
from protocol.lorawan.keys import DevAddr
from protocol.lorawan.mhdr import MType
from tools.netsim import region
from tools.netsim.config import NetsimConfig, NetsimError
from tools.netsim.state import DeviceState

__all__ = [
    "McGroup",
    "McQueueItem",
    "MulticastExists",
    "MulticastGroups",
    "MulticastNotFound",
    "build_multicast_frame",
    "minimum_gateway_set",
]

log = logging.getLogger("citypack.netsim")

_LOW_HZ, _HIGH_HZ = 863_000_000, 870_000_000  # EU868 band (RP002-1.0.4 §2.2.2)


class MulticastNotFound(NetsimError):
    """An unknown multicast group, device or membership (gRPC NOT_FOUND)."""


class MulticastExists(NetsimError):
    """A device that already is a member (gRPC ALREADY_EXISTS, a unique-key violation)."""


@dataclass
class McGroup:
    """A class C multicast group (``storage/multicast.rs MulticastGroup``)."""

    id: str
    name: str
    application_id: str
    mc_addr: int
    mc_nwk_s_key: bytes = field(repr=False)
    mc_app_s_key: bytes = field(repr=False)
    f_cnt: int
    dr: int
    frequency_hz: int
    created_at: datetime
    updated_at: datetime
    devices: set[str] = field(default_factory=set)
    gateways: set[str] = field(default_factory=set)


@dataclass
class McQueueItem:
    """One frame for one gateway (``storage/multicast.rs MulticastGroupQueueItem``)."""

    id: str
    group_id: str
    gateway_id: str
    f_cnt: int
    f_port: int
    data: bytes
    expires_at: datetime | None
    scheduler_run_after: float  # event-loop time


def check_group(group: McGroup) -> None:
    """Refuse what the emulator cannot transmit (raises :class:`NetsimError`)."""
    if not 0 <= group.mc_addr <= 0xFFFFFFFF:
        raise NetsimError("mc_addr must be 4 bytes")
    for name, key in (("mc_nwk_s_key", group.mc_nwk_s_key), ("mc_app_s_key", group.mc_app_s_key)):
        if len(key) != 16:
            raise NetsimError(f"{name} must be 16 bytes (32 hex digits)")
    if not 0 <= group.dr <= region.MAX_DR:
        raise NetsimError(f"dr must be 0..{region.MAX_DR} in EU868, got {group.dr}")
    if not _LOW_HZ <= group.frequency_hz <= _HIGH_HZ:
        raise NetsimError(f"frequency {group.frequency_hz} Hz is outside the EU868 band")
    if not 0 <= group.f_cnt <= 0xFFFFFFFF:
        raise NetsimError("f_cnt is a 32-bit counter")


def minimum_gateway_set(heard_by: Mapping[str, set[str]]) -> list[str]:
    """Gateways covering every device in ``heard_by`` (device → gateways that heard it):
    greedily the gateway covering most uncovered devices, ties by gateway id."""
    uncovered = {dev for dev, gateways in heard_by.items() if gateways}
    chosen: list[str] = []
    while uncovered:
        counts: dict[str, int] = {}
        for dev in uncovered:
            for gateway in heard_by[dev]:
                counts[gateway] = counts.get(gateway, 0) + 1
        best = min(counts, key=lambda g: (-counts[g], g))
        chosen.append(best)
        uncovered = {dev for dev in uncovered if best not in heard_by[dev]}
    return sorted(chosen)


def build_multicast_frame(group: McGroup, item: McQueueItem) -> bytes:
    """The PHYPayload of a multicast downlink (TS004-1.0.0 §3, L2 §4.3-§4.4)."""
    return DataFrame.build(
        mtype=MType.UNCONFIRMED_DATA_DOWN,
        dev_addr=DevAddr(group.mc_addr),
        fcnt=item.f_cnt,
        nwk_s_key=group.mc_nwk_s_key,
        app_s_key=group.mc_app_s_key,
        fport=item.f_port,
        payload=item.data,
    ).to_bytes()


class MulticastGroups:
    """The groups of one application, their members and their queue."""

    def __init__(self, config: NetsimConfig, devices: Mapping[str, DeviceState]) -> None:
        self.config = config
        self._devices = devices
        self._groups: dict[str, McGroup] = {}
        self._queue: list[McQueueItem] = []  # in creation order

    # -- groups ------------------------------------------------------------------------------
    def create(self, group: McGroup) -> str:
        check_group(group)
        self._groups[group.id] = group
        return group.id

    def get(self, group_id: str) -> McGroup:
        group = self._groups.get(group_id)
        if group is None:
            raise MulticastNotFound(f"Object does not exist (id: {group_id})")
        return group

    def update(self, group: McGroup) -> None:
        old = self.get(group.id)
        check_group(group)
        group.devices, group.gateways, group.created_at = old.devices, old.gateways, old.created_at
        self._groups[group.id] = group

    def delete(self, group_id: str) -> None:
        self.get(group_id)
        del self._groups[group_id]
        self.flush(group_id)

    def groups(self) -> list[McGroup]:
        return sorted(self._groups.values(), key=lambda g: (g.name, g.id))

    def add_device(self, group_id: str, dev_eui: str) -> None:
        group = self.get(group_id)
        if dev_eui not in self._devices:
            raise MulticastNotFound(f"Object does not exist (id: {dev_eui})")
        if dev_eui in group.devices:
            raise MulticastExists(f"Object already exists (id: {dev_eui})")
        group.devices.add(dev_eui)

    def remove_device(self, group_id: str, dev_eui: str) -> None:
        group = self.get(group_id)
        if dev_eui not in group.devices:
            raise MulticastNotFound(f"multicast-group: {group_id}, device: {dev_eui}")
        group.devices.discard(dev_eui)

    def add_gateway(self, group_id: str, gateway_id: str) -> None:
        self.get(group_id).gateways.add(gateway_id.lower())

    def remove_gateway(self, group_id: str, gateway_id: str) -> None:
        group = self.get(group_id)
        if gateway_id.lower() not in group.gateways:
            raise MulticastNotFound(f"multicast-group: {group_id}, gateway: {gateway_id}")
        group.gateways.discard(gateway_id.lower())

    # -- the queue ---------------------------------------------------------------------------
    def enqueue(
        self, group_id: str, f_port: int, data: bytes, expires_at: datetime | None, now: float
    ) -> int:
        """Queue one payload for the group; returns the FCnt it will be sent with."""
        group = self.get(group_id)
        if not 1 <= f_port <= 224:
            # L2 §4.3.2: 1..223 application, 224 test; 0 and 225..255 are not application ports
            raise NetsimError(f"f_port must be 1..224, got {f_port}")
        gateways = sorted(group.gateways)
        if not gateways:
            heard_by = {
                dev: {c.gateway_id for c in self._devices[dev].last_rx}
                for dev in group.devices
                if dev in self._devices
            }
            gateways = minimum_gateway_set(heard_by)
        if not gateways:
            log.warning(
                "netsim: multicast group %s: no gateway heard its devices; FCnt %d not sent",
                group_id,
                group.f_cnt,
            )
        queued = [i.scheduler_run_after for i in self._queue if i.group_id == group_id]
        margin = self.config.multicast_class_c_margin_s
        run_after = max(queued) + margin if queued else now
        f_cnt = group.f_cnt
        for gateway_id in gateways:
            self._queue.append(
                McQueueItem(
                    id=str(uuid.uuid4()),
                    group_id=group_id,
                    gateway_id=gateway_id,
                    f_cnt=f_cnt,
                    f_port=f_port,
                    data=bytes(data),
                    expires_at=expires_at,
                    scheduler_run_after=run_after,
                )
            )
            run_after += margin  # spaced per gateway to avoid collisions (multicast.rs)
        group.f_cnt = (f_cnt + 1) & 0xFFFFFFFF
        return f_cnt

    def flush(self, group_id: str) -> None:
        self._queue = [i for i in self._queue if i.group_id != group_id]

    def queue(self, group_id: str) -> list[McQueueItem]:
        self.get(group_id)
        return [i for i in self._queue if i.group_id == group_id]

    def delete_item(self, item: McQueueItem) -> None:
        if item in self._queue:
            self._queue.remove(item)

    def due(self, now: float, wall: datetime) -> tuple[list[McQueueItem], float | None]:
        """Items to send now (each locked for two scheduler intervals) and the next due time.
        Expired and oversized items are deleted here with a warning."""
        due: list[McQueueItem] = []
        next_at: float | None = None
        for item in list(self._queue):
            if item.scheduler_run_after > now:
                next_at = min(next_at or item.scheduler_run_after, item.scheduler_run_after)
                continue
            group = self._groups[item.group_id]
            if item.expires_at is not None and item.expires_at <= wall:
                log.warning("netsim: multicast item %s expired: deleted", item.id)
                self._queue.remove(item)
                continue
            if len(item.data) > region.max_payload(group.dr):
                log.warning(
                    "netsim: multicast item %s exceeds the max. payload of DR%d: deleted",
                    item.id,
                    group.dr,
                )
                self._queue.remove(item)
                continue
            item.scheduler_run_after = now + 2 * self.config.scheduler_interval_s
            due.append(item)
        return due, next_at
