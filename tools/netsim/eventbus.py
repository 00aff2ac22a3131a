"""Integration events out of the network server: ``up``, ``join``, ``ack``, ``txack``,
``status`` and ``log`` as ``chirpstack_api.integration`` messages, to every sink.

``deviceInfo`` is built as ChirpStack fills it (reference/chirpstack.md §2): tenant,
application, a device profile per class (``citypack-class-{a|c}-eu868``), the device's name,
tags and the class it has enabled (A until it joined).
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chirpstack_api import common, gw, integration
from google.protobuf.message import Message

from protocol.lorawan.data import DataFrame
from protocol.lorawan.maccommands import DevStatusAns
from protocol.lorawan.mhdr import MType
from tools.netsim import region
from tools.netsim.config import NetsimConfig
from tools.netsim.events import timestamp
from tools.netsim.state import Collect, DeviceState, Inflight, QueueItem, RxCopy

__all__ = ["EventBus", "EventSink"]

log = logging.getLogger("citypack.netsim")

_NAMESPACE = uuid.UUID("5d6c1f0e-9b7a-4c3d-8e2f-1a0b9c8d7e6f")

EventSink = Callable[[str, str, Message], None]
"""``sink(event, dev_eui, message)``: ``event`` is up/join/ack/txack/status/log."""


class EventBus:
    """Builds the common parts of events and hands every event to every sink."""

    def __init__(self, config: NetsimConfig, rnd: random.Random | None = None) -> None:
        self.config = config
        self._random = rnd or random.Random()  # uplink ids (the server's, for seeded runs)
        self._sinks: list[EventSink] = []

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def device_info(self, state: DeviceState) -> Any:
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

    def emit(self, event: str, dev_eui: str, message: Message) -> None:
        for sink in list(self._sinks):
            try:
                sink(event, dev_eui, message)
            except Exception:
                log.exception("netsim: an event sink failed on %s", event)

    def log_event(
        self,
        state: DeviceState,
        level: str,
        code: str,
        description: str,
        context: dict[str, str] | None = None,
    ) -> None:
        message = integration.LogEvent(
            time=timestamp(self.config.now()),
            device_info=self.device_info(state),
            level=integration.LogLevel.Value(level),
            code=integration.LogCode.Value(code),
            description=description,
            context=context or {},
        )
        self.emit("log", state.device.dev_eui, message)

    def ack(self, state: DeviceState, item: QueueItem, ack: bool, dedup_id: str) -> None:
        self.emit(
            "ack",
            state.device.dev_eui,
            integration.AckEvent(
                deduplication_id=dedup_id,
                time=timestamp(self.config.now()),
                device_info=self.device_info(state),
                queue_item_id=item.id,
                acknowledged=ack,
                f_cnt_down=item.f_cnt_down or 0,
            ),
        )

    def status(
        self, state: DeviceState, answer: DevStatusAns, dedup_id: str, now: datetime
    ) -> None:
        """``status`` from a DevStatusAns (L2 §5.5: battery 0 external, 255 unknown)."""
        battery = answer.battery
        self.emit(
            "status",
            state.device.dev_eui,
            integration.StatusEvent(
                deduplication_id=dedup_id,
                time=timestamp(now),
                device_info=self.device_info(state),
                margin=answer.margin,
                external_power_source=battery == 0,
                battery_level_unavailable=battery == 255,
                battery_level=(
                    battery / 254 * 100 if 0 < battery < 255 else 0.0  # reference §2
                ),
            ),
        )

    def txack(self, state: DeviceState, inflight: Inflight, item: QueueItem) -> None:
        """``txack`` for a queue item the gateway transmitted in ``inflight``'s window."""
        window = inflight.windows[inflight.index]
        sf, bw = region.parse_datr(window.txpk["datr"])
        timing = (
            gw.Timing(immediately=gw.ImmediatelyTimingInfo())
            if window.delay_s is None
            else gw.Timing(delay=gw.DelayTimingInfo(delay={"seconds": window.delay_s}))
        )
        self.emit(
            "txack",
            state.device.dev_eui,
            integration.TxAckEvent(
                downlink_id=inflight.downlink_id,
                time=timestamp(self.config.now()),
                device_info=self.device_info(state),
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

    def join(self, state: DeviceState, dedup_id: str, now: datetime, dev_addr: int) -> None:
        """``join``: published with the first data uplink after the join, as ChirpStack does."""
        self.emit(
            "join",
            state.device.dev_eui,
            integration.JoinEvent(
                deduplication_id=dedup_id,
                time=timestamp(now),
                device_info=self.device_info(state),
                dev_addr=f"{dev_addr:08x}",
                region_config_id=region.REGION_CONFIG_ID,
            ),
        )

    def up(
        self,
        state: DeviceState,
        frame: DataFrame,
        collect: Collect,
        dedup_id: str,
        now: datetime,
        f_cnt: int,
        data: bytes,
    ) -> None:
        """``up`` with one ``rxInfo`` per gateway that heard the frame."""
        self.emit(
            "up",
            state.device.dev_eui,
            integration.UplinkEvent(
                deduplication_id=dedup_id,
                time=timestamp(now),
                device_info=self.device_info(state),
                dev_addr=f"{frame.dev_addr.value:08x}",
                adr=frame.fctrl.adr,
                dr=region.dr_of(collect.datr),
                f_cnt=f_cnt,
                f_port=frame.fport or 0,
                confirmed=frame.mhdr.mtype == MType.CONFIRMED_DATA_UP,
                data=data,
                rx_info=[self._rx_info(c) for c in collect.copies],
                tx_info=self._tx_info(collect),
                region_config_id=region.REGION_CONFIG_ID,
            ),
        )

    def _rx_info(self, copy: RxCopy) -> Any:
        return gw.UplinkRxInfo(
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

    @staticmethod
    def _tx_info(collect: Collect) -> Any:
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
