"""FUOTA campaigns: a signed bundle to every member of a registry group (issue 18).

The sequence is the one ChirpStack's FUOTA server drives, on citypack's own codecs
(protocol/fuota) and groups (gateway/multicast.py):

1. the ChirpStack multicast group of the registry group, members brought in line;
2. per device, by unicast, one request at a time, each retried ``max_tries`` times:
   TS003 ForceDeviceResyncReq (§4.4; the node's AppTimeReq is answered with AppTimeAns, §4.2,
   so its GPS clock is the gateway's before a session time means anything to it);
   TS004 McGroupSetupReq (§4.3) with the group's McKey encrypted under the device's McKEKey
   (McRootKey from its AppKey as ChirpStack's ``DeviceService.GetKeys`` returns it, TS004
   §3.1.2, protocol/fuota/keys.py); TS005 FragSessionSetupReq (§4.3); TS004
   McClassCSessionReq (§4.4) for one window shared by the whole campaign;
3. once the window is open: every fragment (uncoded, then the annex's coded ones,
   protocol/fuota/fec.py) enqueued once in the group's multicast queue (ChirpStack
   ``MulticastGroupService.Enqueue``), then a FragSessionStatusReq by multicast (TS005 §4.2),
   unicast to those that did not answer; while some still miss fragments, more coded ones
   (``extra_rounds``);
4. a device whose file is complete verifies the signature, stages and switches
   (firmware/lib/fuota/update.py) and restarts: its ``device_info`` with the bundle's version
   is what marks it ``applied``. A node that refuses the bundle says nothing on the air (TS005
   has no answer for it), so a complete file with no new version after ``apply_timeout_s`` is
   ``failed`` with that reason.

Device states: ``pending`` → ``clock_sync`` → ``multicast_setup`` → ``session_setup`` →
``class_c_session`` → ``receiving`` → ``received`` → ``applied``, or ``failed`` (``error`` says
why) or ``cancelled``. The campaign: ``setup`` → ``fragments`` → ``status`` → ``applying`` →
``done`` | ``failed`` | ``cancelled``. Every change is written to the store
(``fuota_campaigns``), and a restarted gateway resumes where it was: done steps are not asked
again, fragments already enqueued are not enqueued again.

Keys: the McKey, AppKeys and McKEKeys stay in memory for the call that needs them; none is in
the campaign document, a log line or the API.

Several instances on one store (gateway/fleet_sync.py): campaigns are driven by the one instance
holding the ``fuota`` job, but the shared subscription hands a node's answers to any instance,
and a load balancer sends API calls anywhere. So, while this engine does not lead:

- an answer it receives is not matched here: an AppTimeReq is answered at once (with this
  instance's clock, TS003 §4.2: the correction must be computed when the request is heard, and
  exactly once), and the uplink is relayed (:attr:`CampaignEngine.relay`: the service records a
  ``fuota_answer`` event, which the change feed brings to the leading instance,
  :meth:`CampaignEngine.on_relayed`); it never saves its copy of a campaign, which is stale;
- the API reads campaigns from the store; a campaign created here is stored and picked up by the
  leading instance's poll (:data:`POLL_S`); one cancelled here is stored ``cancelled``, which no
  later save of the leader overwrites (gateway/store/base.py ``save_campaign``), and the leader's
  poll stops it and flushes the group's queue.

An instance that takes the job over reads every campaign from the store first (the one that
led may have created, advanced or finished some since this one opened).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.config import FuotaConfig, read_secret
from gateway.errors import CampaignRejected, ChirpStackApiError, GatewayError, UnknownGroup
from gateway.multicast import MulticastManager
from gateway.store.base import Device, Store
from protocol.errors import ProtocolError
from protocol.fuota import bundle as fbundle
from protocol.fuota import clocksync, fec, fragmentation, keys, mcsetup
from protocol.fuota._command import Command
from protocol.lorawan.airtime import lora_time_on_air_s
from protocol.lorawan.region import REGIONS

__all__ = ["Campaign", "CampaignEngine", "DeviceProgress", "decode_uplink", "gps_seconds"]

_GPS_EPOCH_UNIX = 315_964_800  # 1980-01-06T00:00:00Z
_LEAP_S = 18  # GPS - UTC since 2017-01-01 (TS003 §4.2 counts GPS seconds)
_FINAL = ("done", "failed", "cancelled")
_DEVICE_FINAL = ("applied", "failed", "cancelled")
_PHY_OVERHEAD = 13  # MHDR 1 + FHDR 7 (no FOpts) + FPort 1 + MIC 4 (L2 §4)
_FRAG_HEADER = 3  # DataFragment: CID + IndexAndN (TS005 §4.5)

_CLOCK_SLACK_S = 60  # a node's TimeToStart later than ours by more: its clock is not ours
_CLOCK_RETRIES = 2  # clock syncs again before such a device fails
POLL_S = 2.0  # the leading instance looks for campaigns created or cancelled elsewhere


def gps_seconds(unix_s: float) -> int:
    return int(unix_s) - _GPS_EPOCH_UNIX + _LEAP_S


@dataclass
class DeviceProgress:
    dev_eui: str
    state: str = "pending"
    clock_synced: bool = False
    multicast_setup: bool = False
    session_setup: bool = False
    class_c_session: bool = False
    fragments_received: int = 0
    fragments_missing: int | None = None
    verified: bool = False
    applied: bool = False
    version: str | None = None  # the last firmware_version the device reported
    error: str = ""
    received_at: float | None = None
    updated_at: float = 0.0


@dataclass
class Campaign:
    id: str
    group: str
    version: str
    from_version: str
    size: int
    frag_size: int
    nb_frag: int  # M, the uncoded fragments
    padding: int
    redundancy: int  # coded fragments planned so far (grows with extra rounds)
    created_at: float
    state: str = "setup"
    updated_at: float = 0.0
    session_time: int | None = None  # GPS seconds the class C window opens
    fragments_sent: int = 0
    airtime_s: float = 0.0
    status_rounds: int = 0
    finished_at: float | None = None
    error: str = ""
    devices: dict[str, DeviceProgress] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.devices.values():
            out[d.state] = out.get(d.state, 0) + 1
        return out

    def to_json(self, *, with_devices: bool = True) -> dict[str, Any]:
        doc = {k: v for k, v in asdict(self).items() if k != "devices"}
        doc["counts"] = self.counts()
        total = len(self.devices) or 1
        done = sum(1 for d in self.devices.values() if d.state in _DEVICE_FINAL)
        doc["progress"] = {
            "devices_done": done,
            "devices": len(self.devices),
            "percent": round(100.0 * done / total, 1),
            "fragments_planned": self.nb_frag + self.redundancy,
        }
        if with_devices:
            doc["devices"] = [asdict(d) for d in sorted(self.devices.values(), key=_eui)]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Campaign:
        devices = {d["dev_eui"]: DeviceProgress(**d) for d in doc.get("devices", [])}
        fields = {k: v for k, v in doc.items() if k not in ("devices", "counts", "progress")}
        return cls(**fields, devices=devices)


def _running(device: Device) -> str | None:
    """The version the device last reported in ``device_info`` (its twin)."""
    version = device.reported.get("firmware_version")
    return version if isinstance(version, str) else None


def _eui(d: DeviceProgress) -> str:
    return d.dev_eui


SendUnicast = Callable[[str, int, bytes], Awaitable[None]]


def decode_uplink(f_port: int, data: bytes) -> list[Command] | None:
    """The TS003/TS004/TS005 commands of an uplink on fPort 202/200/201; None when it does not
    parse (or the port is none of them): the caller keeps it as a dead letter. Pure."""
    decoder = _DECODERS.get(f_port)
    if decoder is None:
        return None
    try:
        return decoder(data)
    except ProtocolError:
        return None


_DECODERS: dict[int, Callable[[bytes], list[Command]]] = {
    clocksync.FPORT: clocksync.decode_uplink,
    mcsetup.FPORT: mcsetup.decode_uplink,
    fragmentation.FPORT: fragmentation.decode_uplink,
}


class CampaignEngine:
    """Runs the campaigns; owned by the gateway service (gateway/service.py)."""

    def __init__(
        self,
        *,
        config: FuotaConfig,
        multicast: MulticastManager,
        store: Store,
        send_unicast: SendUnicast,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.mc = multicast
        self.store = store
        self._send = send_unicast
        self.clock = clock
        self.log = logger or logging.getLogger("citypack.gateway")
        self.public_key = (
            bytes.fromhex(read_secret(config.public_key_file)) if config.public_key_file else None
        )
        self.campaigns: dict[str, Campaign] = {}
        self._bundles: dict[str, bytes] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._helpers: set[asyncio.Task[Any]] = set()
        self._waiters: dict[tuple[str, str], asyncio.Future[Command]] = {}
        self._running = False
        # several instances share the store: set by the service, it records a node's answer
        # for the leading instance while this one does not lead (module docstring)
        self.relay: Callable[[str, int, bytes], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def load(self) -> None:
        """Read the stored campaigns (the service calls this when it opens the store, before
        MQTT, so a backlog delivered at start finds the campaigns its answers belong to)."""
        campaigns: dict[str, Campaign] = {}
        for doc, data in await self.store.load_campaigns():
            campaign = Campaign.from_json(json.loads(doc))
            campaigns[campaign.id] = campaign
            self._bundles[campaign.id] = data
        self.campaigns = campaigns

    @property
    def leading(self) -> bool:
        """This engine drives the campaigns (one instance alone, or the ``fuota`` job's holder)."""
        return self._running

    def _follower(self) -> bool:
        """Another instance may lead: this one's campaigns are copies, the store is the truth."""
        return self.relay is not None and not self._running

    async def refresh(self) -> None:
        """The campaigns as stored, when another instance leads (for the API)."""
        if self._follower():
            await self.load()

    async def run(self) -> None:
        """Resume the unfinished campaigns, run until cancelled."""
        self._running = True
        try:
            if self.relay is not None:
                await self.load()  # the instance that led until now may have changed them
            for campaign in list(self.campaigns.values()):
                if campaign.state not in _FINAL:
                    self.log.info("fuota campaign resumed", extra={"id": campaign.id})
                    self._start(campaign)
            while True:
                await asyncio.sleep(POLL_S)
                if self.relay is not None:
                    await self._poll()
        finally:
            self._running = False
            tasks = [*self._tasks.values(), *self._helpers]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, campaign: Campaign) -> None:
        task = asyncio.create_task(self._drive(campaign), name=f"fuota-{campaign.id[:8]}")
        self._tasks[campaign.id] = task
        campaign_id = campaign.id

        def forget(_task: asyncio.Task[None]) -> None:
            self._tasks.pop(campaign_id, None)

        task.add_done_callback(forget)

    async def _poll(self) -> None:
        """Campaigns created or cancelled through another instance (module docstring)."""
        try:
            states = await self.store.campaign_states()
            if any(cid not in self.campaigns for cid, _ in states):
                for doc, data in await self.store.load_campaigns():
                    new = Campaign.from_json(json.loads(doc))
                    if new.id not in self.campaigns:
                        self.campaigns[new.id] = new
                        self._bundles[new.id] = data
                        if new.state not in _FINAL:
                            self.log.info("fuota campaign taken up", extra={"id": new.id})
                            self._start(new)
        except GatewayError as exc:
            self.log.warning("fuota campaigns not read", extra={"error": str(exc)})
            return
        for cid, state in states:
            known = self.campaigns.get(cid)
            if state == "cancelled" and known is not None and known.state not in _FINAL:
                self.log.info("fuota campaign cancelled elsewhere", extra={"id": cid})
                await self.cancel(cid)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    # -- API -------------------------------------------------------------------------------------
    def check_bundle(self, data: bytes) -> fbundle.Bundle:
        """The parsed bundle, or :class:`CampaignRejected` saying why."""
        if len(data) > self.config.max_bundle_bytes:
            raise CampaignRejected(
                f"bundle is {len(data)} bytes, over fuota.max_bundle_bytes "
                f"({self.config.max_bundle_bytes})",
                reason="bundle_too_large",
            )
        try:
            parsed = fbundle.parse(data)
        except ProtocolError as exc:
            raise CampaignRejected(f"not a valid bundle: {exc}", reason="bad_bundle") from exc
        if self.public_key is not None:
            try:
                Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                    parsed.signature, parsed.signed
                )
            except (InvalidSignature, ValueError) as exc:
                raise CampaignRejected(
                    "the bundle's signature does not verify with fuota.public_key_file",
                    reason="bad_signature",
                ) from exc
        return parsed

    def frag_size(self) -> int:
        if self.config.frag_size:
            return self.config.frag_size
        limit = REGIONS["EU868"].max_frm_payload(self.mc.config.dr) - _FRAG_HEADER
        return min(limit, 239)

    async def create(self, group: str, data: bytes, kind: str | None = None) -> Campaign:
        """A campaign to the registered devices of ``group`` (of ``kind`` when given: a
        street holds bins and lamps, and a bundle is for one firmware)."""
        if not self._running and self.relay is None:
            raise CampaignRejected("the campaign engine is not running", reason="not_running")
        parsed = self.check_bundle(data)
        await self.refresh()  # another instance's running campaigns make devices busy
        members = self.mc.members(group, kind)
        if not members:
            raise UnknownGroup(
                f"no registered {kind or 'device'} has {self.mc.config.group_by} {group!r}"
            )
        busy = {eui for c in self._active() for eui in c.devices}
        taken = sorted(busy & {m.dev_eui for m in members})
        if taken:
            raise CampaignRejected(
                f"{len(taken)} devices are in a running campaign (e.g. {taken[0]})",
                reason="busy",
            )
        size = self.frag_size()
        padded, padding = fec.pad(data, size)
        m = len(padded) // size
        now = self.clock()
        campaign = Campaign(
            id=str(uuid.uuid4()),
            group=group,
            version=parsed.version,
            from_version=parsed.from_version,
            size=len(data),
            frag_size=size,
            nb_frag=m,
            padding=padding,
            redundancy=max(1, -(-m * self.config.redundancy_percent // 100)),
            created_at=now,
            updated_at=now,
            devices={
                d.dev_eui: DeviceProgress(d.dev_eui, version=_running(d), updated_at=now)
                for d in members
            },
        )
        self.campaigns[campaign.id] = campaign
        self._bundles[campaign.id] = data
        await self.store.save_campaign(
            campaign.id, campaign.state, now, json.dumps(campaign.to_json()), data
        )
        self.log.info(
            "fuota campaign created",
            extra={"id": campaign.id, "group": group, "devices": len(members), "m": m},
        )
        if self._running:
            self._start(campaign)  # else the leading instance's poll takes it up
        return campaign

    def get(self, campaign_id: str) -> Campaign | None:
        return self.campaigns.get(campaign_id)

    def all(self) -> list[Campaign]:
        return sorted(self.campaigns.values(), key=lambda c: c.created_at)

    async def cancel(self, campaign_id: str) -> Campaign | None:
        await self.refresh()
        campaign = self.campaigns.get(campaign_id)
        if campaign is None or campaign.state in _FINAL:
            return campaign
        if self._follower():
            # stored as cancelled, which stays; the leading instance's poll stops the campaign
            # and flushes the group's queue
            now = self.clock()
            for d in campaign.devices.values():
                if d.state not in _DEVICE_FINAL:
                    d.state, d.updated_at = "cancelled", now
            campaign.state, campaign.finished_at = "cancelled", now
            await self._save(campaign, force=True)
            return campaign
        task = self._tasks.get(campaign_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        group_id = self.mc.chirpstack_id(campaign.group)
        if group_id is not None:
            with contextlib.suppress(ChirpStackApiError):
                await self.mc.client.flush_queue(group_id)
        now = self.clock()
        for d in campaign.devices.values():
            if d.state not in _DEVICE_FINAL:
                d.state, d.updated_at = "cancelled", now
        campaign.state, campaign.finished_at = "cancelled", now
        await self._save(campaign)
        return campaign

    def _active(self) -> list[Campaign]:
        return [c for c in self.campaigns.values() if c.state not in _FINAL]

    def _campaign_of(self, dev_eui: str) -> tuple[Campaign, DeviceProgress] | None:
        for c in self._active():
            d = c.devices.get(dev_eui)
            if d is not None:
                return c, d
        return None

    async def _save(self, campaign: Campaign, *, force: bool = False) -> None:
        if self._follower() and not force:
            return  # a copy: the leading instance writes the campaign
        campaign.updated_at = self.clock()
        try:
            await self.store.save_campaign(
                campaign.id,
                campaign.state,
                campaign.created_at,
                json.dumps(campaign.to_json()),
                None,
            )
        except GatewayError as exc:  # kept in memory; the next save writes it all
            self.log.warning(
                "fuota campaign not saved", extra={"id": campaign.id, "error": str(exc)}
            )

    # -- uplinks ---------------------------------------------------------------------------------
    def on_uplink(self, dev_eui: str, f_port: int, data: bytes) -> bool:
        """An uplink on fPort 200-202: decoded, answered, matched. False when it does not parse
        (the caller keeps it as a dead letter)."""
        commands = decode_uplink(f_port, data)
        if commands is None:
            return False
        self.on_commands(dev_eui, commands, f_port, data)
        return True

    def on_commands(self, dev_eui: str, commands: list[Command], f_port: int, data: bytes) -> None:
        """The commands of an uplink :func:`decode_uplink` parsed from ``data`` (the fleet core
        decodes it, gateway/fleet/core.py): answered, matched, or relayed to the instance that
        leads the campaigns (module docstring)."""
        follower = self._follower()
        for command in commands:
            if isinstance(command, clocksync.AppTimeReq):
                self._answer_time(dev_eui, command)  # here, once: the correction is ours now
            if not follower:
                self._on_command(dev_eui, command)
        if follower and self.relay is not None:
            self.relay(dev_eui, f_port, data)

    def on_relayed(self, dev_eui: str, f_port: int, data: bytes) -> None:
        """A node's answer another instance received (its ``fuota_answer`` event, brought by
        the change feed, gateway/fleet_sync.py): matched here; an AppTimeReq in it was answered
        there already."""
        if not self._running:
            return
        for command in decode_uplink(f_port, data) or ():
            self._on_command(dev_eui, command)

    def _answer_time(self, dev_eui: str, command: clocksync.AppTimeReq) -> None:
        correction = gps_seconds(self.clock()) - command.device_time
        if command.ans_required or correction != 0:  # TS003 §4.2
            answer = clocksync.AppTimeAns(correction, command.token_req).to_bytes()
            self._spawn(self._send_quietly(dev_eui, clocksync.FPORT, answer))

    def _resolve(self, dev_eui: str, kind: str, command: Command) -> None:
        waiter = self._waiters.get((dev_eui, kind))
        if waiter is not None and not waiter.done():
            waiter.set_result(command)

    def _on_command(self, dev_eui: str, command: Command) -> None:
        if isinstance(command, clocksync.AppTimeReq):
            self._resolve(dev_eui, "time", command)  # answered in on_uplink
        elif isinstance(command, mcsetup.McGroupSetupAns):
            self._resolve(dev_eui, "mcsetup", command)
        elif isinstance(command, mcsetup.McClassCSessionAns):
            self._resolve(dev_eui, "classc", command)
        elif isinstance(command, fragmentation.FragSessionSetupAns):
            self._resolve(dev_eui, "fragsetup", command)
        elif isinstance(command, fragmentation.FragSessionStatusAns):
            found = self._campaign_of(dev_eui)
            if found is not None and command.frag_index == self.config.frag_index:
                campaign, d = found
                self._on_status(campaign, d, command)
                self._spawn(self._save(campaign))
            self._resolve(dev_eui, "status", command)

    def _on_status(
        self, campaign: Campaign, d: DeviceProgress, ans: fragmentation.FragSessionStatusAns
    ) -> None:
        now = self.clock()
        d.fragments_received = ans.nb_frag_received
        d.fragments_missing = ans.missing_frag
        d.updated_at = now
        if ans.not_enough_matrix_memory:
            d.state, d.error = "failed", "the node has not enough memory to decode (TS005 §4.2)"
        elif (
            ans.missing_frag == 0
            # MissingFrag counts gaps below the highest fragment heard (TS005 §4.2, as
            # LoRaMac-node's FragDecoder): a node that heard nothing says 0 as well
            and ans.nb_frag_received >= campaign.nb_frag
            and d.state not in (*_DEVICE_FINAL, "received")
        ):
            d.state, d.received_at = "received", now

    def on_version(self, dev_eui: str, version: str) -> None:
        """A ``device_info``: the version the device runs now."""
        if self._follower():
            return  # the leading instance reads it from the twin (_check_twins)
        found = self._campaign_of(dev_eui)
        if found is None:
            return
        campaign, d = found
        d.version = version
        if version == campaign.version and d.state != "applied":
            # the node restarts into a new set only after its signature and hashes checked out
            # (firmware/lib/fuota/update.py): the new version reported is verified and applied
            d.state, d.verified, d.applied, d.error = "applied", True, True, ""
            d.fragments_missing = 0
        d.updated_at = self.clock()
        self._spawn(self._save(campaign))

    async def _send_quietly(self, dev_eui: str, f_port: int, data: bytes) -> None:
        try:
            await self._send(dev_eui, f_port, data)
        except Exception as exc:
            self.log.warning(
                "fuota downlink not sent", extra={"dev_eui": dev_eui, "error": str(exc)}
            )

    # -- driving a campaign ----------------------------------------------------------------------
    async def _ask(
        self, campaign: Campaign, d: DeviceProgress, kind: str, f_port: int, payload: bytes,
        what: str,
    ) -> Command | None:  # fmt: skip
        """Send ``payload``, wait for its answer, ``max_tries`` times; None: the device failed."""
        loop = asyncio.get_running_loop()
        for _ in range(self.config.max_tries):
            waiter: asyncio.Future[Command] = loop.create_future()
            self._waiters[(d.dev_eui, kind)] = waiter
            try:
                await self._send(d.dev_eui, f_port, payload)
                async with asyncio.timeout(self.config.answer_timeout_s):
                    return await waiter
            except TimeoutError:
                continue
            except (GatewayError, OSError) as exc:
                self.log.warning(
                    "fuota downlink failed", extra={"dev_eui": d.dev_eui, "error": str(exc)}
                )
                await asyncio.sleep(min(self.config.answer_timeout_s, 5.0))
            finally:
                if self._waiters.get((d.dev_eui, kind)) is waiter:
                    del self._waiters[(d.dev_eui, kind)]
        self._fail(d, f"no answer to {what} after {self.config.max_tries} tries")
        await self._save(campaign)
        return None

    def _fail(self, d: DeviceProgress, why: str) -> None:
        d.state, d.error, d.updated_at = "failed", why, self.clock()

    def _live(self, campaign: Campaign) -> list[DeviceProgress]:
        return [d for d in campaign.devices.values() if d.state not in _DEVICE_FINAL]

    async def _drive(self, campaign: Campaign) -> None:
        try:
            await self._drive_steps(campaign)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            campaign.state, campaign.error = "failed", f"{type(exc).__name__}: {exc}"
            campaign.finished_at = self.clock()
            self.log.error("fuota campaign failed", extra={"id": campaign.id, "error": str(exc)})
            await self._save(campaign)

    def _check_twins(self, campaign: Campaign) -> None:
        """Versions the twins hold (a ``device_info`` may have come while no campaign task
        ran, e.g. in the backlog of a restart)."""
        for eui, d in campaign.devices.items():
            device = self.mc.devices.get(eui)
            version = _running(device) if device is not None else None
            if version is not None and version != d.version and d.state not in _DEVICE_FINAL:
                self.on_version(eui, version)

    async def _drive_steps(self, campaign: Campaign) -> None:
        self._check_twins(campaign)
        euis = sorted(campaign.devices)
        group_id, refused = await self.mc.ensure_group(campaign.group, euis)
        for eui, why in refused.items():
            self._fail(campaign.devices[eui], why)
        if campaign.state == "setup":
            await asyncio.gather(*(self._setup(campaign, d) for d in self._live(campaign)))
            ready = [d for d in campaign.devices.values() if d.state == "receiving"]
            if not ready:
                await self._finish(campaign, "failed", "no device completed the setup")
                return
            campaign.state = "fragments"
            await self._save(campaign)
        if campaign.state == "fragments":
            await self._wait_session(campaign)
            await self._send_fragments(campaign, group_id)
            campaign.state = "status"
            await self._save(campaign)
        while campaign.state == "status":
            await self._status_round(campaign, group_id)
            waiting = [d for d in self._live(campaign) if d.state == "receiving"]
            if waiting and campaign.status_rounds <= self.config.extra_rounds:
                missing = max(d.fragments_missing or 0 for d in waiting)
                campaign.redundancy += missing + max(2, campaign.nb_frag // 10)
                await self._save(campaign)
                await self._send_fragments(campaign, group_id)
                continue
            for d in waiting:
                self._fail(
                    d,
                    f"{d.fragments_missing} fragments still missing after "
                    f"{campaign.status_rounds} status rounds",
                )
            campaign.state = "applying"
            await self._save(campaign)
        if campaign.state == "applying":
            await self._wait_applied(campaign)
            await self._finish(campaign, "done", "")

    async def _finish(self, campaign: Campaign, state: str, error: str) -> None:
        campaign.state, campaign.error, campaign.finished_at = state, error, self.clock()
        await self._save(campaign)
        self.log.info(
            "fuota campaign finished",
            extra={"id": campaign.id, "state": state, "counts": campaign.counts()},
        )

    async def _setup(self, campaign: Campaign, d: DeviceProgress, attempt: int = 0) -> None:
        cfg = self.config
        gid = cfg.mc_group_id
        if not d.clock_synced:
            d.state = "clock_sync"
            # TS003 §4.4: the node sends AppTimeReq, answered in on_uplink
            if await self._ask(
                campaign, d, "time", clocksync.FPORT,
                clocksync.ForceDeviceResyncReq(1).to_bytes(), "ForceDeviceResyncReq (clock sync)",
            ) is None:  # fmt: skip
                return
            d.clock_synced = True
            await self._save(campaign)
        if not d.multicast_setup:
            d.state = "multicast_setup"
            try:
                root = await self.mc.client.device_root_key(d.dev_eui)
            except ChirpStackApiError as exc:
                self._fail(d, f"no root key from ChirpStack: {exc.message}")
                await self._save(campaign)
                return
            group_keys = self.mc.keys(campaign.group)
            kek = keys.mc_kekey(keys.mc_root_key_1_0(root))
            group = await self.mc.client.get(self.mc.chirpstack_id(campaign.group) or "")
            request = mcsetup.McGroupSetupReq(
                gid,
                group_keys.mc_addr,
                keys.mc_key_encrypt(kek, group_keys.mc_key),
                int(group.f_cnt),
                0xFFFFFFFF,
            )
            ans = await self._ask(
                campaign, d, "mcsetup", mcsetup.FPORT, request.to_bytes(), "McGroupSetupReq"
            )
            if ans is None:
                return
            assert isinstance(ans, mcsetup.McGroupSetupAns)
            if ans.id_error:
                self._fail(d, f"McGroupSetupAns: McGroupID {gid} refused (IDerror)")
                await self._save(campaign)
                return
            d.multicast_setup = True
            await self._save(campaign)
        if not d.session_setup:
            d.state = "session_setup"
            request_f = fragmentation.FragSessionSetupReq(
                frag_index=cfg.frag_index,
                mc_group_bit_mask=1 << gid,
                nb_frag=campaign.nb_frag,
                frag_size=campaign.frag_size,
                padding=campaign.padding,
                block_ack_delay=cfg.block_ack_delay,
                descriptor=int.from_bytes(campaign.id.encode()[:4], "little"),
            )
            ans_f = await self._ask(
                campaign, d, "fragsetup", fragmentation.FPORT, request_f.to_bytes(),
                "FragSessionSetupReq",
            )  # fmt: skip
            if ans_f is None:
                return
            assert isinstance(ans_f, fragmentation.FragSessionSetupAns)
            if not ans_f.ok:
                why = [
                    name
                    for name, bad in (
                        ("encoding unsupported", ans_f.encoding_unsupported),
                        ("not enough memory", ans_f.not_enough_memory),
                        ("FragIndex not supported", ans_f.frag_index_not_supported),
                        ("wrong descriptor", ans_f.wrong_descriptor),
                    )
                    if bad
                ]
                self._fail(d, "FragSessionSetupAns: " + ", ".join(why))
                await self._save(campaign)
                return
            d.session_setup = True
            await self._save(campaign)
        if not d.class_c_session:
            d.state = "class_c_session"
            if campaign.session_time is None:  # one window for every device of the campaign
                campaign.session_time = gps_seconds(self.clock()) + int(cfg.session_lead_s)
            request_c = mcsetup.McClassCSessionReq(
                gid,
                campaign.session_time % (1 << 32),
                cfg.session_timeout,
                self.mc.config.frequency_hz,
                self.mc.config.dr,
            )
            ans_c = await self._ask(
                campaign, d, "classc", mcsetup.FPORT, request_c.to_bytes(), "McClassCSessionReq"
            )
            if ans_c is None:
                return
            assert isinstance(ans_c, mcsetup.McClassCSessionAns)
            if not ans_c.ok:
                why = [
                    name
                    for name, bad in (
                        ("data rate", ans_c.dr_error),
                        ("frequency", ans_c.freq_error),
                        ("McGroup undefined", ans_c.mc_group_undefined),
                    )
                    if bad
                ]
                self._fail(d, "McClassCSessionAns refused: " + ", ".join(why))
                await self._save(campaign)
                return
            # TimeToStart is the node's own view (TS004 §4.4): far later than ours means its
            # clock never took the AppTimeAns (lost on the air, or stale after a DeviceTimeAns)
            # and its session would open after the fragments: sync it again, then ask again
            expected = max(campaign.session_time - gps_seconds(self.clock()), 0)
            told = ans_c.time_to_start or 0
            if told > expected + _CLOCK_SLACK_S:
                if attempt >= _CLOCK_RETRIES:
                    self._fail(
                        d,
                        f"the node's clock is off: its class C session would start in {told} s,"
                        f" ours in {expected} s, after {attempt + 1} clock syncs",
                    )
                    await self._save(campaign)
                    return
                self.log.info(
                    "fuota node clock off, syncing again",
                    extra={"dev_eui": d.dev_eui, "told_s": told, "expected_s": expected},
                )
                d.clock_synced = False
                await self._setup(campaign, d, attempt + 1)
                return
            d.class_c_session = True
        d.state = "receiving"
        await self._save(campaign)

    async def _wait_session(self, campaign: Campaign) -> None:
        if campaign.session_time is None:
            return
        wait = campaign.session_time - gps_seconds(self.clock()) + 1
        if wait > 0:
            await asyncio.sleep(wait)

    def _airtime(self, payload_len: int) -> float:
        rate = REGIONS["EU868"].data_rate(self.mc.config.dr)
        return lora_time_on_air_s(
            payload_len + _PHY_OVERHEAD,
            spreading_factor=rate.spreading_factor or 7,
            bandwidth_hz=rate.bandwidth_hz,
        )

    def _interval(self, payload_len: int) -> float:
        """Seconds between two fragment enqueues. ChirpStack deletes a multicast queue item at
        its TX ack, before the frame is on the air, and schedules the next one from the items
        still queued (multicast margin), so fragments enqueued one by one could overlap on the
        gateway's radio: each waits for the previous frame's time on air divided by the RX2
        sub-band's 10 % duty cycle (ETSI EN 300 220, RP002 §2.1.3), unless configured."""
        if self.config.fragment_interval_s:
            return self.config.fragment_interval_s
        return self._airtime(payload_len) / 0.1

    async def _send_fragments(self, campaign: Campaign, group_id: str) -> None:
        """Enqueue the fragments not enqueued yet (the count is saved as it goes)."""
        data = self._bundles[campaign.id]
        padded, _ = fec.pad(data, campaign.frag_size)
        total = campaign.nb_frag + campaign.redundancy
        if campaign.fragments_sent >= total:
            return
        fragments = fec.encode(padded, campaign.frag_size, campaign.redundancy)
        expires = datetime.fromtimestamp(self.clock() + (1 << self.config.session_timeout), UTC)
        for n in range(campaign.fragments_sent, total):
            payload = fragmentation.DataFragment(
                self.config.frag_index, n + 1, fragments[n]
            ).to_bytes()
            await self.mc.client.enqueue(group_id, fragmentation.FPORT, payload, expires)
            campaign.fragments_sent = n + 1
            campaign.airtime_s = round(campaign.airtime_s + self._airtime(len(payload)), 4)
            # saved after every enqueue: a restart sends at most this one fragment twice
            await self._save(campaign)
            await asyncio.sleep(self._interval(len(payload)))
        await self._save(campaign)
        await self._drain(group_id, total, campaign.frag_size + _FRAG_HEADER)

    async def _drain(self, group_id: str, frames: int, size: int) -> None:
        """Wait until ChirpStack has sent the group's queue (bounded by the frames' airtime)."""
        bound = 60.0 + frames * max(2.0 * self._airtime(size), 1.0)
        try:
            async with asyncio.timeout(bound):
                while await self.mc.client.queue_length(group_id) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
        except TimeoutError:  # the status request (queued behind) says what each device has
            self.log.warning(
                "fuota fragments still queued at ChirpStack", extra={"group_id": group_id}
            )

    async def _status_round(self, campaign: Campaign, group_id: str) -> None:
        """FragSessionStatusReq by multicast (TS005 §4.2, answers spread over 2^(BlockAckDelay
        + 4) s), asked again up to ``max_tries`` times while a receiving device is silent. By
        multicast, not unicast: during its session a class C node listens on the group's
        frequency and data rate (TS004 §4.4), not where its unicast downlinks would come."""
        campaign.status_rounds += 1
        for d in self._live(campaign):
            if d.state == "receiving":
                d.fragments_missing = None
        request = fragmentation.FragSessionStatusReq(self.config.frag_index, participants=True)

        def silent() -> list[DeviceProgress]:
            return [
                d
                for d in self._live(campaign)
                if d.state == "receiving" and d.fragments_missing is None
            ]

        for _ in range(self.config.max_tries):
            expires = datetime.fromtimestamp(self.clock() + self.config.status_wait_s, UTC)
            await self.mc.client.enqueue(group_id, fragmentation.FPORT, request.to_bytes(), expires)
            campaign.airtime_s = round(campaign.airtime_s + self._airtime(2), 4)
            await self._save(campaign)
            deadline = time.monotonic() + self.config.status_wait_s
            while silent() and time.monotonic() < deadline:  # noqa: ASYNC110 - answers set it
                await asyncio.sleep(0.5)
            if not silent():
                break
        # still silent: its session may be over (a node whose clock moved, TS004 §4.4), and
        # outside one a class C node hears unicast where its downlinks come
        await asyncio.gather(
            *(
                self._ask(
                    campaign,
                    d,
                    "status",
                    fragmentation.FPORT,
                    request.to_bytes(),
                    "FragSessionStatusReq (multicast, then unicast)",
                )
                for d in silent()
            )
        )
        await self._save(campaign)

    async def _wait_applied(self, campaign: Campaign) -> None:
        while True:
            self._check_twins(campaign)
            now = self.clock()
            waiting = [d for d in campaign.devices.values() if d.state == "received"]
            if not waiting:
                return
            for d in waiting:
                if d.received_at is not None and now - d.received_at > self.config.apply_timeout_s:
                    self._fail(
                        d,
                        f"the node received the whole file but still reports version "
                        f"{d.version or '(none reported)'}: it refused the bundle (signature, base "
                        f"version {campaign.from_version} or storage)",
                    )
                    await self._save(campaign)
            await asyncio.sleep(1.0)


def encode_bundle(data: bytes) -> str:
    """Base64 as the API carries a bundle (tools/commands/fuota.py sends it so)."""
    return base64.b64encode(data).decode("ascii")
