"""Multicast groups on the emulator: ChirpStack's gRPC MulticastGroupService, scheduling through
the gateways that heard the members, and the frames in the air capture checked by a receiver
that derives the session keys from the McKey on its own (tools/bench/street_lamps.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from chirpstack_api import api

from protocol import codec
from protocol.lorawan.keys import AESKey
from tests.netsim.conftest import GW1, GW2, Harness, fast_config, until
from tests.netsim.fakenode import FakeNode, air
from tools.bench.street_lamps import McSession, mc_session_keys
from tools.netsim.capture import Capture
from tools.netsim.devices import Device
from tools.netsim.grpcapi import start_grpc
from tools.netsim.multicast import minimum_gateway_set
from tools.netsim.server import NetworkServer

TOKEN = "test-api-token"
MC_KEY = bytes.fromhex("01020304050607080910111213141516")
MC_ADDR = 0x01FF_A0B1
APP = fast_config().application_id


def lamps(count: int) -> list[Device]:
    return [
        Device(
            dev_eui=f"70b3d57ed00c{i:04x}",
            join_eui="70b3d57ed00000ff",
            app_key=AESKey(bytes([i % 256]) * 16),
            device_class="C",
            name=f"lamp-{i:03d}",
        )
        for i in range(count)
    ]


@dataclass
class Rig:
    harness: Harness
    stub: Any
    capture_path: Path
    devices: list[Device]
    stub_devices: Any = None

    def meta(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {TOKEN}")]

    def multicast_lines(self) -> list[dict[str, Any]]:
        lines = [json.loads(x) for x in self.capture_path.read_text().splitlines()]
        return [x for x in lines if x["direction"] == "down" and x["dev_eui"] == ""]

    async def create_group(self, **overrides: Any) -> str:
        app_s_key, nwk_s_key = mc_session_keys(MC_KEY, MC_ADDR)
        fields: dict[str, Any] = {
            "name": "street-elm",
            "application_id": APP,
            "mc_addr": f"{MC_ADDR:08x}",
            "mc_nwk_s_key": nwk_s_key.hex(),
            "mc_app_s_key": app_s_key.hex(),
            "f_cnt": 0,
            "group_type": api.MulticastGroupType.Value("CLASS_C"),
            "dr": 3,
            "frequency": 869_525_000,
        }
        fields.update(overrides)
        response = await self.stub.Create(
            api.CreateMulticastGroupRequest(multicast_group=api.MulticastGroup(**fields)),
            metadata=self.meta(),
        )
        return str(response.id)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    devices = lamps(30)
    capture_path = tmp_path / "air.jsonl"
    with Capture(capture_path) as capture:
        ns = NetworkServer(devices, fast_config(multicast_class_c_margin_s=0.05), capture=capture)
        harness = Harness(ns)
        ns.add_event_sink(harness.sink)
        harness.gateway(GW1)
        harness.gateway(GW2)
        async with ns:
            grpc_server, port = await start_grpc(ns, "127.0.0.1", 0, TOKEN)
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    yield Rig(
                        harness,
                        api.MulticastGroupServiceStub(channel),
                        capture_path,
                        devices,
                        api.DeviceServiceStub(channel),
                    )
            finally:
                await grpc_server.stop(grace=None)
        assert ns.counters["internal_errors"] == 0


async def join_and_report(rig: Rig, devices: list[Device], gateway: str) -> None:
    """OTAA join and one uplink each (so the network knows which gateway hears them)."""
    for device in devices:
        node = FakeNode.for_device(device)
        await rig.harness.join(node, gateway)
        rig.harness.ns.receive_uplink(gateway, air(node.uplink(b"\x01")))
        await rig.harness.event("up")
    for queue in rig.harness.downlinks.values():  # drop the class A answers, if any
        while not queue.empty():
            queue.get_nowait()


async def test_group_lamp_override_is_one_frame_for_thirty_lamps(rig: Rig) -> None:
    await join_and_report(rig, rig.devices, GW1)
    group_id = await rig.create_group()
    for device in rig.devices:
        await rig.stub.AddDevice(
            api.AddDeviceToMulticastGroupRequest(
                multicast_group_id=group_id, dev_eui=device.dev_eui
            ),
            metadata=rig.meta(),
        )
    f_port, data = codec.encode(
        "lamp_override", {"command_id": 7, "dim_level": 20, "duration_s": 600}
    )
    response = await rig.stub.Enqueue(
        api.EnqueueMulticastGroupQueueItemRequest(
            queue_item=api.MulticastGroupQueueItem(
                multicast_group_id=group_id, f_port=f_port, data=data
            )
        ),
        metadata=rig.meta(),
    )
    assert response.f_cnt == 0
    await until(lambda: len(rig.multicast_lines()) >= 1)
    txpk, _ = await rig.harness.downlink(GW1)
    assert txpk["imme"] is True and txpk["freq"] == 869.525 and txpk["datr"] == "SF9BW125"
    lines = rig.multicast_lines()
    assert len(lines) == 1  # one frame on the air for the 30 lamps
    assert lines[0]["gateway"] == GW1 and lines[0]["frequency"] == 869_525_000
    assert set(lines[0]) == {"time", "direction", "phy", "dev_eui", "frequency", "datr", "gateway"}
    # a receiver holding the McKey (as after McGroupSetupReq) verifies and decrypts it
    phy = bytes.fromhex(lines[0]["phy"])
    assert McSession(MC_ADDR, MC_KEY).open(phy) == (0, f_port, data)
    assert McSession(MC_ADDR, bytes(16)).open(phy) is None  # a wrong McKey does not verify
    assert McSession(MC_ADDR + 1, MC_KEY).open(phy) is None  # another group's address
    # the queue item is gone after the TX ack; the group's FCnt moved on
    listed = await rig.stub.ListQueue(
        api.ListMulticastGroupQueueRequest(multicast_group_id=group_id), metadata=rig.meta()
    )
    assert list(listed.items) == []
    got = await rig.stub.Get(api.GetMulticastGroupRequest(id=group_id), metadata=rig.meta())
    assert got.multicast_group.f_cnt == 1 and got.multicast_group.mc_addr == f"{MC_ADDR:08x}"


async def test_fcnt_increases_and_replays_are_refused(rig: Rig) -> None:
    await join_and_report(rig, rig.devices[:2], GW1)
    group_id = await rig.create_group(f_cnt=65_534)  # crosses the 16-bit boundary
    for device in rig.devices[:2]:
        await rig.stub.AddDevice(
            api.AddDeviceToMulticastGroupRequest(
                multicast_group_id=group_id, dev_eui=device.dev_eui
            ),
            metadata=rig.meta(),
        )
    payloads = [bytes([n]) * 4 for n in range(3)]
    counts = []
    for payload in payloads:
        response = await rig.stub.Enqueue(
            api.EnqueueMulticastGroupQueueItemRequest(
                queue_item=api.MulticastGroupQueueItem(
                    multicast_group_id=group_id, f_port=10, data=payload
                )
            ),
            metadata=rig.meta(),
        )
        counts.append(response.f_cnt)
    assert counts == [65_534, 65_535, 65_536]
    await until(lambda: len(rig.multicast_lines()) == 3)
    receiver = McSession(MC_ADDR, MC_KEY, last_f_cnt=65_533)
    frames = [bytes.fromhex(x["phy"]) for x in rig.multicast_lines()]
    assert [receiver.open(f) for f in frames] == [
        (c, 10, p) for c, p in zip(counts, payloads, strict=True)
    ]
    assert receiver.open(frames[0]) is None  # a replay verifies but is not newer


async def test_gateway_set_covers_every_member(rig: Rig) -> None:
    await join_and_report(rig, rig.devices[:3], GW1)
    await join_and_report(rig, rig.devices[3:5], GW2)
    group_id = await rig.create_group()
    for device in rig.devices[:5]:
        await rig.stub.AddDevice(
            api.AddDeviceToMulticastGroupRequest(
                multicast_group_id=group_id, dev_eui=device.dev_eui
            ),
            metadata=rig.meta(),
        )
    await rig.stub.Enqueue(
        api.EnqueueMulticastGroupQueueItemRequest(
            queue_item=api.MulticastGroupQueueItem(
                multicast_group_id=group_id, f_port=10, data=b"hi"
            )
        ),
        metadata=rig.meta(),
    )
    await until(lambda: len(rig.multicast_lines()) == 2)
    lines = rig.multicast_lines()
    assert sorted(x["gateway"] for x in lines) == [GW1, GW2]
    assert lines[0]["phy"] == lines[1]["phy"]  # the same frame (same FCnt) through both


def test_minimum_gateway_set() -> None:
    assert minimum_gateway_set({}) == []
    assert minimum_gateway_set({"d1": {"g1"}}) == ["g1"]
    assert minimum_gateway_set({"d1": {"g1", "g2"}}) == ["g1"]
    assert minimum_gateway_set({"d1": {"g1"}, "d2": {"g2"}}) == ["g1", "g2"]
    assert minimum_gateway_set({"d1": {"g1", "g2"}, "d2": {"g2"}}) == ["g2"]
    assert minimum_gateway_set({"d1": set(), "d2": {"g3"}}) == ["g3"]  # never heard: no cover


async def test_queue_list_and_flush(tmp_path: Path) -> None:
    devices = lamps(1)
    ns = NetworkServer(devices, fast_config(multicast_class_c_margin_s=3600.0))
    harness = Harness(ns)
    ns.add_event_sink(harness.sink)
    harness.gateway(GW1)
    async with ns:
        grpc_server, port = await start_grpc(ns, "127.0.0.1", 0, TOKEN)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                rig = Rig(harness, api.MulticastGroupServiceStub(channel), tmp_path / "x", devices)
                await join_and_report(rig, devices, GW1)
                group_id = await rig.create_group()
                await rig.stub.AddDevice(
                    api.AddDeviceToMulticastGroupRequest(
                        multicast_group_id=group_id, dev_eui=devices[0].dev_eui
                    ),
                    metadata=rig.meta(),
                )
                # both in one step of the loop (as two calls racing in ChirpStack's database):
                # the second is due a margin after the first
                for payload in (b"one", b"two"):
                    ns.enqueue_multicast(group_id, payload, f_port=10)
                await harness.downlink(GW1)  # the first goes now; the second waits its margin
                listed = await rig.stub.ListQueue(
                    api.ListMulticastGroupQueueRequest(multicast_group_id=group_id),
                    metadata=rig.meta(),
                )
                assert [(i.f_cnt, bytes(i.data)) for i in listed.items] == [(1, b"two")]
                await rig.stub.FlushQueue(
                    api.FlushMulticastGroupQueueRequest(multicast_group_id=group_id),
                    metadata=rig.meta(),
                )
                listed = await rig.stub.ListQueue(
                    api.ListMulticastGroupQueueRequest(multicast_group_id=group_id),
                    metadata=rig.meta(),
                )
                assert list(listed.items) == []
        finally:
            await grpc_server.stop(grace=None)


async def test_api_errors(rig: Rig) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.List(api.ListMulticastGroupsRequest(application_id=APP))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.create_group(mc_nwk_s_key="00")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "mc_nwk_s_key" in (info.value.details() or "")
    assert "00" * 16 not in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.create_group(group_type=api.MulticastGroupType.Value("CLASS_B"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.create_group(frequency=915_000_000)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    group_id = await rig.create_group()
    missing = "00000000-0000-4000-8000-000000000000"
    for call in (
        rig.stub.Get(api.GetMulticastGroupRequest(id=missing), metadata=rig.meta()),
        rig.stub.AddDevice(
            api.AddDeviceToMulticastGroupRequest(
                multicast_group_id=group_id, dev_eui="0102030405060708"
            ),
            metadata=rig.meta(),
        ),
        rig.stub.RemoveDevice(
            api.RemoveDeviceFromMulticastGroupRequest(
                multicast_group_id=group_id, dev_eui=rig.devices[0].dev_eui
            ),
            metadata=rig.meta(),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Enqueue(
            api.EnqueueMulticastGroupQueueItemRequest(
                queue_item=api.MulticastGroupQueueItem(multicast_group_id=group_id, f_port=0)
            ),
            metadata=rig.meta(),
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    listed = await rig.stub.List(
        api.ListMulticastGroupsRequest(application_id=APP, limit=10), metadata=rig.meta()
    )
    assert listed.total_count == 1 and listed.result[0].name == "street-elm"
    await rig.stub.Delete(api.DeleteMulticastGroupRequest(id=group_id), metadata=rig.meta())
    listed = await rig.stub.List(
        api.ListMulticastGroupsRequest(application_id=APP), metadata=rig.meta()
    )
    assert listed.total_count == 0
    await asyncio.sleep(0)


async def test_oversized_and_expired_items_are_dropped(rig: Rig) -> None:
    await join_and_report(rig, rig.devices[:1], GW1)
    group_id = await rig.create_group(dr=0)  # N = 51 bytes at DR0 (RP002 §2.2.6)
    await rig.stub.AddDevice(
        api.AddDeviceToMulticastGroupRequest(
            multicast_group_id=group_id, dev_eui=rig.devices[0].dev_eui
        ),
        metadata=rig.meta(),
    )
    past = datetime.now(UTC) - timedelta(seconds=1)
    ns = rig.harness.ns
    ns.enqueue_multicast(group_id, bytes(52), f_port=10)
    ns.enqueue_multicast(group_id, b"late", f_port=10, expires_at=past)
    ns.enqueue_multicast(group_id, bytes(51), f_port=10)
    await until(lambda: len(rig.multicast_lines()) == 1 and not ns.multicast.queue(group_id))
    frame = bytes.fromhex(rig.multicast_lines()[0]["phy"])
    assert McSession(MC_ADDR, MC_KEY).open(frame) == (2, 10, bytes(51))  # FCnt 0, 1 were used
    assert ns.counters["internal_errors"] == 0


async def test_gateways_added_to_the_group_take_precedence(rig: Rig) -> None:
    await join_and_report(rig, rig.devices[:2], GW1)
    group_id = await rig.create_group()
    await rig.stub.AddDevice(
        api.AddDeviceToMulticastGroupRequest(
            multicast_group_id=group_id, dev_eui=rig.devices[0].dev_eui
        ),
        metadata=rig.meta(),
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:  # a member once
        await rig.stub.AddDevice(
            api.AddDeviceToMulticastGroupRequest(
                multicast_group_id=group_id, dev_eui=rig.devices[0].dev_eui
            ),
            metadata=rig.meta(),
        )
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await rig.stub.AddGateway(
        api.AddGatewayToMulticastGroupRequest(multicast_group_id=group_id, gateway_id=GW2),
        metadata=rig.meta(),
    )
    rig.harness.ns.enqueue_multicast(group_id, b"via gw2", f_port=10)
    await until(lambda: len(rig.multicast_lines()) == 1)
    assert rig.multicast_lines()[0]["gateway"] == GW2  # not GW1, which heard the member
    await rig.stub.RemoveGateway(
        api.RemoveGatewayFromMulticastGroupRequest(multicast_group_id=group_id, gateway_id=GW2),
        metadata=rig.meta(),
    )
    rig.harness.ns.enqueue_multicast(group_id, b"via gw1", f_port=10)
    await until(lambda: len(rig.multicast_lines()) == 2)
    assert rig.multicast_lines()[1]["gateway"] == GW1  # back to the members' gateways
    members = await rig.stub_devices.List(
        api.ListDevicesRequest(application_id=APP, multicast_group_id=group_id),
        metadata=rig.meta(),
    )
    assert [d.dev_eui for d in members.result] == [rig.devices[0].dev_eui]


async def test_the_firmware_hears_a_group_command_after_its_setup(rig: Rig) -> None:
    """The whole key path into the real firmware (run under CPython, as tools/sim runs it): the
    gateway's group McKey (gateway/multicast.py) goes to a lamp in a McGroupSetupReq built by
    protocol/fuota under the lamp's own AppKey; the firmware's TS004 package
    (firmware/lib/fuota/mcsetup.py) derives the group keys from it, and its MAC's multicast hook
    (firmware/lib/lorawan/multicast.py) accepts the emulator's frame of a group command and
    refuses it a second time."""
    from gateway.multicast import derive_group_keys
    from protocol.fuota import encode_commands, keys, mcsetup
    from tools.sim.fleet import firmware_path

    firmware_path()
    from fuota.mcsetup import McSetup  # firmware/lib
    from hal.vclock import VirtualClock
    from lorawan.multicast import Groups

    group = derive_group_keys(bytes.fromhex("00112233445566778899aabbccddeeff"), "street-elm")
    lamp = rig.devices[0]
    app_key = lamp.app_key.to_bytes()
    setup = mcsetup.McGroupSetupReq(
        mc_group_id=0,
        mc_addr=group.mc_addr,
        mc_key_encrypted=keys.mc_key_encrypt(
            keys.mc_kekey(keys.mc_root_key_1_0(app_key)), group.mc_key
        ),
        min_mc_fcount=0,
        max_mc_fcount=100,
    )
    clock = VirtualClock()
    groups = Groups(clock)
    answer = bytearray()
    McSetup(groups, None, None, app_key).handle(encode_commands([setup]), answer)
    assert bytes(answer) == b"\x02\x00"  # McGroupSetupAns: group 0, no error
    # the class C session (McClassCSessionReq needs the TS003 clock): opened directly here
    groups.session(0, 869_525_000, 3, clock.ticks_ms(), 60_000)

    await join_and_report(rig, [lamp], GW1)
    group_id = await rig.create_group(
        mc_addr=f"{group.mc_addr:08x}",
        mc_nwk_s_key=group.mc_nwk_s_key.hex(),
        mc_app_s_key=group.mc_app_s_key.hex(),
    )
    await rig.stub.AddDevice(
        api.AddDeviceToMulticastGroupRequest(multicast_group_id=group_id, dev_eui=lamp.dev_eui),
        metadata=rig.meta(),
    )
    f_port, data = codec.encode("lamp_override", {"command_id": 3, "dim_level": 40})
    rig.harness.ns.enqueue_multicast(group_id, data, f_port=f_port)
    await until(lambda: len(rig.multicast_lines()) == 1)

    class Rx:
        def __init__(self, phy: bytes) -> None:
            self.data = phy

    phy = bytes.fromhex(rig.multicast_lines()[0]["phy"])
    heard = groups.accept(Rx(phy))
    assert heard is not None and (heard.fcnt, heard.fport) == (0, f_port)
    assert codec.decode(heard.fport, bytes(heard.payload), "down").fields["dim_level"] == 40
    assert groups.accept(Rx(phy)) is None  # the same frame again: a replay
