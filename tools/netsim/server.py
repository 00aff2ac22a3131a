"""The network server core: OTAA join server, uplinks, the device queue, downlinks, events.

Behaviour follows ChirpStack v4 (reference/chirpstack.md §2-§3; chirpstack ``src/uplink``,
``src/downlink``, ``src/storage/device_queue.rs``) on the LoRaWAN 1.0.4 rules
(reference/lorawan.md §2, §4; TS001-1.0.4 = L2):

- **Join** (L2 §6.2.5, §6.2.6): the Join-Request MIC is checked with the AppKey (bad MIC → ``log``
  UPLINK_MIC); DevNonce must be greater than the last one accepted for the device (1.0.4 counter
  rule; otherwise ``log`` OTAA and no answer); JoinNonce increments per device; a DevAddr is
  allocated in NetID 0's range; the Join-Accept carries RX1DROffset 0, RX2 DR0, RxDelay 1 s and
  the EU868 CFList, and goes out in RX1 (JOIN_ACCEPT_DELAY1 = 5 s) with RX2 (6 s, 869.525 MHz,
  SF12) as the fallback. The queue is flushed (``flush_queue_on_activate``). The ``join`` event
  is published with the first data uplink after the join, as ChirpStack does.
- **Uplinks**: copies of one frame (same frequency, data rate and bytes) are collected for
  ``dedup_window_s`` (200 ms) into one ``up`` with every ``rxInfo``; later copies within the TTL
  (max(2 × window, 200 ms)) are dropped. The MIC is checked with the 32-bit FCnt reconstructed
  from the last counter (``protocol.lorawan.fcnt``); a counter that did not increase gives
  ``log`` UPLINK_F_CNT_RETRANSMISSION, a counter that went back (device reset) gives
  UPLINK_F_CNT_RESET, both WARNING and without ``up``. A MIC that fails for the DevAddr's
  device gives ``log`` UPLINK_MIC.
- **MAC commands**: LinkCheckReq → LinkCheckAns, DeviceTimeReq → DeviceTimeAns, DevStatusReq
  every ``dev_status_every`` uplinks (the answer → ``status``), LinkADRReq from ChirpStack's
  default ADR (max SNR of the last 20 uplinks, installation margin 10 dB, 3 dB per step).
- **Downlinks**: class A items go in RX1 (RX2 as the gateway's fallback) of the next uplink,
  ``downlink_data_delay_s`` (100 ms) after the ``up`` event; class C items go at once
  (``imme``) with RX2 parameters through the gateway that heard the device last, one every
  ``class_c_lock_s``. The payload limit is N of the first opportunity's DR: a larger item is
  deleted with ``log`` DOWNLINK_PAYLOAD_SIZE; an expired item (``expiresAt``) is deleted with
  ``log`` EXPIRED. The downlink counter advances on the gateway's TX ack, which also gives
  ``txack`` (only for queue items); unconfirmed items are then deleted, confirmed ones become
  pending until the next uplink (``ack`` true with the ACK bit, false without) or, for class
  C, until ``class_c_timeout_s`` passes (``ack`` false, empty deduplicationId). A gateway TX
  error moves to the next window, then gives ``log`` DOWNLINK_GATEWAY and keeps the item.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chirpstack_api import common, gw, integration
from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from protocol.errors import FCntError, ProtocolError
from protocol.lorawan.data import DataFrame
from protocol.lorawan.fcnt import reconstruct_fcnt
from protocol.lorawan.join import CFListFrequencies, DLSettings, JoinAccept, JoinRequest
from protocol.lorawan.keys import DevAddr, NetID, derive_session_keys
from protocol.lorawan.maccommands import (
    DeviceTimeAns,
    DeviceTimeReq,
    DevStatusAns,
    DevStatusReq,
    LinkADRAns,
    LinkADRReq,
    LinkCheckAns,
    LinkCheckReq,
    parse_mac_commands,
)
from protocol.lorawan.mhdr import MType
from protocol.lorawan.phy import PHYPayload
from tools.netsim import region
from tools.netsim.capture import Capture
from tools.netsim.devices import Device
from tools.netsim.events import timestamp

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

DEFAULT_APPLICATION_ID = "8c1c5a3e-2f4b-4a57-9c1e-6b0d3f2a7e10"
_NAMESPACE = uuid.UUID("5d6c1f0e-9b7a-4c3d-8e2f-1a0b9c8d7e6f")

EventSink = Callable[[str, str, Message], None]
"""``sink(event, dev_eui, message)``: ``event`` is up/join/ack/txack/status/log."""

DownlinkCallback = Callable[[dict[str, Any], int], None]
"""``on_downlink(txpk, token)``: a frame to transmit; acknowledge it with ``tx_ack(token)``."""


class NetsimError(Exception):
    """An error of the emulator's own API (unknown device, bad argument)."""


class CommandError(NetsimError):
    """A downlink command that ChirpStack would refuse (it only logs a warning)."""


@dataclass
class NetsimConfig:
    """Settings; defaults are ChirpStack v4's (``chirpstack.toml`` and device-profile defaults)."""

    application_id: str = DEFAULT_APPLICATION_ID
    application_name: str = "citypack"
    tenant_id: str = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
    tenant_name: str = "citypack"
    net_id: int = 0
    dedup_window_s: float = 0.2  # network.deduplication_delay
    dedup_ttl_s: float | None = None  # late copies dropped until then; None: max(2×window, 0.2)
    downlink_data_delay_s: float = 0.1  # network.get_downlink_data_delay
    scheduler_interval_s: float = 1.0  # network.scheduler.interval
    class_c_lock_s: float = 5.0  # network.scheduler.class_c_lock_duration
    class_a_lock_s: float = 5.0  # network.scheduler.class_a_lock_duration
    class_c_timeout_s: float = 5.0  # device-profile class_c_timeout
    rx1_delay_s: int = 1
    join_accept_delay_s: int = 5
    rx1_dr_offset: int = 0
    rx2_dr: int = region.RX2_DR
    rx2_frequency_hz: int = region.RX2_FREQUENCY_HZ
    adr_enabled: bool = True
    installation_margin_db: float = 10.0
    adr_history: int = 20
    dev_status_every: int = 50  # DevStatusReq on the first uplink after join, then every N
    flush_queue_on_activate: bool = True
    seed: int | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass
class QueueItem:
    """A device-queue item (storage/device_queue.rs)."""

    id: str
    dev_eui: str
    f_port: int
    confirmed: bool
    data: bytes
    expires_at: datetime | None = None
    is_pending: bool = False
    f_cnt_down: int | None = None
    timeout_at: float | None = None  # loop time; class C confirmed items


@dataclass
class _RxCopy:
    gateway_id: str
    rxpk: dict[str, Any]
    ns_time: datetime
    rssi: int
    snr: float
    tmst: int


@dataclass
class _Collect:
    key: tuple[int, str, bytes]
    phy: bytes
    frequency_hz: int
    datr: str
    copies: list[_RxCopy]


@dataclass
class _Session:
    dev_addr: int
    nwk_s_key: bytes = field(repr=False)
    app_s_key: bytes = field(repr=False)
    last_f_cnt: int | None = None
    n_f_cnt_down: int = 0
    dr: int = 0
    tx_power_index: int = 0
    nb_trans: int = 1
    adr: bool = False
    history: deque[tuple[int, float, int]] = field(default_factory=lambda: deque(maxlen=20))
    join_event_pending: bool = True
    uplinks: int = 0
    pending_link_adr: tuple[int, int, int] | None = None
    adr_quiet_until: int = 0  # no LinkADRReq before this uplink count (after a refusal)
    mac_answers: list[bytes] = field(default_factory=list)


@dataclass
class _DeviceState:
    device: Device
    last_dev_nonce: int | None = None
    join_nonce: int = 0
    session: _Session | None = None
    queue: list[QueueItem] = field(default_factory=list)
    last_rx: list[_RxCopy] = field(default_factory=list)
    last_frequency_hz: int = 0
    scheduler_run_after: float = 0.0

    @property
    def enabled_class(self) -> str:
        return self.device.device_class if self.session is not None else "A"


@dataclass
class _Window:
    txpk: dict[str, Any]
    frequency_hz: int
    dr: int
    power_dbm: int
    delay_s: int | None  # None = immediately (class C)


@dataclass
class _Inflight:
    downlink_id: int
    dev_eui: str
    windows: list[_Window]
    index: int
    gateway_id: str
    context: bytes
    f_cnt_down: int | None
    item: QueueItem | None
    join_accept: bool = False
    link_adr: tuple[int, int, int] | None = None
    sent_at: float = 0.0  # loop time of the last transmission attempt


_TX_ACK_WAIT_S = 60.0  # forget a downlink whose gateway never sent TX_ACK (its FCnt stalls)


def _uuid_ok(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class NetworkServer:
    """A ChirpStack v4-compatible network server for one application (see the package doc)."""

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
        self._devices: dict[str, _DeviceState] = {d.dev_eui: _DeviceState(d) for d in devices}
        self._by_addr: dict[int, str] = {}
        self._sinks: list[EventSink] = []
        self._gateways: dict[str, tuple[DownlinkCallback, bool]] = {}
        self._collecting: dict[tuple[int, str, bytes], _Collect] = {}
        self._recent: dict[tuple[int, str, bytes], float] = {}  # key -> end of its TTL
        self._recent_order: deque[tuple[float, tuple[int, str, bytes]]] = deque()
        self._inflight: dict[tuple[str, int], _Inflight] = {}
        self._handles: set[asyncio.TimerHandle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.counters: dict[str, int] = {
            "uplinks": 0,
            "uplink_copies": 0,
            "duplicates": 0,
            "dropped": 0,
            "joins": 0,
            "downlinks": 0,
            "internal_errors": 0,
        }

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the class B/C scheduler; call from the event loop that will feed uplinks."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._scheduler is None:
            self._scheduler = asyncio.create_task(self._run_scheduler(), name="netsim-scheduler")

    async def stop(self) -> None:
        for handle in list(self._handles):
            handle.cancel()
        self._handles.clear()
        if self._scheduler is not None:
            task = self._scheduler
            # Python 3.11's asyncio.wait_for returns the inner result and drops a cancel that
            # arrives as the inner wait completes (CPython gh-86296): cancel until it is done
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.05)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._scheduler = None

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
        self._sinks.append(sink)

    def attach_gateway(
        self, gateway_id: str, on_downlink: DownlinkCallback, *, auto_ack: bool = True
    ) -> None:
        """Make a gateway reachable for downlinks.

        With ``auto_ack`` the emulator takes every downlink as transmitted (TX ack "NONE") as
        soon as ``on_downlink`` returns; otherwise the caller calls :meth:`tx_ack`.
        """
        self._gateways[gateway_id.lower()] = (on_downlink, auto_ack)

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
            self._devices[device.dev_eui] = _DeviceState(device)
        else:
            state.device = device

    def remove_device(self, dev_eui: str) -> bool:
        """Delete a device with its session and queue (gRPC ``DeviceService.Delete``)."""
        state = self._devices.pop(dev_eui.lower(), None)
        if state is None:
            return False
        if state.session is not None:
            self._by_addr.pop(state.session.dev_addr, None)
        return True

    def session_of(self, dev_eui: str) -> dict[str, Any] | None:
        """A read-only summary of a device's session (no keys): for tests and the demo view."""
        state = self._devices.get(dev_eui.lower())
        if state is None or state.session is None:
            return None
        s = state.session
        return {
            "dev_addr": f"{s.dev_addr:08x}",
            "f_cnt_up": s.last_f_cnt,
            "n_f_cnt_down": s.n_f_cnt_down,
            "dr": s.dr,
            "tx_power_index": s.tx_power_index,
            "nb_trans": s.nb_trans,
            "class": state.enabled_class,
        }

    # -- events ------------------------------------------------------------------------------
    def _device_info(self, state: _DeviceState) -> Any:
        d = state.device
        profile = f"citypack-class-{d.device_class.lower()}-eu868"
        return integration.DeviceInfo(
            tenant_id=self.config.tenant_id,
            tenant_name=self.config.tenant_name,
            application_id=self.config.application_id,
            application_name=self.config.application_name,
            device_profile_id=str(uuid.uuid5(_NAMESPACE, profile)),
            device_profile_name=profile,
            device_name=d.name,
            dev_eui=d.dev_eui,
            device_class_enabled=common.DeviceClass.Value(f"CLASS_{state.enabled_class}"),
            tags=d.tags,
        )

    def _emit(self, event: str, dev_eui: str, message: Message) -> None:
        for sink in list(self._sinks):
            try:
                sink(event, dev_eui, message)
            except Exception:
                log.exception("netsim: an event sink failed on %s", event)

    def _log_event(
        self,
        state: _DeviceState,
        level: str,
        code: str,
        description: str,
        context: dict[str, str] | None = None,
    ) -> None:
        message = integration.LogEvent(
            time=timestamp(self.config.now()),
            device_info=self._device_info(state),
            level=integration.LogLevel.Value(level),
            code=integration.LogCode.Value(code),
            description=description,
            context=context or {},
        )
        self._emit("log", state.device.dev_eui, message)

    # -- radio in ----------------------------------------------------------------------------
    def receive_uplink(self, gateway_id: str, rxpk: dict[str, Any]) -> None:
        """One gateway's reception of one frame (a GWMP ``rxpk`` object). Never raises."""
        gateway_id = str(gateway_id).lower()
        try:
            phy = base64.b64decode(str(rxpk["data"]), validate=True)
            frequency_hz = round(float(rxpk["freq"]) * 1_000_000)
            datr = str(rxpk["datr"])
            region.dr_of(datr)
            tmst = int(rxpk.get("tmst", 0)) & 0xFFFFFFFF
            rssi = int(rxpk.get("rssi", rxpk.get("rssic", 0)))
            snr = float(rxpk.get("lsnr", 0.0))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            self.counters["dropped"] += 1
            log.warning("netsim: dropped an rxpk from %s: %s", gateway_id, exc)
            return
        now = self.config.now()
        self.counters["uplink_copies"] += 1
        if self.capture is not None:
            self.capture.write(
                "up", phy, _capture_dev_eui(self, phy), frequency_hz, datr, gateway_id
            )
        key = (frequency_hz, datr, phy)
        copy = _RxCopy(gateway_id, rxpk, now, rssi, snr, tmst)
        collect = self._collecting.get(key)
        if collect is not None:
            if all(c.gateway_id != gateway_id for c in collect.copies):
                collect.copies.append(copy)
            else:  # the same gateway twice: one rxInfo per gateway
                self.counters["duplicates"] += 1
            return
        loop_now = self._loop_time()
        seen = self._recent.get(key)
        if seen is not None and loop_now < seen:
            self.counters["duplicates"] += 1
            return
        self._collecting[key] = _Collect(key, phy, frequency_hz, datr, [copy])
        self._later(self.config.dedup_window_s, self._collected, key)

    def _collected(self, key: tuple[int, str, bytes]) -> None:
        collect = self._collecting.pop(key)
        ttl = self.config.dedup_ttl_s
        if ttl is None:
            ttl = max(2 * self.config.dedup_window_s, 0.2)
        now = self._loop_time()
        while self._recent_order and self._recent_order[0][0] <= now:
            expired_at, old = self._recent_order.popleft()
            if self._recent.get(old) == expired_at:
                del self._recent[old]
        self._recent[key] = now + ttl
        self._recent_order.append((now + ttl, key))
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

    def _rx_info(self, copy: _RxCopy) -> Any:
        info = gw.UplinkRxInfo(
            gateway_id=copy.gateway_id,
            uplink_id=self._random.getrandbits(32),
            ns_time=timestamp(copy.ns_time),
            rssi=copy.rssi,
            snr=copy.snr,
            channel=int(copy.rxpk.get("chan", 0) or 0),
            rf_chain=int(copy.rxpk.get("rfch", 0) or 0),
            context=copy.tmst.to_bytes(4, "big"),
            crc_status=gw.CRCStatus.Value("CRC_OK"),
        )
        return info

    def _tx_info(self, collect: _Collect) -> Any:
        sf, bw = region.parse_datr(collect.datr)
        return gw.UplinkTxInfo(
            frequency=collect.frequency_hz,
            modulation=gw.Modulation(
                lora=gw.LoraModulationInfo(
                    bandwidth=bw,
                    spreading_factor=sf,
                    code_rate=gw.CodeRate.Value("CR_4_5"),
                )
            ),
        )

    # -- join --------------------------------------------------------------------------------
    def _allocate_dev_addr(self) -> int:
        # NetID type 0 (NwkID 6 bits from NetID): DevAddr = 0b0 | NwkID(6) | NwkAddr(25).
        nwk_id = self.config.net_id & 0x3F
        while True:
            addr = (nwk_id << 25) | self._random.getrandbits(25)
            if addr not in self._by_addr:
                return addr

    def _handle_join(self, request: JoinRequest, collect: _Collect) -> None:
        dev_eui = request.dev_eui.hex()
        state = self._devices.get(dev_eui)
        if state is None:
            self.counters["dropped"] += 1
            log.warning("netsim: join-request from unknown DevEUI %s", dev_eui)
            return
        app_key = state.device.app_key
        if not request.mic_ok(app_key):
            self._log_event(state, "ERROR", "UPLINK_MIC", "MIC of join-request is invalid")
            return
        nonce = request.dev_nonce
        if state.last_dev_nonce is not None and nonce <= state.last_dev_nonce:
            # L2 1.0.4 §6.2.5: DevNonce is a counter; the server drops a non-incremented one.
            self._log_event(
                state,
                "ERROR",
                "OTAA",
                f"DevNonce {nonce} is not greater than the last used {state.last_dev_nonce}: "
                "DevNonce has already been used",
                {"dev_nonce": str(nonce)},
            )
            return
        state.last_dev_nonce = nonce
        join_nonce = state.join_nonce
        state.join_nonce = (state.join_nonce + 1) & 0xFFFFFF
        if state.session is not None:
            self._by_addr.pop(state.session.dev_addr, None)
        addr = self._allocate_dev_addr()
        net_id = NetID(self.config.net_id)
        keys = derive_session_keys(app_key, join_nonce, net_id, nonce)
        accept = JoinAccept.build(
            app_key,
            join_nonce=join_nonce,
            net_id=net_id,
            dev_addr=DevAddr(addr),
            dl_settings=DLSettings(self.config.rx1_dr_offset, self.config.rx2_dr),
            rx_delay=self.config.rx1_delay_s,
            cflist=CFListFrequencies(region.EXTRA_CHANNELS_HZ),
        )
        uplink_dr = region.dr_of(collect.datr)
        session = _Session(
            dev_addr=addr,
            nwk_s_key=keys.nwk_s_key.to_bytes(),
            app_s_key=keys.app_s_key.to_bytes(),
            dr=uplink_dr,
        )
        session.history = deque(maxlen=max(self.config.adr_history, 1))
        state.session = session
        self._by_addr[addr] = dev_eui
        if self.config.flush_queue_on_activate:
            state.queue.clear()
        self.counters["joins"] += 1
        best = max(collect.copies, key=lambda c: c.snr)
        state.last_rx = list(collect.copies)
        state.last_frequency_hz = collect.frequency_hz
        windows = self._class_a_windows(
            best, collect.frequency_hz, uplink_dr, self.config.join_accept_delay_s
        )
        self._send(
            state,
            best,
            windows,
            accept.encrypt(app_key),
            f_cnt_down=None,
            item=None,
            join_accept=True,
        )

    # -- data uplink -------------------------------------------------------------------------
    def _handle_data(self, frame: DataFrame, collect: _Collect) -> None:
        addr = frame.dev_addr.value
        dev_eui = self._by_addr.get(addr)
        state = self._devices.get(dev_eui) if dev_eui else None
        if state is None or state.session is None:
            self.counters["dropped"] += 1
            log.warning("netsim: uplink from unknown DevAddr %08x", addr)
            return
        session = state.session
        dedup_id = str(uuid.UUID(int=self._random.getrandbits(128), version=4))
        last = session.last_f_cnt
        f16 = frame.fcnt16
        try:
            full = reconstruct_fcnt(last, f16)
        except FCntError:
            full = None
        if full is not None and frame.mic_ok(session.nwk_s_key, full):
            pass
        elif last is not None and f16 == last & 0xFFFF and frame.mic_ok(session.nwk_s_key, last):
            self._log_event(
                state,
                "WARNING",
                "UPLINK_F_CNT_RETRANSMISSION",
                "Uplink was flagged as re-transmission / frame-counter did not increment",
                {"deduplication_id": dedup_id, "f_cnt_up": str(last)},
            )
            return
        else:
            base = (last or 0) & 0xFFFF0000
            candidates = sorted({f16, base | f16})
            reset = next(
                (c for c in candidates if c <= (last or 0) and frame.mic_ok(session.nwk_s_key, c)),
                None,
            )
            if reset is not None:
                self._log_event(
                    state,
                    "WARNING",
                    "UPLINK_F_CNT_RESET",
                    "Frame-counter reset or rollover detected",
                    {"deduplication_id": dedup_id, "f_cnt_up": str(reset)},
                )
            else:
                self._log_event(
                    state,
                    "ERROR",
                    "UPLINK_MIC",
                    "MIC of uplink frame is invalid",
                    {"deduplication_id": dedup_id},
                )
            return
        assert full is not None
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
            self._emit(
                "join",
                state.device.dev_eui,
                integration.JoinEvent(
                    deduplication_id=dedup_id,
                    time=timestamp(now),
                    device_info=self._device_info(state),
                    dev_addr=f"{addr:08x}",
                    region_config_id=region.REGION_CONFIG_ID,
                ),
            )

        self._handle_ack(state, frame.fctrl.ack, dedup_id)
        must_send = self._handle_mac(state, mac_bytes, collect, dedup_id, now)

        up = integration.UplinkEvent(
            deduplication_id=dedup_id,
            time=timestamp(now),
            device_info=self._device_info(state),
            dev_addr=f"{addr:08x}",
            adr=frame.fctrl.adr,
            dr=dr,
            f_cnt=full,
            f_port=frame.fport or 0,
            confirmed=frame.mhdr.mtype == MType.CONFIRMED_DATA_UP,
            data=data,
            rx_info=[self._rx_info(c) for c in collect.copies],
            tx_info=self._tx_info(collect),
            region_config_id=region.REGION_CONFIG_ID,
        )
        self._emit("up", state.device.dev_eui, up)
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

    def _handle_ack(self, state: _DeviceState, ack: bool, dedup_id: str) -> None:
        pending = next((i for i in state.queue if i.is_pending), None)
        if pending is None:
            return
        if not ack and state.enabled_class == "C":
            return  # class C waits for its timeout
        state.queue.remove(pending)
        self._emit_ack(state, pending, ack, dedup_id)

    def _emit_ack(self, state: _DeviceState, item: QueueItem, ack: bool, dedup_id: str) -> None:
        self._emit(
            "ack",
            state.device.dev_eui,
            integration.AckEvent(
                deduplication_id=dedup_id,
                time=timestamp(self.config.now()),
                device_info=self._device_info(state),
                queue_item_id=item.id,
                acknowledged=ack,
                f_cnt_down=item.f_cnt_down or 0,
            ),
        )

    # -- MAC commands ------------------------------------------------------------------------
    def _handle_mac(
        self,
        state: _DeviceState,
        raw: bytes,
        collect: _Collect,
        dedup_id: str,
        now: datetime,
    ) -> bool:
        """Process uplink MAC commands; queue answers; return True if a downlink must go."""
        session = state.session
        assert session is not None
        must_send = False
        try:
            commands = parse_mac_commands(raw, uplink=True, strict=False)
        except ProtocolError as exc:
            log.warning("netsim: %s: undecodable MAC commands: %s", state.device.dev_eui, exc)
            commands = []
        if session.pending_link_adr is not None and not any(
            isinstance(c, LinkADRAns) for c in commands
        ):
            # No answer in the uplink after the request: it was lost or ignored. Clear it (as
            # ChirpStack clears unanswered pending MAC commands) and wait a history's worth of
            # uplinks before asking again, so a device that ignores ADR is not asked every time.
            session.pending_link_adr = None
            session.adr_quiet_until = session.uplinks + self.config.adr_history
        for command in commands:
            if isinstance(command, LinkCheckReq):
                dr = region.dr_of(collect.datr)
                margin = max(c.snr for c in collect.copies) - region.required_snr(dr)
                answer = LinkCheckAns(max(0, min(254, int(margin))), min(len(collect.copies), 255))
                session.mac_answers.append(answer.to_bytes())
                must_send = True
            elif isinstance(command, DeviceTimeReq):
                session.mac_answers.append(_device_time_ans(now).to_bytes())
                must_send = True
            elif isinstance(command, LinkADRAns):
                requested = session.pending_link_adr
                session.pending_link_adr = None
                ok = command.power_ack and command.data_rate_ack and command.channel_mask_ack
                if requested is not None and ok:
                    session.dr, session.tx_power_index, session.nb_trans = requested
                    session.history.clear()
                elif requested is not None:  # refused (e.g. a channel mask it cannot use)
                    session.adr_quiet_until = session.uplinks + self.config.adr_history
            elif isinstance(command, DevStatusAns):
                battery = command.battery
                self._emit(
                    "status",
                    state.device.dev_eui,
                    integration.StatusEvent(
                        deduplication_id=dedup_id,
                        time=timestamp(now),
                        device_info=self._device_info(state),
                        margin=command.margin,
                        external_power_source=battery == 0,
                        battery_level_unavailable=battery == 255,
                        battery_level=(
                            battery / 254 * 100 if 0 < battery < 255 else 0.0  # reference §2
                        ),
                    ),
                )
        return must_send

    def _adr(self, session: _Session) -> tuple[int, int, int] | None:
        """ChirpStack's default ADR (chirpstack ``src/adr/default.rs``): new (dr, txp, nbtrans)."""
        if not (self.config.adr_enabled and session.adr) or not session.history:
            return None
        if session.pending_link_adr is not None or session.uplinks < session.adr_quiet_until:
            return None
        dr = min(session.dr, region.MAX_DR)
        tx_power = session.tx_power_index
        nb_trans = _nb_trans(session)
        max_snr = max(snr for _, snr, _ in session.history)
        margin = max_snr - region.required_snr(dr) - self.config.installation_margin_db
        steps = int(margin / 3)
        if steps < 0 and len(session.history) < self.config.adr_history:
            steps = 0
        while steps > 0:
            if dr < region.MAX_DR:
                dr += 1
            elif tx_power < region.MAX_TX_POWER_INDEX:
                tx_power += 1
            else:
                break
            steps -= 1
        while steps < 0 and tx_power > 0:
            tx_power -= 1
            steps += 1
        wanted = (dr, tx_power, nb_trans)
        if wanted == (session.dr, session.tx_power_index, session.nb_trans):
            return None
        return wanted

    # -- downlinks ---------------------------------------------------------------------------
    def _class_a_windows(
        self, best: _RxCopy, frequency_hz: int, uplink_dr: int, delay_s: int
    ) -> list[_Window]:
        rx1_dr = max(uplink_dr - self.config.rx1_dr_offset, 0)
        rx1 = self._txpk(frequency_hz, rx1_dr, region.RX1_POWER_DBM, best.tmst, delay_s)
        rx2 = self._txpk(
            self.config.rx2_frequency_hz,
            self.config.rx2_dr,
            region.RX2_POWER_DBM,
            best.tmst,
            delay_s + 1,
        )
        return [rx1, rx2]

    def _txpk(
        self, frequency_hz: int, dr: int, power: int, tmst: int | None, delay_s: int | None
    ) -> _Window:
        txpk: dict[str, Any] = {"imme": delay_s is None}
        if delay_s is not None and tmst is not None:
            txpk["tmst"] = (tmst + delay_s * 1_000_000) & 0xFFFFFFFF
        txpk.update(
            {
                "freq": frequency_hz / 1_000_000,
                "rfch": 0,
                "powe": power,
                "modu": "LORA",
                "datr": region.data_rate(dr).name,
                "codr": "4/5",
                "ipol": True,
            }
        )
        return _Window(txpk, frequency_hz, dr, power, delay_s)

    def _next_item(self, state: _DeviceState, max_payload: int) -> QueueItem | None:
        """get_next_device_queue_item: drop expired and oversized items on the way."""
        now = self.config.now()
        while True:
            item = next((i for i in state.queue if not i.is_pending), None)
            if item is None:
                return None
            if item.expires_at is not None and item.expires_at <= now:
                state.queue.remove(item)
                self._log_event(
                    state,
                    "ERROR",
                    "EXPIRED",
                    "Device queue-item discarded because it has expired",
                    {"queue_item_id": item.id},
                )
                continue
            if len(item.data) > max_payload:
                state.queue.remove(item)
                self._log_event(
                    state,
                    "ERROR",
                    "DOWNLINK_PAYLOAD_SIZE",
                    "Device queue-item discarded because it exceeds the max. payload size",
                    {
                        "max_payload_size": str(max_payload),
                        "item_size": str(len(item.data)),
                        "queue_item_id": item.id,
                    },
                )
                continue
            return item

    def _class_a_response(
        self,
        state: _DeviceState,
        collect: _Collect,
        dedup_id: str,
        must_ack: bool,
        must_send: bool,
    ) -> None:
        session = state.session
        if session is None:
            return
        best = max(collect.copies, key=lambda c: c.snr)
        uplink_dr = region.dr_of(collect.datr)
        windows = self._class_a_windows(
            best, collect.frequency_hz, uplink_dr, self.config.rx1_delay_s
        )
        if self._gateways.get(best.gateway_id) is None:
            log.warning("netsim: gateway %s is not attached: no downlink", best.gateway_id)
            return
        self._compose(state, best, windows, must_ack, must_send)

    def _compose(
        self,
        state: _DeviceState,
        via: _RxCopy,
        windows: list[_Window],
        must_ack: bool,
        must_send: bool,
        *,
        class_c: bool = False,
    ) -> bool:
        """Build and send one data downlink if there is anything to send. True if sent."""
        session = state.session
        assert session is not None
        max_payload = region.max_payload(windows[0].dr)
        item = self._next_item(state, max_payload)
        more = item is not None and sum(1 for i in state.queue if not i.is_pending) > 1
        commands: list[bytes] = []
        link_adr = None
        if not class_c:
            commands.extend(session.mac_answers)
            session.mac_answers = []
            link_adr = self._adr(session)
            if link_adr is not None:
                dr, tx_power, nb_trans = link_adr
                # ChMask 0x00FF: the three default channels plus the five CFList ones.
                request = LinkADRReq(dr, tx_power, 0x00FF, 0, nb_trans)
                commands.append(request.to_bytes())
            every = self.config.dev_status_every
            if every > 0 and (session.uplinks - 1) % every == 0:
                commands.append(DevStatusReq().to_bytes())
        fopts = b"".join(commands)
        if item is None and not fopts and not must_ack and not must_send:
            return False
        f_pending = more
        fport: int | None = None
        payload = b""
        mac_in_payload = len(fopts) > 15
        if mac_in_payload:
            fport, payload, fopts = 0, fopts, b""
            f_pending = f_pending or item is not None
            item = None
        elif item is not None and len(item.data) + len(fopts) > max_payload:
            f_pending = True
            item = None
        elif item is not None:
            fport, payload = item.f_port, item.data
        confirmed = item is not None and item.confirmed
        frame = DataFrame.build(
            mtype=MType.CONFIRMED_DATA_DOWN if confirmed else MType.UNCONFIRMED_DATA_DOWN,
            dev_addr=DevAddr(session.dev_addr),
            fcnt=session.n_f_cnt_down,
            nwk_s_key=session.nwk_s_key,
            app_s_key=session.app_s_key,
            fport=fport,
            payload=payload,
            fopts=fopts,
            adr=self.config.adr_enabled,
            ack=must_ack,
            f_pending=f_pending,
        )
        if item is not None:
            item.f_cnt_down = session.n_f_cnt_down
        self._send(
            state,
            via,
            windows,
            frame.to_bytes(),
            f_cnt_down=session.n_f_cnt_down,
            item=item,
            link_adr=link_adr,
        )
        return True

    def _send(
        self,
        state: _DeviceState,
        via: _RxCopy,
        windows: list[_Window],
        phy: bytes,
        *,
        f_cnt_down: int | None,
        item: QueueItem | None,
        join_accept: bool = False,
        link_adr: tuple[int, int, int] | None = None,
    ) -> None:
        for window in windows:
            window.txpk["size"] = len(phy)
            window.txpk["data"] = base64.b64encode(phy).decode("ascii")
        inflight = _Inflight(
            downlink_id=self._random.getrandbits(32),
            dev_eui=state.device.dev_eui,
            windows=windows,
            index=0,
            gateway_id=via.gateway_id,
            context=via.tmst.to_bytes(4, "big"),
            f_cnt_down=f_cnt_down,
            item=item,
            join_accept=join_accept,
            link_adr=link_adr,
        )
        self._transmit(inflight)

    def _transmit(self, inflight: _Inflight) -> None:
        gateway = self._gateways.get(inflight.gateway_id)
        if gateway is None:
            log.warning("netsim: gateway %s is not attached: no downlink", inflight.gateway_id)
            return
        callback, auto_ack = gateway
        token = self._random.getrandbits(16)
        while (inflight.gateway_id, token) in self._inflight:
            token = self._random.getrandbits(16)
        now = self._loop_time()
        stale = [k for k, v in self._inflight.items() if now - v.sent_at > _TX_ACK_WAIT_S]
        for key in stale:  # ChirpStack#605: without a TX ack the counter does not advance
            del self._inflight[key]
        inflight.sent_at = now
        self._inflight[(inflight.gateway_id, token)] = inflight
        window = inflight.windows[inflight.index]
        self.counters["downlinks"] += 1
        if self.capture is not None:
            self.capture.write(
                "down",
                base64.b64decode(window.txpk["data"]),
                inflight.dev_eui,
                window.frequency_hz,
                window.txpk["datr"],
                inflight.gateway_id,
            )
        try:
            callback(dict(window.txpk), token)
        except asyncio.QueueFull:
            log.warning("netsim: gateway %s has no room for a downlink", inflight.gateway_id)
            self.tx_ack(inflight.gateway_id, token, "QUEUE_FULL")
            return
        except Exception:
            log.exception("netsim: the downlink callback of gateway %s failed", inflight.gateway_id)
            self.tx_ack(inflight.gateway_id, token, "INTERNAL_ERROR")
            return
        if auto_ack:
            self.tx_ack(inflight.gateway_id, token, "NONE")

    def tx_ack(self, gateway_id: str, token: int, error: str = "NONE") -> None:
        """The gateway's TX acknowledgement of the downlink sent with ``token``."""
        inflight = self._inflight.pop((gateway_id.lower(), token & 0xFFFF), None)
        if inflight is None:
            return
        state = self._devices[inflight.dev_eui]
        if error not in ("NONE", "OK", ""):
            if inflight.index + 1 < len(inflight.windows):
                inflight.index += 1
                self._transmit(inflight)
                return
            self._log_event(state, "ERROR", "DOWNLINK_GATEWAY", error)
            if inflight.item is not None:
                inflight.item.f_cnt_down = None  # stays queued for a retry
            return
        if inflight.join_accept:
            return
        session = state.session
        if session is None:
            return
        session.n_f_cnt_down = (session.n_f_cnt_down + 1) & 0xFFFFFFFF
        if inflight.link_adr is not None:
            session.pending_link_adr = inflight.link_adr
        item = inflight.item
        if item is None:
            return
        window = inflight.windows[inflight.index]
        sf, bw = region.parse_datr(window.txpk["datr"])
        timing = (
            gw.Timing(immediately=gw.ImmediatelyTimingInfo())
            if window.delay_s is None
            else gw.Timing(delay=gw.DelayTimingInfo(delay={"seconds": window.delay_s}))
        )
        self._emit(
            "txack",
            state.device.dev_eui,
            integration.TxAckEvent(
                downlink_id=inflight.downlink_id,
                time=timestamp(self.config.now()),
                device_info=self._device_info(state),
                queue_item_id=item.id,
                f_cnt_down=inflight.f_cnt_down or 0,
                gateway_id=inflight.gateway_id,
                tx_info=gw.DownlinkTxInfo(
                    frequency=window.frequency_hz,
                    power=window.power_dbm,
                    modulation=gw.Modulation(
                        lora=gw.LoraModulationInfo(
                            bandwidth=bw,
                            spreading_factor=sf,
                            code_rate=gw.CodeRate.Value("CR_4_5"),
                            polarization_inversion=True,
                        )
                    ),
                    timing=timing,
                    context=inflight.context,
                ),
            ),
        )
        if item in state.queue:
            if item.confirmed:
                item.is_pending = True
                if state.enabled_class == "C":
                    item.timeout_at = self._loop_time() + self.config.class_c_timeout_s
                    self._wake.set()
            else:
                state.queue.remove(item)

    # -- class C scheduler -------------------------------------------------------------------
    async def _run_scheduler(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.scheduler_interval_s)
            self._wake.clear()
            try:
                self.schedule_class_c()
            except Exception:
                log.exception("netsim: the class C scheduler failed")

    def schedule_class_c(self) -> None:
        """One pass of the class B/C scheduler (ChirpStack ``downlink/scheduler.rs``)."""
        now = self._loop_time()
        next_wake: float | None = None
        for state in self._devices.values():
            if state.enabled_class != "C" or state.session is None:
                continue
            for item in list(state.queue):
                if item.is_pending and item.timeout_at is not None:
                    if item.timeout_at <= now:
                        state.queue.remove(item)
                        self._emit_ack(state, item, False, "")
                    else:
                        next_wake = min(next_wake or item.timeout_at, item.timeout_at)
            if not state.queue or any(i.is_pending for i in state.queue):
                continue
            if not state.last_rx or state.session.last_f_cnt is None:
                continue  # check_for_first_uplink: no gateway known yet
            if now < state.scheduler_run_after:
                next_wake = min(next_wake or state.scheduler_run_after, state.scheduler_run_after)
                continue
            via = max(state.last_rx, key=lambda c: c.snr)
            if via.gateway_id not in self._gateways:
                continue
            window = self._txpk(
                self.config.rx2_frequency_hz,
                self.config.rx2_dr,
                region.RX2_POWER_DBM,
                None,
                None,
            )
            if self._compose(state, via, [window], False, False, class_c=True):
                state.scheduler_run_after = now + self.config.class_c_lock_s
                next_wake = min(next_wake or state.scheduler_run_after, state.scheduler_run_after)
        if next_wake is not None and self._loop is not None:
            self._later(max(next_wake - now, 0.0) + 0.001, self._wake.set)

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
        if not 1 <= f_port <= 255:
            raise CommandError(f"fPort must be 1..255, got {f_port}")
        if f_port >= 225:
            # ChirpStack queues any u8 fPort; protocol.lorawan refuses to build 225..255 (RFU,
            # L2 §4.3.2), so they are refused here, at the queue, with the reason in the log.
            raise CommandError(f"fPort {f_port} is RFU (LoRaWAN L2 §4.3.2: 225..255)")
        if item_id is not None and not _uuid_ok(item_id):
            raise CommandError(f"id is not a UUID: {item_id!r}")
        if flush_queue:
            state.queue = [i for i in state.queue if i.is_pending]
        new_id = str(uuid.UUID(item_id)) if item_id else str(uuid.uuid4())
        if any(i.id == new_id for i in state.queue):
            # the id is the primary key of ChirpStack's device_queue_item table
            # (storage/device_queue.rs enqueue_item): a repeated id is refused, not queued twice
            raise CommandError(f"queue item {new_id} already exists")
        item = QueueItem(
            id=new_id,
            dev_eui=state.device.dev_eui,
            f_port=f_port,
            confirmed=confirmed,
            data=bytes(data),
            expires_at=expires_at,
        )
        state.queue.append(item)
        if state.enabled_class == "C":
            self._wake.set()
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
        on this process's logger: nothing is published. Unknown keys are ignored (pbjson
        ``ignore_unknown_fields``); that includes ``flushQueue``, which is not a
        ``DownlinkCommand`` field: flushing is the gRPC ``Enqueue.flush_queue`` /
        ``FlushQueue`` path, here :meth:`enqueue` with ``flush_queue=True`` and
        :meth:`flush_queue` (reference §5).
        """
        try:
            return self._command(topic, payload, marshaler)
        except CommandError as exc:
            log.warning("netsim: downlink command on %s refused: %s", topic, exc)
            return None

    def _command(self, topic: str, payload: bytes, marshaler: str) -> str:
        parts = topic.split("/")
        if len(parts) != 6 or parts[0] != "application" or parts[2] != "device":
            raise CommandError("not a command topic")
        if parts[5] != "down" or parts[4] != "command":
            raise CommandError(f"unknown command {parts[5]!r}")
        if parts[1] != self.config.application_id:
            raise CommandError(f"application {parts[1]} is not served here")
        topic_dev_eui = parts[3]
        command = integration.DownlinkCommand()
        try:
            if marshaler == "protobuf":
                command.ParseFromString(payload)
            else:
                document = json.loads(payload)
                if not isinstance(document, dict):
                    raise CommandError("the command is not a JSON object")
                json_format.ParseDict(document, command, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError, ProtobufDecodeError) as exc:
            raise CommandError(f"cannot parse the command: {exc}") from exc
        if command.dev_eui != topic_dev_eui:
            # chirpstack/chirpstack#72: "Payload dev_eui … does not match topic dev_eui …"
            raise CommandError(
                f"Payload dev_eui {command.dev_eui} does not match topic dev_eui {topic_dev_eui}"
            )
        f_port = command.f_port & 0xFF  # ChirpStack casts to u8 before validating
        if f_port == 0:
            raise CommandError("fPort must be > 0")
        data = bytes(command.data)
        if command.HasField("object"):
            data = b""  # codec NONE: the object encodes to an empty payload
        expires_at = (
            command.expires_at.ToDatetime(tzinfo=UTC) if command.HasField("expires_at") else None
        )
        return self.enqueue(
            topic_dev_eui.lower(),
            data,
            f_port=f_port,
            confirmed=command.confirmed,
            item_id=command.id or None,
            expires_at=expires_at,
        )


_GPS_EPOCH = datetime(1980, 1, 6, tzinfo=UTC)
_GPS_LEAP_SECONDS = 18  # GPS - UTC since 2017-01-01 (IERS Bulletin C)


def _device_time_ans(now: datetime) -> DeviceTimeAns:
    """DeviceTimeAns for an uplink received at ``now`` (L2 §5.10: GPS seconds + 1/256 s)."""
    since = (now - _GPS_EPOCH).total_seconds() + _GPS_LEAP_SECONDS
    seconds = int(since)
    return DeviceTimeAns(seconds & 0xFFFFFFFF, int((since - seconds) * 256) & 0xFF)


_PLR_TABLE = ((1, 1, 2), (1, 2, 3), (2, 3, 3), (3, 3, 3))  # chirpstack src/adr/default.rs


def _nb_trans(session: _Session) -> int:
    """NbTrans from the packet-loss rate of the uplink history (ChirpStack's table)."""
    history = list(session.history)
    if len(history) < 2:
        return session.nb_trans
    expected = history[-1][0] - history[0][0] + 1
    lost = max(expected - len(history), 0)
    loss = 100.0 * lost / expected
    row = 0 if loss < 5 else 1 if loss < 10 else 2 if loss < 30 else 3
    return _PLR_TABLE[row][min(max(session.nb_trans, 1), 3) - 1]


def _capture_dev_eui(server: NetworkServer, phy: bytes) -> str | None:
    """The DevEUI of an uplink for the capture file: from a Join-Request or the DevAddr."""
    try:
        frame = PHYPayload.from_bytes(phy)
    except ProtocolError:
        return None
    if isinstance(frame, JoinRequest):
        return frame.dev_eui.hex()
    if isinstance(frame, DataFrame):
        return server._by_addr.get(frame.dev_addr.value)
    return None
