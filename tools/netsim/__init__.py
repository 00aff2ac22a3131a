"""A ChirpStack v4-compatible network server emulator (issue 6, ``citypack netsim``).

It speaks Semtech's GWMP v2 to gateways on UDP and ChirpStack's MQTT integration to
applications, with a LoRaWAN 1.0.4 EU868 network server between them, built on
``protocol.lorawan``. Sources: ChirpStack v4 docs and source (topics, event JSON, queue semantics),
L2 1.0.4 and RP002-1.0.4 (frames, crypto, EU868), Lora-net/packet_forwarder PROTOCOL.TXT (GWMP).

Modules: :mod:`~tools.netsim.server` (the network server, which ties together ``config``,
``state``, ``dedup``, ``join``, ``fcnt``, ``mac``, ``adr``, ``queue``, ``compose``, ``commands``,
``downlink`` and ``eventbus``, one module per concept), :mod:`~tools.netsim.gwmp` (GWMP
codec, UDP server and a small packet-forwarder client), :mod:`~tools.netsim.mqtt` (the MQTT
integration), :mod:`~tools.netsim.events` (ChirpStack's JSON rules), :mod:`~tools.netsim.devices`
(keys files), :mod:`~tools.netsim.capture` (air capture), :mod:`~tools.netsim.runner` (all of
it together, as ``citypack netsim`` runs it).

In-process interface (what the fleet simulator uses instead of UDP)
-------------------------------------------------------------------

Everything runs in one asyncio event loop; the calls below are plain (non-async) methods that
never block and never raise on bad radio input::

    from tools.netsim import Netsim, NetsimConfig, load_devices

    async with Netsim(load_devices(path), broker_url="mqtt://127.0.0.1:1883",
                      config=NetsimConfig(application_id=app_id)) as netsim:
        ns = netsim.server                                   # a NetworkServer

        # 1. a gateway: downlinks arrive as GWMP txpk dicts
        def on_downlink(txpk: dict, token: int) -> None: ...
        ns.attach_gateway("0016c001f153a14c", on_downlink, auto_ack=True)

        # 2. an uplink as that gateway received it: a GWMP rxpk dict
        ns.receive_uplink("0016c001f153a14c", {
            "tmst": 1_000_000, "freq": 868.1, "datr": "SF7BW125", "codr": "4/5",
            "rssi": -87, "lsnr": 7.5, "chan": 0, "rfch": 0, "stat": 1, "modu": "LORA",
            "size": len(phy), "data": base64.b64encode(phy).decode()})

- ``receive_uplink(gateway_id, rxpk)``: copies of the same frame from several gateways within
  ``config.dedup_window_s`` (200 ms) become one ``up`` event with every ``rxInfo``.
  :func:`tools.netsim.gwmp.rxpk` builds the dict.
- ``on_downlink(txpk, token)`` is called for every frame to transmit. ``txpk`` is the GWMP
  object: ``imme`` (True for class C: send at once), ``tmst`` (class A: the uplink's ``tmst``
  plus the RX delay in µs, i.e. +1 s for RX1 of data, +5 s for a Join-Accept; RX2 is one second
  later), ``freq`` (MHz), ``datr`` (``"SF12BW125"``), ``codr``, ``powe``, ``ipol`` (True),
  ``rfch``, ``modu``, ``size`` and ``data`` (base64 PHYPayload).
- ``ns.attach_gateway_queue(gateway_id)`` does the same with an ``asyncio.Queue`` of
  ``(txpk, token)`` instead of a callback (a full queue is the gateway's ``QUEUE_FULL``).
- With ``auto_ack=True`` the emulator treats each downlink as transmitted when the callback
  returns (the TX ack that advances the downlink counter and yields ``txack``). With
  ``auto_ack=False`` call ``ns.tx_ack(gateway_id, token, error)`` yourself; ``error`` is the
  packet forwarder's word (``"NONE"`` for success, ``"TOO_LATE"``, ``"COLLISION_PACKET"``…).
  A failed RX1 is retried in RX2 with a new token; if RX2 fails too a ``log`` DOWNLINK_GATEWAY
  event is published and the queue item stays.
- Events also go to any ``ns.add_event_sink(fn)`` as ``fn(event, dev_eui, protobuf_message)``
  (``chirpstack_api.integration`` messages; :func:`tools.netsim.events.chirpstack_json`
  renders them as ChirpStack does).
- The queue can be fed without MQTT: ``ns.enqueue(dev_eui, data, f_port=…, confirmed=…,
  item_id=…, expires_at=…, flush_queue=…)`` (gRPC ``Enqueue`` semantics), ``ns.flush_queue``,
  ``ns.queue(dev_eui)``, and ``ns.handle_command(topic, payload, marshaler)`` for a raw
  ``command/down`` message.
- Timing: ``NetsimConfig`` holds ChirpStack's delays (dedup 200 ms, downlink data delay 100 ms,
  class C scheduler 1 s and locks 5 s, class C confirmed timeout 5 s); a simulator running
  faster than real time may shrink them. ``config.now`` supplies event timestamps (a simulated
  clock may be injected).

Multicast (issue 18): ``ns.multicast`` holds ChirpStack's class C multicast groups
(:mod:`~tools.netsim.multicast`), ``ns.enqueue_multicast(group_id, data, f_port=…)`` queues a
payload, and :func:`tools.netsim.grpcapi.start_grpc` (``Netsim(grpc=(host, port),
api_token=…)``, ``citypack netsim --grpc HOST:PORT --api-token-file FILE``) serves ChirpStack's
gRPC ``MulticastGroupService`` and ``DeviceService.List``. A multicast frame goes ``imme``
through each gateway covering the group; its capture line has ``dev_eui`` ``""`` (the McAddr is
the frame's DevAddr).

Over UDP the same server is reached with any packet forwarder (``--udp HOST:PORT``);
:class:`tools.netsim.gwmp.GwmpClient` is a minimal one.
"""

from tools.netsim.capture import Capture
from tools.netsim.devices import Device, DeviceFileError, load_devices
from tools.netsim.events import chirpstack_json, encode_event
from tools.netsim.gwmp import GwmpClient, GwmpServer, rxpk
from tools.netsim.mqtt import MqttIntegration
from tools.netsim.runner import Netsim
from tools.netsim.server import (
    DEFAULT_APPLICATION_ID,
    CommandError,
    NetsimConfig,
    NetsimError,
    NetworkServer,
    QueueItem,
)

__all__ = [
    "DEFAULT_APPLICATION_ID",
    "Capture",
    "CommandError",
    "Device",
    "DeviceFileError",
    "GwmpClient",
    "GwmpServer",
    "MqttIntegration",
    "Netsim",
    "NetsimConfig",
    "NetsimError",
    "NetworkServer",
    "QueueItem",
    "chirpstack_json",
    "encode_event",
    "load_devices",
    "rxpk",
]
