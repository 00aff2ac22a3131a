"""The synchronous fleet core: ``apply(event, known) -> Effects``, with no I/O (issue 16 item 1).

ARCHITECTURE.md "Layout": the core holds the registry (the in-memory device map the service
loads and keeps), the config, and the rule table; :mod:`gateway.service` keeps the I/O. For each
ChirpStack event the service:

1. asks :meth:`FleetCore.reads` which store reads the event needs (:class:`Reads`: whether its
   dedup key is seen, the payload stored for its (devEui, devAddr, fCnt)), and makes them: only
   for an uplink that is not *fresh* (an fCnt above the committed one in the same session), an
   unknown device, a join or a status with a ``deduplicationId``;
2. calls :meth:`FleetCore.apply` with the answers (:class:`Known`, with the receive time), which
   never awaits and never writes anything: not the devices, not the store, not a metric;
3. carries out the :class:`Effects` it returns: rows to stage (seen keys, the uplink's history
   row, dead letters), derived events, planned commands, twin changes (applied to the cached
   :class:`~gateway.store.Device`, :meth:`gateway.rules.TwinChange.apply`), the metrics outcome.

Because apply never suspends, a store whose reads suspend (PostgreSQL) does not split the
processing of a message, and exactly-once is testable without asyncio
(tests/gateway/test_fleet_core.py).

Modules: :mod:`gateway.fleet.core` (:class:`FleetCore`), :mod:`gateway.fleet.effects` (what goes
in and out: :class:`Reads`, :class:`Known`, :class:`Effects`), :mod:`gateway.fleet.table` (the
rule table).

Rules are pure functions chosen from :data:`RULES`, keyed by message name; each returns an
:class:`~gateway.rules.Outcome` whose events and commands count only while the device is in
service (a decommissioned device keeps its history only, gateway/lifecycle.py) and whose twin
change is kept either way.

Decisions:

- **Unknown devices are kept**, not dead-lettered: an uplink from a devEui that is not in the
  registry auto-registers it as kind ``unknown`` (``registered: false``), stores its history and
  raises a ``device_discovered`` event; a ``device_info`` uplink fills in its kind. Provisioning
  lags the field in practice, and nothing from the air is dropped (invariant 2). Up to
  ``[fleet] max_auto_registered`` of them: past it (or with ``auto_register`` off) an unknown
  device's events are dead letters (``unknown_device_cap`` / ``unknown_device``), counted in
  ``citypack_unknown_devices_rejected_total`` (20,000 made-up DevEUIs must not fill memory and
  the broker's retained topics).
- **fPort 0** (MAC-only) uplinks count as ``processed`` and refresh availability and signal
  quality, but store no history and run no rules.
- Undecodable payloads (bad CBOR, unknown fPort, out-of-range values, larger than
  :data:`protocol.codec.MAX_PAYLOAD`) are dead letters: the raw MQTT
  topic and payload with the reason, counted as ``undecodable``.

What stays in the service, and why:

- the command manager (gateway/commands.py): it owns the command queue, its ids and its store
  rows, and ChirpStack's ``txack``/``ack``/``log`` events are its own. The core plans commands
  (:attr:`Effects.commands`); the service submits them (one config push at a time) and
  answers a join (:attr:`Effects.joined`: requeue, then ``device_joined``) and a
  ``command_result`` (:attr:`Effects.command_result`: the multicast manager or the command
  manager says which command it answers; the config version it carries then counts through
  :meth:`FleetCore.result_answered`, unless the command was refused);
- the FUOTA campaign engine and the multicast manager (gateway/fuota_campaign.py,
  gateway/multicast.py): waiters, downlinks and store reads. The core decodes a FUOTA answer
  (:func:`gateway.fuota_campaign.decode_uplink`, pure) and hands the commands over
  (:attr:`Effects.fuota`), and a ``device_info``'s firmware version (:attr:`Effects.firmware`);
- the device map and the auto-registered count are written by the service only (a new device
  from :attr:`Effects.new_device`, :meth:`FleetCore.registered`).
"""

from gateway.fleet.core import FleetCore, uplink_key
from gateway.fleet.effects import Effects, Known, Reads
from gateway.fleet.table import RULES, RuleInput

__all__ = ["RULES", "Effects", "FleetCore", "Known", "Reads", "RuleInput", "uplink_key"]
