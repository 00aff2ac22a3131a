"""The store interface and its records: registry + twin, history, dead letters, events, commands.

ARCHITECTURE.md "gateway/store": SQLite is the embedded default (:mod:`gateway.store.sqlite`);
PostgreSQL (:mod:`gateway.store.postgres`) implements the same :class:`Store` protocol for
several instances on one database (``shared = True``).

The unit of work is a **batch**: the service stages writes (``stage_*``) while it processes
messages and calls :meth:`Store.commit`, which writes everything staged in one transaction. The
MQTT messages behind a batch are acknowledged only after that commit returns (see
:mod:`gateway.service`), which is what makes invariant 3 hold across crashes. Reads see committed
data plus, for dedup (:meth:`Store.seen`), what is staged.
"""

from __future__ import annotations

import json
import operator
import sys
import threading
import time
from array import array
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import msgspec

from gateway.rules import fill_history
from gateway.store.groups import GroupHead, GroupMember, GroupStage

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


def upsert_commands(mark: str) -> str:
    """The commands upsert with ``mark`` as placeholder (``?`` SQLite, ``%s`` psycopg): a
    command's row is written whole each time it changes."""
    marks = ", ".join(mark for _ in COMMAND_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in COMMAND_COLUMNS[1:])
    return (
        f"INSERT INTO commands ({', '.join(COMMAND_COLUMNS)}) VALUES ({marks})"
        f" ON CONFLICT (id) DO UPDATE SET {updates}"
    )


__all__ = [
    "ACTIVE_STATES",
    "COMMAND_STATES",
    "NOT_CANCELLED",
    "TERMINAL_STATES",
    "CommandRecord",
    "DeadLetter",
    "Device",
    "EventRecord",
    "Staged",
    "Store",
    "UplinkRecord",
]

COMMAND_STATES = (
    "queued",
    "sent",
    "acknowledged",
    "applied",
    "failed",
    "expired",
    "replaced",
    "cancelled",
)
# cancelled: an operator took it back before the node got it (gateway/lifecycle.py)
TERMINAL_STATES = frozenset({"applied", "failed", "expired", "replaced", "cancelled"})
ACTIVE_STATES = ("queued", "sent", "acknowledged")


@dataclass(slots=True)
class Device:
    """A registry entry and its twin (reported state, desired config, config versions).

    ``reported``, ``derived`` and ``desired`` are dicts to whoever reads them, but a device
    that is not being processed keeps them packed (:meth:`compact`, :class:`_Packed`)."""

    dev_eui: str
    kind: str = "unknown"  # bin | lamp | unknown (heard before it was registered)
    name: str = ""
    join_eui: str = ""
    latitude: float | None = None
    longitude: float | None = None
    street: str = ""
    group: str = ""
    neighbours: list[str] = field(default_factory=list)
    board: str = ""
    serial: str = ""
    report_interval_s: float | None = None
    application_id: str = ""
    device_class: str = ""
    registered: bool = False  # False while only heard on the air
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    reported: dict[str, Any] = field(default_factory=dict)
    desired: dict[str, Any] = field(default_factory=dict)  # message name -> fields
    desired_version: int | None = None
    reported_version: int | None = None
    last_seen: float | None = None
    last_f_cnt: int | None = None
    last_dev_addr: str = ""
    last_dr: int | None = None
    last_rssi: int | None = None
    last_snr: float | None = None
    availability: str = "unknown"  # online | offline | unknown
    next_command_id: int = 0
    derived: dict[str, Any] = field(default_factory=dict)  # rule state (fill samples, flags)
    decommissioned_at: float | None = None  # set by DELETE /api/v1/devices/{devEui}

    def compact(self) -> None:
        """Pack ``reported``, ``derived``, ``desired`` and ``neighbours`` until next read.

        Why: a dict of a bin's 9-11 fields takes 272-464 bytes, the same values in a tuple
        whose keys tuple all devices of that shape share 120-136, and an empty one nothing
        (issue 17, measured by tools/bench/gateway_throughput_memory.py); at 100,000 devices
        that is tens of MB. The next read of the attribute unpacks it into a dict (a list for
        ``neighbours``) again, in the same order, so the twin and every reader see what they
        saw before (:class:`_Packed`). A bin's fill history in ``derived`` is compact as the
        rules keep it (gateway/rules/fill_history.py).

        Only where no one holds one of these containers to change it later: a change made
        through a reference taken before this call would go to the one packed away, not to
        the device. The service calls it (through :meth:`Staging.stage_device` with the
        encoded twin) when it takes a batch under its flush lock, between messages; rules and
        commands take the dicts and change them within one synchronous call."""
        with _PACKING:
            _UNPACKED.pop(id(self), None)  # packed now: compact_unpacked need not again
            for packed in _PACKED:
                packed.slot.__set__(self, packed.pack(packed.slot.__get__(self)))

    def take(self, other: Device) -> None:
        """Become ``other`` in place (a copy read from the store replaces the cached device,
        whose object others hold): every field as ``other`` holds it, packed ones still
        packed. Reading a packed field unpacks it, so copying field by field through the
        attributes unpacked each one twice (a lamp's or a bin's rule state, 3 us of a read)
        and left the cached device unpacked until its own next batch."""
        with _PACKING:
            _UNPACKED.pop(id(other), None)  # other is dropped: no batch need pack it
            for get, put in _RAW_SLOTS:
                put(self, get(other))

    def registry_doc(self) -> dict[str, Any]:
        """What the store keeps beside the twin (registry, session, rule state)."""
        return {name: getattr(self, name) for name in _REGISTRY_FIELDS}

    def registry_digest(self) -> int:
        """A cheap fingerprint of :meth:`registry_doc` (the store rewrites it only on change)."""
        # the slot as it is: no unpacking for a fingerprint (tuple() of a tuple is itself)
        digest = hash((_REGISTRY_SCALARS(self), tuple(_NEIGHBOURS.slot.__get__(self))))
        return digest & _DIGEST_MASK

    def to_json(self) -> dict[str, Any]:
        return _shown(asdict(self))

    def json_bytes(self) -> bytes:
        """:meth:`to_json` as compact UTF-8 JSON, made without :func:`~dataclasses.asdict`'s
        deep copy and without unpacking what :meth:`compact` packed (a packed field is read
        into a temporary copy, the device keeps its tuple): the dashboard lists the whole
        fleet at once (``GET /api/v1/devices?limit=100000``, gateway/api/devices.py), and at
        100,000 devices ``to_json`` and FastAPI's encoder held the event loop for seconds."""
        return _json_bytes(_shown({name: get(self) for name, get in _JSON_FIELDS}))

    def twin_json(self) -> bytes:
        """:meth:`twin` as the JSON stored and published (compact, UTF-8)."""
        return _TWIN_ENCODER.encode(self.twin())

    def twin(self) -> dict[str, Any]:
        """The retained ``citypack/devices/{devEui}/state`` document."""
        return {
            "dev_eui": self.dev_eui,
            "kind": self.kind,
            "name": self.name,
            "street": self.street,
            "group": self.group,
            "availability": self.availability,
            "last_seen": self.last_seen,
            "reported": self.reported,
            "desired": self.desired,
            "desired_version": self.desired_version,
            "reported_version": self.reported_version,
            "config_in_sync": (
                None
                if self.desired_version is None
                else self.desired_version == self.reported_version
            ),
            "derived": self.derived,
            "signal": {"dr": self.last_dr, "rssi": self.last_rssi, "snr": self.last_snr},
        }


# A packed dict is (*values, keys): the keys tuple last and shared by every dict with the same
# keys in the same order, so zip(keys, packed) pairs each key with its value. A packed list is
# a tuple. Empty ones are one shared object each.
_EMPTY_DICT: tuple[Any, ...] = ((),)
_SHAPES: dict[tuple[str, ...], tuple[str, ...]] = {}
_SHAPES_MAX = 4096  # distinct key sets shared; past it a packed dict keeps its own (bounded)
# Unpacking stores the new container in the slot. The SQLite writer thread reads devices too
# (the twin of a device staged without one, the registry digest): a read there that unpacked
# and stored at the same time as the loop did would put back a copy without the loop's
# change. Unpacking, packing and setting hold this lock; reading an unpacked one does not.
_PACKING = threading.Lock()
# Devices unpacked since the last batch, by whatever read them: the processing, and also the
# API or the dashboard reading the whole fleet (a collection list reads every bin's derived),
# which would otherwise keep 100,000 devices unpacked until each reports again.
_UNPACKED: dict[int, Any] = {}


def compact_unpacked() -> int:
    """Pack every device unpacked since the last call (:meth:`Device.compact`, same
    conditions: between messages); how many."""
    with _PACKING:
        devices = list(_UNPACKED.values())
        _UNPACKED.clear()
    for device in devices:
        device.compact()
    return len(devices)


def _pack_dict(value: Any) -> Any:
    if type(value) is not dict:
        return value  # packed already
    if not value:
        return _EMPTY_DICT
    keys = tuple(value)
    shared = _SHAPES.get(keys)
    if shared is None and len(_SHAPES) < _SHAPES_MAX:
        shared = _SHAPES[keys] = keys
    return (*value.values(), shared or keys)


def _unpack_dict(value: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(value[-1], value, strict=False))


def _pack_list(value: Any) -> Any:
    return tuple(value) if type(value) is list else value  # () is one object: the empty one


class _Packed:
    """The attribute of a field :meth:`Device.compact` packs: reading it unpacks the tuple
    once and keeps what it made, so changes made to what a read returned stay on the device.
    Wraps the slot dataclass made for the field (``slot``)."""

    __slots__ = ("pack", "slot", "unpack")

    def __init__(self, slot: Any, pack: Any, unpack: Any) -> None:
        self.slot, self.pack, self.unpack = slot, pack, unpack

    def __get__(self, device: Any, owner: Any = None) -> Any:
        if device is None:
            return self
        value = self.slot.__get__(device, owner)
        if type(value) is tuple:
            with _PACKING:
                value = self.slot.__get__(device, owner)
                if type(value) is tuple:  # not unpacked by another thread meanwhile
                    value = self.unpack(value)
                    self.slot.__set__(device, value)
                    _UNPACKED[id(device)] = device  # packed again at the next batch
        return value

    def __set__(self, device: Any, value: Any) -> None:
        with _PACKING:
            self.slot.__set__(device, value)


# the slot descriptors dataclass made for these fields, behind _Packed from here on
_NEIGHBOURS = _Packed(Device.__dict__["neighbours"], _pack_list, list)
_PACKED = (
    *(_Packed(Device.__dict__[n], _pack_dict, _unpack_dict) for n in ("reported", "desired")),
    _Packed(Device.__dict__["derived"], _pack_dict, _unpack_dict),
    _NEIGHBOURS,
)
for _packed in _PACKED:
    setattr(Device, _packed.slot.__name__, _packed)
# every field's slot as dataclass made it (for a packed one, the slot behind its _Packed):
# its getter and setter
_RAW_SLOTS = tuple(
    (slot.__get__, slot.__set__)
    for slot in (
        getattr(Device.__dict__[name], "slot", Device.__dict__[name])
        for name in Device.__slots__  # type: ignore[attr-defined]
    )
)


def _shown(doc: dict[str, Any]) -> dict[str, Any]:
    """A device's fields (``doc``, its own copy) as the API shows them, in place: rule scratch
    state (``_samples`` of the fill forecast...) is kept in the twin, not shown, and whether
    the node runs the config it was sent is added."""
    doc["derived"] = {k: v for k, v in doc["derived"].items() if not k.startswith("_")}
    desired = doc["desired_version"]
    doc["config_in_sync"] = None if desired is None else desired == doc["reported_version"]
    return doc


def _unpacked_copy(slot_get: Any, unpack: Any) -> Any:
    """A getter of a packed field's value that leaves the device as it is: the tuple is
    unpacked into a copy for the caller (:meth:`Device.json_bytes`)."""

    def get(device: Device) -> Any:
        value = slot_get(device)
        return unpack(value) if type(value) is tuple else value

    return get


# (name, getter) of every field in to_json's order (the dataclass's): packed ones read as copies
_JSON_FIELDS = tuple(
    (
        f.name,
        _unpacked_copy(packed.slot.__get__, packed.unpack)
        if isinstance(packed := Device.__dict__[f.name], _Packed)
        else operator.attrgetter(f.name),
    )
    for f in fields(Device)
)


def _json_value(value: Any) -> Any:
    """What JSON cannot hold as it is: a packed fill history as its points, else ``str``."""
    if isinstance(value, array | fill_history.Packed):
        return fill_history.plain(value)
    return str(value)


# msgspec: 15 instead of 38 us for a bin's twin here (the profile put twins at 10 %, issue 17)
_TWIN_ENCODER = msgspec.json.Encoder(enc_hook=_json_value)
_ESCAPING_JSON = json.JSONEncoder(separators=(",", ":"), default=_json_value)
_DECODE = msgspec.json.Decoder().decode


def json_dumps(value: Any) -> str:
    """The compact JSON text of a stored document (a registry document, an uplink's fields, an
    event's data, a command's fields), about 7 times faster than ``json`` (a registry document:
    1.0 against 7.0 us; at 100,000 devices every first uplink writes one, issue 17). It reads
    back (:func:`json_loads`) as the standard library's ``json.dumps(value, default=str)``
    does, except that text stays UTF-8 instead of ``\\u`` escapes, and a float NaN or infinity,
    which JSON has no words for, is ``null`` (decoded fields are finite: protocol/codec.py
    takes no floats off the air). A lone surrogate, which UTF-8 cannot hold and msgspec
    refuses, goes through ``json`` as an escape, as before, so no text fails a commit."""
    return _json_bytes(value).decode()


def _json_bytes(value: Any) -> bytes:
    """:func:`json_dumps` as UTF-8 bytes (what :meth:`Device.json_bytes` answers with)."""
    try:
        return _TWIN_ENCODER.encode(value)
    except UnicodeEncodeError:  # a lone surrogate: escaped, so the text is ASCII
        return _ESCAPING_JSON.encode(value).encode()


def json_loads(text: str | bytes) -> Any:
    """``json.loads`` of a stored document, about 5 times faster (a bin's twin: 1.0 against
    5.0 us): msgspec, and ``json.loads`` for what msgspec refuses and the standard library
    reads (``NaN``, which stores written before :func:`json_dumps` may hold; a number out of range;
    a lone surrogate), so the result is the same. Every device another instance changed is
    read again (gateway/fleet_sync.py), and a SQLite start reads the whole fleet."""
    try:
        return _DECODE(text)
    except msgspec.DecodeError:
        return json.loads(text)


# Device fields stored outside the twin document (the twin carries the rest, see Device.twin)
_REGISTRY_FIELDS = (
    "name",
    "join_eui",
    "latitude",
    "longitude",
    "street",
    "group",
    "neighbours",
    "board",
    "serial",
    "report_interval_s",
    "application_id",
    "device_class",
    "registered",
    "created_at",
    "updated_at",
    "next_command_id",
    "decommissioned_at",
)


# 60 of the hash's 64 bits: an int of two 30-bit digits, a 32-byte object where the full hash
# takes three digits and 48 bytes (CPython's small-object size classes); the store keeps one a
# device, 1.5 MB less at 100,000 (issue 17). A changed registry goes unwritten only when 60
# bits collide.
_DIGEST_MASK = (1 << 60) - 1
_REGISTRY_SCALARS = operator.attrgetter(*(n for n in _REGISTRY_FIELDS if n != "neighbours"))


def device_from_row(
    dev_eui: str,
    kind: str,
    registry: dict[str, Any],
    twin: dict[str, Any] | None,
    session: tuple[int | None, str | None] = (None, None),
) -> Device:
    """Rebuild a :class:`Device` from its stored registry document, twin document and session
    columns (last fCnt, devAddr)."""
    values = {k: v for k, v in registry.items() if k in _SLOT_NAMES}
    if session[1] is not None:
        values["last_f_cnt"], values["last_dev_addr"] = session
    if twin is not None:
        for key in (
            "availability",
            "last_seen",
            "reported",
            "desired",
            "desired_version",
            "reported_version",
            "derived",
        ):
            if key in twin:
                values[key] = twin[key]
        signal = twin.get("signal") or {}
        values["last_dr"] = signal.get("dr")
        values["last_rssi"] = signal.get("rssi")
        values["last_snr"] = signal.get("snr")
    values.pop("dev_eui", None)
    values.pop("kind", None)
    for key in _SHARED_TEXTS:  # one object per distinct value across the fleet
        text = values.get(key)
        if type(text) is str:
            values[key] = sys.intern(text)
    interval = values.get("report_interval_s")
    if interval is not None and len(_SHARED_NUMBERS) < 1024:  # a few values across a fleet
        # (900 s...), 28 bytes each; keyed with the type: 900 and 900.0 print differently
        values["report_interval_s"] = _SHARED_NUMBERS.setdefault(
            (type(interval), interval), interval
        )
    device = Device(dev_eui=dev_eui, kind=sys.intern(kind), **values)
    device.compact()  # most of a fleet waits for its next report (Device.compact)
    return device


def device_of(row: Any) -> Device:
    """:func:`device_from_row` of a ``devices`` row as both stores select it: devEUI, kind,
    registry JSON, twin JSON (or none), last fCnt, last devAddr (more columns may follow)."""
    twin = json_loads(row[3]) if row[3] else None
    return device_from_row(row[0], row[1], json_loads(row[2]), twin, (row[4], row[5]))


_SLOT_NAMES = frozenset(Device.__slots__)  # type: ignore[attr-defined]
# registry texts that many devices share (a city's application, its streets and boards)
_SHARED_TEXTS = ("application_id", "device_class", "street", "group", "board", "availability")
_SHARED_NUMBERS: dict[tuple[type, float], float] = {}


@dataclass(frozen=True, slots=True)
class UplinkRecord:
    dev_eui: str
    received_at: float
    deduplication_id: str
    time: str
    dev_addr: str
    f_cnt: int
    f_port: int
    dr: int
    frequency: int | None
    rssi: int | None
    snr: float | None
    gateways: int
    message: str
    fields: dict[str, Any]
    data: bytes

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["data"] = self.data.hex()
        return doc

    def row(self) -> tuple[Any, ...]:
        """The ``uplinks`` row in both stores' column order (``fields`` as compact JSON)."""
        return (
            self.dev_eui,
            self.received_at,
            self.deduplication_id,
            self.time,
            self.dev_addr,
            self.f_cnt,
            self.f_port,
            self.dr,
            self.frequency,
            self.rssi,
            self.snr,
            self.gateways,
            self.message,
            json_dumps(self.fields),
            self.data,
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: float
    topic: str
    payload: bytes
    reason: str
    dev_eui: str = ""
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at,
            "topic": self.topic,
            "payload_hex": self.payload.hex(),
            "reason": self.reason,
            "dev_eui": self.dev_eui,
        }


@dataclass(frozen=True, slots=True)
class EventRecord:
    type: str
    dev_eui: str
    at: float
    data: dict[str, Any]
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "dev_eui": self.dev_eui,
            "at": self.at,
            "data": self.data,
        }


@dataclass(slots=True)
class CommandRecord:
    """One command and its lifecycle (ARCHITECTURE.md invariant 4). ``id`` is the ChirpStack
    queue-item UUID we put in the ``DownlinkCommand``."""

    id: str
    dev_eui: str
    message: str
    fields: dict[str, Any]
    command_id: int
    f_port: int
    data: bytes
    confirmed: bool
    state: str = "queued"
    created_at: float = field(default_factory=time.time)
    published_at: float | None = None  # handed to ChirpStack's queue (command/down)
    sent_at: float | None = None  # txack
    acknowledged_at: float | None = None  # ack acknowledged=true
    applied_at: float | None = None  # command_result outcome=applied
    finished_at: float | None = None
    expires_at: float | None = None
    f_cnt_down: int | None = None
    error: str = ""
    replaced_by: str = ""
    source: str = "api"  # api | mqtt | rule

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["data"] = self.data.hex()
        return doc

    @staticmethod
    def from_row(row: dict[str, Any]) -> CommandRecord:
        row = dict(row)
        row["fields"] = json.loads(row["fields"])
        row["confirmed"] = bool(row["confirmed"])
        return CommandRecord(**row)


class Store(Protocol):
    """What the gateway needs from a store (SQLite, PostgreSQL)."""

    shared: bool  # True: other gateway instances may write the same store

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """Whether the store can take a commit now: False when it does not answer, and also
        when its database went away (a deleted or replaced SQLite file) or is read-only, so
        ``/readyz`` says so before anything is lost."""
        ...

    async def reopen(self) -> None:
        """Connect again after a commit raised :class:`~gateway.errors.StoreGone` (SQLite:
        open the path again, a new empty database when the file is gone; PostgreSQL:
        reconnect). What was staged stays staged. The store may now be empty, so the caller
        stages its whole in-memory state again (every device, every active command) before
        the next commit; raises :class:`~gateway.errors.StoreError` while it cannot."""
        ...

    # registry and twin
    async def load_devices(self) -> list[Device]: ...

    def stage_device(self, device: Device, twin_json: str | None = None) -> None:
        """Stage a device for the next commit; ``twin_json`` is its encoded :meth:`Device.twin`
        when the caller already has it (the service encodes it once to store and publish)."""
        ...

    # uplink processing
    async def seen(self, key: str) -> bool:
        """Whether an idempotency key (``up:<deduplicationId>``...) is committed or staged."""
        ...

    def stage_seen(self, key: str) -> None: ...

    async def f_cnt_payload(self, dev_eui: str, dev_addr: str, f_cnt: int) -> bytes | None:
        """The ``data`` (FRMPayload) of the uplink stored (committed or staged) for this device,
        devAddr and fCnt, else None. The same bytes again are a redelivery; other bytes mean the
        node's frame counter was reset (the service keeps them as an ``fcnt_reset`` dead
        letter)."""
        ...

    def stage_uplink(self, uplink: UplinkRecord) -> None: ...

    def stage_dead_letter(self, letter: DeadLetter) -> None: ...

    def stage_event(self, event: EventRecord) -> None: ...

    def stage_command(self, command: CommandRecord) -> None: ...

    def stage_group_command(self, head: GroupHead, members: Iterable[GroupMember] = ()) -> None: ...

    def stage_group_member(self, member: GroupMember) -> None: ...

    async def group_commands(
        self,
        *,
        group: str | None = None,
        command: str | None = None,
        active_at: float | None = None,
        limit: int = 100,
    ) -> list[tuple[GroupHead, list[GroupMember]]]:
        """Group commands with their members (gateway/store/groups.py), newest first."""
        ...

    def staged(self) -> int: ...

    async def commit(self) -> None:
        """Write everything staged in one durable transaction. On any error nothing counts as
        committed and everything stays staged (the caller acknowledges nothing and retries);
        :class:`~gateway.errors.StoreGone` when the transaction may have gone to a database
        that is no longer the store's (then :meth:`reopen`)."""
        ...

    def discard(self) -> None:
        """Drop everything staged (the batch could not be committed and will be redelivered)."""
        ...

    # per-device serialisation between instances (gateway/store/postgres.py)
    async def claim_device(self, dev_eui: str, *, wait: bool = False) -> bool:
        """Hold the device until the next commit; True when another instance changed it since
        this store last read or wrote it. Raises ``DeviceBusy`` when held elsewhere (and not
        ``wait``)."""
        ...

    async def load_device(self, dev_eui: str) -> tuple[Device | None, list[CommandRecord]]:
        """The stored device and its active commands."""
        ...

    # reads
    async def get_command(self, command_id: str) -> CommandRecord | None: ...

    async def active_commands(self) -> list[CommandRecord]: ...

    async def recent_commands(
        self, *, states: tuple[str, ...] | None = None, dev_eui: str | None = None, limit: int
    ) -> list[CommandRecord]:
        """Committed commands, newest first, optionally only in ``states`` / of one device."""
        ...

    async def uplinks(
        self, dev_eui: str, *, limit: int, before_id: int | None
    ) -> list[dict[str, Any]]: ...

    async def events(
        self, *, type: str | None, dev_eui: str | None, since: float | None, limit: int
    ) -> list[EventRecord]: ...

    async def dead_letters(self, *, limit: int) -> list[DeadLetter]: ...

    async def counts(self) -> dict[str, Any]: ...

    async def prune(self, older_than: float, keys_older_than: float | None = None) -> int: ...

    async def save_campaign(
        self, campaign_id: str, state: str, created_at: float, doc: str, bundle: bytes | None
    ) -> None:
        """Write a FUOTA campaign's document now, outside the batch (gateway/fuota_campaign.py);
        ``bundle`` is stored with the first save and kept (None: unchanged). A campaign stored
        as ``cancelled`` stays so: only another ``cancelled`` document replaces it (an operator
        may cancel it through any instance while the leading one still saves its progress)."""
        ...

    async def load_campaigns(self) -> list[tuple[str, bytes]]:
        """Every stored campaign as (document, bundle), oldest first."""
        ...

    async def campaign_states(self) -> list[tuple[str, str]]:
        """Every stored campaign as (id, state), oldest first: what the leading instance polls
        for campaigns created or cancelled through another one."""
        ...


# an upsert's condition that keeps a campaign stored as cancelled (save_campaign)
NOT_CANCELLED = " WHERE fuota_campaigns.state <> 'cancelled' OR excluded.state = 'cancelled'"


@dataclass(slots=True)
class Staged:
    """One batch's staged writes."""

    devices: dict[str, tuple[Device, str | None]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    uplinks: list[UplinkRecord] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    commands: dict[str, CommandRecord] = field(default_factory=dict)
    groups: GroupStage = field(default_factory=GroupStage)  # gateway/store/groups.py
    # (devEui, devAddr, fCnt) -> payload of the first staged uplink with it: the redelivery
    # check looks here for every uplink it cannot prove new, so no scan of a batch of
    # thousands (issue 17: at 100,000 devices most uplinks of a round are such)
    frames: dict[tuple[str, str, int], bytes] = field(default_factory=dict)

    def add_uplink(self, uplink: UplinkRecord) -> None:
        self.uplinks.append(uplink)
        self.frames.setdefault((uplink.dev_eui, uplink.dev_addr, uplink.f_cnt), uplink.data)

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
            frames={**later.frames, **self.frames},  # the earlier batch's first
        )


class Staging:
    """The staging half of both stores (gateway/store/sqlite.py, postgres.py): every write of
    the processing goes into ``_s`` and leaves with the next :meth:`Store.commit`."""

    _s: Staged

    def stage_device(self, device: Device, twin_json: str | None = None) -> None:
        self._s.devices[device.dev_eui] = (device, twin_json)
        if twin_json is not None:
            # the service's batch, taken between messages: the device's dicts, and those of
            # any device read since the last batch, can be packed until their next read
            # (Device.compact)
            device.compact()
            compact_unpacked()

    def stage_seen(self, key: str) -> None:
        self._s.seen.add(key)

    def stage_uplink(self, uplink: UplinkRecord) -> None:
        self._s.add_uplink(uplink)

    def stage_dead_letter(self, letter: DeadLetter) -> None:
        self._s.dead.append(letter)

    def stage_event(self, event: EventRecord) -> None:
        self._s.events.append(event)

    def stage_command(self, command: CommandRecord) -> None:
        self._s.commands[command.id] = command

    def stage_group_command(self, head: GroupHead, members: Iterable[GroupMember] = ()) -> None:
        self._s.groups.add(head, members)

    def stage_group_member(self, member: GroupMember) -> None:
        self._s.groups.add(None, [member])

    def staged(self) -> int:
        return self._s.size()
