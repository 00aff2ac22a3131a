"""The network server: ChirpStack v4's behaviour for one application, on LoRaWAN 1.0.4 EU868.

Sources: reference/chirpstack.md §2-§3 (chirpstack ``src/uplink``, ``src/downlink``,
``src/storage``), reference/lorawan.md §2, §4 (TS001-1.0.4 = L2). :class:`NetworkServer` ties
the concepts together; each has its own module with its rules and sources:

- uplinks: :mod:`~tools.netsim.dedup` (copies from several gateways become one ``up``),
  :mod:`~tools.netsim.join` (OTAA; the ``join`` event goes out with the first data uplink, as
  ChirpStack does), :mod:`~tools.netsim.fcnt` (FCnt and MIC: ``log`` UPLINK_MIC,
  UPLINK_F_CNT_RETRANSMISSION, UPLINK_F_CNT_RESET), :mod:`~tools.netsim.mac` and
  :mod:`~tools.netsim.adr` (MAC commands, ChirpStack's default ADR);
- downlinks: :mod:`~tools.netsim.queue` (the device queue, EXPIRED, DOWNLINK_PAYLOAD_SIZE),
  :mod:`~tools.netsim.commands` (``command/down``), :mod:`~tools.netsim.compose` (one data
  downlink), :mod:`~tools.netsim.downlink` (RX1/RX2 windows, gateways, TX acks),
  :mod:`~tools.netsim.txack` (what a TX ack does), :mod:`~tools.netsim.classc` (the class C and
  multicast scheduler), :mod:`~tools.netsim.multicast` (multicast groups);
- :mod:`~tools.netsim.eventbus` (integration events), :mod:`~tools.netsim.state` (what is held),
  :mod:`~tools.netsim.config` (settings and errors).

Class A answers go ``downlink_data_delay_s`` (100 ms) after the ``up`` event, in RX1 with RX2 as
the gateway's fallback; class C and multicast frames go at once. Nothing from the radio raises:
a callback that fails is counted in ``counters["internal_errors"]`` and logged.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import random
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from protocol.errors import ProtocolError
from protocol.lorawan.data import DataFrame
from protocol.lorawan.join import JoinRequest
from protocol.lorawan.mhdr import MType
from protocol.lorawan.phy import PHYPayload
from tools.netsim import region
from tools.netsim.capture import Capture
from tools.netsim.classc import SchedulerLoop, class_c_step, class_c_window, multicast_window
from tools.netsim.commands import parse_down_command
from tools.netsim.compose import compose_data_downlink
from tools.netsim.config import DEFAULT_APPLICATION_ID, CommandError, NetsimConfig, NetsimError
from tools.netsim.dedup import Deduplicator, FrameKey
from tools.netsim.devices import Device
from tools.netsim.downlink import DownlinkCallback, Transmitter, class_a_windows
from tools.netsim.eventbus import EventBus, EventSink
from tools.netsim.fcnt import UplinkRefused, check_uplink
from tools.netsim.join import JoinRefused, accept_join, allocate_dev_addr
from tools.netsim.mac import handle_uplink_mac
from tools.netsim.multicast import MulticastGroups, build_multicast_frame
from tools.netsim.queue import new_item
from tools.netsim.state import Collect, DeviceState, QueueItem, RxCopy, Window
from tools.netsim.txack import settle_unicast

__all__ = [
    "DEFAULT_APPLICATION_ID",
    "CommandError",
    "DownlinkCallback",
    "EventSink",
    "NetsimConfig",
    "NetsimError",
    "NetworkServer",
    "QueueItem",
]

log = logging.getLogger("citypack.netsim")


class NetworkServer:
    """A ChirpStack v4-compatible network server for one application (see the module doc)."""

    def __init__(
        self,
        devices: list[Device],
        config: NetsimConfig | None = None,
        *,
        capture: Capture | None = None,
    ) -> None:
        self.config = config or NetsimConfig()
        self.capture = capture
        self._random = random.Random(self.config.seed)
        self._devices: dict[str, DeviceState] = {d.dev_eui: DeviceState(d) for d in devices}
        self._by_addr: dict[int, str] = {}
        self.multicast = MulticastGroups(self.config, self._devices)
        self.events = EventBus(self.config, self._random)
        self._dedup = Deduplicator(self.config.dedup_window_s, self.config.dedup_ttl_s)
        self._handles: set[asyncio.TimerHandle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduler = SchedulerLoop(self.config.scheduler_interval_s, self.schedule_class_c)
        self.counters: dict[str, int] = {
            "uplinks": 0,
            "uplink_copies": 0,
            "duplicates": 0,
            "dropped": 0,
            "joins": 0,
            "downlinks": 0,
            "internal_errors": 0,
        }
        self.transmitter = Transmitter(
            self._random, self.counters, self._loop_time, self.tx_ack, capture
        )

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the class B/C scheduler; call from the event loop that will feed uplinks."""
        self._loop = asyncio.get_running_loop()
        self._scheduler.start()

    async def stop(self) -> None:
        for handle in list(self._handles):
            handle.cancel()
        self._handles.clear()
        await self._scheduler.stop()

    async def __aenter__(self) -> NetworkServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _later(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        handle: asyncio.TimerHandle | None = None

        def run() -> None:
            if handle is not None:
                self._handles.discard(handle)
            try:
                callback(*args)
            except Exception:  # one bad frame or item must not stop the server
                self.counters["internal_errors"] += 1
                log.exception("netsim: %s failed", getattr(callback, "__name__", callback))

        handle = loop.call_later(max(delay, 0.0), run)
        self._handles.add(handle)

    def _loop_time(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    # -- wiring ------------------------------------------------------------------------------
    def add_event_sink(self, sink: EventSink) -> None:
        """Every event goes to every sink as ``sink(event, dev_eui, message)``."""
        self.events.add_sink(sink)

    def attach_gateway(
        self, gateway_id: str, on_downlink: DownlinkCallback, *, auto_ack: bool = True
    ) -> None:
        """Make a gateway reachable for downlinks.

        With ``auto_ack`` the emulator takes every downlink as transmitted (TX ack "NONE") as
        soon as ``on_downlink`` returns; otherwise the caller calls :meth:`tx_ack`.
        """
        self.transmitter.attach(gateway_id, on_downlink, auto_ack)

    def attach_gateway_queue(
        self, gateway_id: str, *, auto_ack: bool = True, maxsize: int = 0
    ) -> asyncio.Queue[tuple[dict[str, Any], int]]:
        """Like :meth:`attach_gateway`, with the downlinks put on a queue as ``(txpk, token)``.

        A full queue is the gateway's ``QUEUE_FULL`` TX ack: RX2 is tried, then a ``log``
        DOWNLINK_GATEWAY event is published and the queue item stays.
        """
        queue: asyncio.Queue[tuple[dict[str, Any], int]] = asyncio.Queue(maxsize)

        def put(txpk: dict[str, Any], token: int) -> None:
            queue.put_nowait((txpk, token))

        self.attach_gateway(gateway_id, put, auto_ack=auto_ack)
        return queue

    def device_ids(self) -> list[str]:
        return list(self._devices)

    def add_device(self, device: Device) -> None:
        """Register a device at run time (gRPC ``DeviceService.Create`` + ``CreateKeys``).

        A DevEUI already known takes the new keys, name, class and tags and keeps its session
        and queue (what ``DeviceService.Update`` + ``UpdateKeys`` do in ChirpStack)."""
        state = self._devices.get(device.dev_eui)
        if state is None:
            self._devices[device.dev_eui] = DeviceState(device)
        else:
            state.device = device

    def remove_device(self, dev_eui: str) -> bool:
        """Delete a device with its session and queue (gRPC ``DeviceService.Delete``); it also
        leaves every multicast group (ChirpStack deletes its memberships with it)."""
        state = self._devices.pop(dev_eui.lower(), None)
        if state is None:
            return False
        if state.session is not None:
            self._by_addr.pop(state.session.dev_addr, None)
        for group in self.multicast.groups():
            group.devices.discard(dev_eui.lower())
        return True

    def devices(self) -> list[Device]:
        """The devices this server knows (keys files' entries)."""
        return [state.device for state in self._devices.values()]

    def session_of(self, dev_eui: str) -> dict[str, Any] | None:
        """A read-only summary of a device's session (no keys): for tests and the demo view."""
        state = self._devices.get(dev_eui.lower())
        return state.summary() if state is not None else None

    # -- radio in ----------------------------------------------------------------------------
    def receive_uplink(self, gateway_id: str, rxpk: dict[str, Any]) -> None:
        """One gateway's reception of one frame (a GWMP ``rxpk`` object). Never raises."""
        gateway_id = str(gateway_id).lower()
        try:
            phy, frequency_hz, datr, copy = RxCopy.from_rxpk(gateway_id, rxpk, self.config.now())
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            self.counters["dropped"] += 1
            log.warning("netsim: dropped an rxpk from %s: %s", gateway_id, exc)
            return
        self.counters["uplink_copies"] += 1
        if self.capture is not None:
            self.capture.write(
                "up", phy, self._capture_dev_eui(phy), frequency_hz, datr, gateway_id
            )
        key = (frequency_hz, datr, phy)
        outcome = self._dedup.offer(key, copy, self._loop_time())
        if outcome == "duplicate":
            self.counters["duplicates"] += 1
        elif outcome == "new":
            self._later(self.config.dedup_window_s, self._collected, key)

    def _capture_dev_eui(self, phy: bytes) -> str | None:
        """The DevEUI of an uplink for the capture file: from a Join-Request or the DevAddr."""
        try:
            frame = PHYPayload.from_bytes(phy)
        except ProtocolError:
            return None
        if isinstance(frame, JoinRequest):
            return frame.dev_eui.hex()
        if isinstance(frame, DataFrame):
            return self._by_addr.get(frame.dev_addr.value)
        return None

    def _collected(self, key: FrameKey) -> None:
        collect = self._dedup.close(key, self._loop_time())
        self.counters["uplinks"] += 1
        try:
            frame = PHYPayload.from_bytes(collect.phy)
        except ProtocolError as exc:
            self.counters["dropped"] += 1
            log.warning("netsim: dropped an undecodable uplink: %s", exc)
            return
        if isinstance(frame, JoinRequest):
            self._handle_join(frame, collect)
        elif isinstance(frame, DataFrame) and frame.uplink:
            self._handle_data(frame, collect)
        else:
            self.counters["dropped"] += 1
            log.warning("netsim: dropped a %s frame on the uplink path", type(frame).__name__)

    # -- join --------------------------------------------------------------------------------
    def _handle_join(self, request: JoinRequest, collect: Collect) -> None:
        dev_eui = request.dev_eui.hex()
        state = self._devices.get(dev_eui)
        if state is None:
            self.counters["dropped"] += 1
            log.warning("netsim: join-request from unknown DevEUI %s", dev_eui)
            return

        def allocate() -> int:
            if state.session is not None:
                self._by_addr.pop(state.session.dev_addr, None)
            return allocate_dev_addr(self.config.net_id, self._random, self._by_addr)

        uplink_dr = region.dr_of(collect.datr)
        result = accept_join(state, request, uplink_dr, allocate, self.config)
        if isinstance(result, JoinRefused):
            self.events.log_event(state, "ERROR", result.code, result.description, result.context)
            return
        assert state.session is not None
        self._by_addr[state.session.dev_addr] = dev_eui
        self.counters["joins"] += 1
        best = collect.best()
        state.last_rx = list(collect.copies)
        state.last_frequency_hz = collect.frequency_hz
        windows = self._class_a_windows(
            best, collect.frequency_hz, uplink_dr, self.config.join_accept_delay_s
        )
        self.transmitter.send(
            dev_eui,
            best.gateway_id,
            best.tmst,
            windows,
            result,
            f_cnt_down=None,
            item=None,
            join_accept=True,
        )

    # -- data uplink -------------------------------------------------------------------------
    def _handle_data(self, frame: DataFrame, collect: Collect) -> None:
        addr = frame.dev_addr.value
        dev_eui = self._by_addr.get(addr)
        state = self._devices.get(dev_eui) if dev_eui else None
        if state is None or state.session is None:
            self.counters["dropped"] += 1
            log.warning("netsim: uplink from unknown DevAddr %08x", addr)
            return
        session = state.session
        dedup_id = str(uuid.UUID(int=self._random.getrandbits(128), version=4))
        full = check_uplink(session, frame, dedup_id)
        if isinstance(full, UplinkRefused):
            self.events.log_event(state, full.level, full.code, full.description, full.context)
            return
        session.last_f_cnt = full
        session.uplinks += 1
        dr = region.dr_of(collect.datr)
        if dr != session.dr:  # ChirpStack resets tx power and the ADR history on a DR change
            session.tx_power_index = 0
            session.history.clear()
        session.dr = dr
        session.adr = frame.fctrl.adr
        state.last_rx = list(collect.copies)
        state.last_frequency_hz = collect.frequency_hz
        state.scheduler_run_after = self._loop_time() + self.config.class_a_lock_s
        max_snr = max(c.snr for c in collect.copies)
        if not session.history or session.history[-1][0] != full:
            session.history.append((full, max_snr, len(collect.copies)))

        if frame.fport == 0:
            mac_bytes = frame.decrypt(nwk_s_key=session.nwk_s_key, fcnt=full)
            data = b""
        else:
            mac_bytes = frame.fhdr.fopts
            data = frame.decrypt(app_s_key=session.app_s_key, fcnt=full)
        # ChirpStack's event time is the reception time (helpers::get_rx_timestamp), not the
        # end of the de-duplication window.
        now = min(c.ns_time for c in collect.copies)

        if session.join_event_pending:
            session.join_event_pending = False
            self.events.join(state, dedup_id, now, addr)

        self._handle_ack(state, frame.fctrl.ack, dedup_id)
        must_send, statuses = handle_uplink_mac(
            session, mac_bytes, collect, now, self.config, state.device.dev_eui
        )
        for status in statuses:
            self.events.status(state, status, dedup_id, now)

        self.events.up(state, frame, collect, dedup_id, now, full, data)
        must_ack = frame.mhdr.mtype == MType.CONFIRMED_DATA_UP
        self._later(
            self.config.downlink_data_delay_s,
            self._class_a_response,
            state,
            collect,
            dedup_id,
            must_ack,
            must_send or frame.fctrl.adr_ack_req,
        )

    def _handle_ack(self, state: DeviceState, ack: bool, dedup_id: str) -> None:
        pending = next((i for i in state.queue if i.is_pending), None)
        if pending is None:
            return
        if not ack and state.enabled_class == "C":
            return  # class C waits for its timeout
        state.queue.remove(pending)
        self.events.ack(state, pending, ack, dedup_id)

    # -- downlinks ---------------------------------------------------------------------------
    def _class_a_windows(
        self, best: RxCopy, frequency_hz: int, uplink_dr: int, delay_s: int
    ) -> list[Window]:
        return class_a_windows(
            best.tmst,
            frequency_hz,
            uplink_dr,
            delay_s,
            rx1_dr_offset=self.config.rx1_dr_offset,
            rx2_frequency_hz=self.config.rx2_frequency_hz,
            rx2_dr=self.config.rx2_dr,
        )

    def _class_a_response(
        self,
        state: DeviceState,
        collect: Collect,
        dedup_id: str,
        must_ack: bool,
        must_send: bool,
    ) -> None:
        session = state.session
        if session is None:
            return
        best = collect.best()
        uplink_dr = region.dr_of(collect.datr)
        windows = self._class_a_windows(
            best, collect.frequency_hz, uplink_dr, self.config.rx1_delay_s
        )
        if not self.transmitter.attached(best.gateway_id):
            log.warning("netsim: gateway %s is not attached: no downlink", best.gateway_id)
            return
        self._compose(state, best, windows, must_ack, must_send)

    def _compose(
        self,
        state: DeviceState,
        via: RxCopy,
        windows: list[Window],
        must_ack: bool,
        must_send: bool,
        *,
        class_c: bool = False,
    ) -> bool:
        """Build and send one data downlink if there is anything to send. True if sent."""
        result, discarded = compose_data_downlink(
            state,
            region.max_payload(windows[0].dr),
            must_ack=must_ack,
            must_send=must_send,
            class_c=class_c,
            config=self.config,
        )
        for gone in discarded:
            self.events.log_event(state, "ERROR", gone.code, gone.description, gone.context)
        if result is None:
            return False
        if result.item is not None:
            result.item.f_cnt_down = result.f_cnt_down
        self.transmitter.send(
            state.device.dev_eui,
            via.gateway_id,
            via.tmst,
            windows,
            result.phy,
            f_cnt_down=result.f_cnt_down,
            item=result.item,
            link_adr=result.link_adr,
        )
        return True

    def tx_ack(self, gateway_id: str, token: int, error: str = "NONE") -> None:
        """The gateway's TX acknowledgement of the downlink sent with ``token``."""
        settled = self.transmitter.ack(gateway_id, token, error)
        if settled is None:
            return
        inflight, failure = settled
        if inflight.multicast_item is not None:
            # txack.rs: a multicast queue item is deleted on its TX ack, an error included
            self.multicast.delete_item(inflight.multicast_item)
            if failure:
                log.warning(
                    "netsim: multicast downlink via %s failed: %s", inflight.gateway_id, failure
                )
            return
        assert inflight.dev_eui is not None
        state = self._devices[inflight.dev_eui]
        waits = settle_unicast(
            state,
            inflight,
            failure,
            events=self.events,
            now=self._loop_time(),
            class_c_timeout_s=self.config.class_c_timeout_s,
        )
        if waits:
            self._scheduler.wake()

    # -- class C scheduler (tools/netsim/classc.py) -----------------------------------------
    def schedule_class_c(self) -> None:
        """One pass of the class B/C scheduler: unicast class C, then multicast."""
        now = self._loop_time()
        next_wake: float | None = None
        for state in self._devices.values():
            step = class_c_step(state, now, self.transmitter.attached)
            for item in step.timed_out:
                self.events.ack(state, item, False, "")
            if step.wake_at is not None:
                next_wake = min(next_wake or step.wake_at, step.wake_at)
            if step.via is None:
                continue
            window = class_c_window(self.config.rx2_frequency_hz, self.config.rx2_dr)
            if self._compose(state, step.via, [window], False, False, class_c=True):
                state.scheduler_run_after = now + self.config.class_c_lock_s
                next_wake = min(next_wake or state.scheduler_run_after, state.scheduler_run_after)
        due, next_at = self.multicast.due(now, self.config.expiry_clock())
        for mc_item in due:
            group = self.multicast.get(mc_item.group_id)
            self.transmitter.send(
                None,
                mc_item.gateway_id,
                0,
                [multicast_window(group)],
                build_multicast_frame(group, mc_item),
                f_cnt_down=mc_item.f_cnt,
                item=None,
                multicast_item=mc_item,
            )
        if next_at is not None:
            next_wake = min(next_wake or next_at, next_at)
        if next_wake is not None and self._loop is not None:
            self._later(max(next_wake - now, 0.0) + 0.001, self._scheduler.wake)

    def enqueue_multicast(
        self, group_id: str, data: bytes, *, f_port: int, expires_at: datetime | None = None
    ) -> int:
        """Queue a payload for a multicast group (gRPC ``MulticastGroupService.Enqueue``);
        returns the group FCnt it goes out with. Raises :class:`NetsimError`."""
        f_cnt = self.multicast.enqueue(group_id, f_port, data, expires_at, self._loop_time())
        self._scheduler.wake()
        return f_cnt

    # -- the device queue --------------------------------------------------------------------
    def enqueue(
        self,
        dev_eui: str,
        data: bytes,
        *,
        f_port: int,
        confirmed: bool = False,
        item_id: str | None = None,
        expires_at: datetime | None = None,
        flush_queue: bool = False,
    ) -> str:
        """Add a queue item (like gRPC ``DeviceService.Enqueue``); returns its id.

        ``flush_queue`` first removes the non-pending items (v4.18 semantics). Raises
        :class:`CommandError` for an unknown device or an FPort outside 1..255.
        """
        state = self._devices.get(dev_eui)
        if state is None:
            raise CommandError(f"device {dev_eui} does not exist in this application")
        item = new_item(
            state,
            data,
            f_port=f_port,
            confirmed=confirmed,
            item_id=item_id,
            expires_at=expires_at,
        )
        if flush_queue:
            state.queue = [i for i in state.queue if i.is_pending]
        if any(i.id == item.id for i in state.queue):
            # the id is the primary key of ChirpStack's device_queue_item table
            # (storage/device_queue.rs enqueue_item): a repeated id is refused, not queued twice
            raise CommandError(f"queue item {item.id} already exists")
        state.queue.append(item)
        if state.enabled_class == "C":
            self._scheduler.wake()
        return item.id

    def flush_queue(self, dev_eui: str) -> None:
        """Delete every queue item of a device (gRPC ``DeviceService.FlushQueue``)."""
        state = self._devices.get(dev_eui)
        if state is None:
            raise CommandError(f"device {dev_eui} does not exist in this application")
        state.queue.clear()

    def queue(self, dev_eui: str) -> list[QueueItem]:
        state = self._devices.get(dev_eui)
        return list(state.queue) if state is not None else []

    def handle_command(self, topic: str, payload: bytes, marshaler: str = "json") -> str | None:
        """A ``command/down`` MQTT message. Returns the queue-item id, or None when refused.

        As ChirpStack (integration/mod.rs ``handle_down_command``), refusals are only logged
        on this process's logger: nothing is published (:mod:`tools.netsim.commands`).
        Flushing is the gRPC ``Enqueue.flush_queue`` / ``FlushQueue`` path, here
        :meth:`enqueue` with ``flush_queue=True`` and :meth:`flush_queue` (reference §5).
        """
        try:
            command = parse_down_command(topic, payload, marshaler, self.config.application_id)
            return self.enqueue(
                command.dev_eui,
                command.data,
                f_port=command.f_port,
                confirmed=command.confirmed,
                item_id=command.item_id,
                expires_at=command.expires_at,
            )
        except CommandError as exc:
            log.warning("netsim: downlink command on %s refused: %s", topic, exc)
            return None
