"""gateway/multicast.py against the emulator's gRPC API, without MQTT: the ChirpStack group
follows the registry group, refused members fail, silent members expire, keys stay secret."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.chirpstack_grpc import ChirpStackGroups
from gateway.config import ChirpstackConfig, MulticastConfig
from gateway.errors import ChirpStackApiError, ConfigError, UnknownGroup
from gateway.multicast import MulticastManager, derive_group_keys, mc_session_keys
from gateway.store.base import Device
from gateway.store.sqlite import SqliteStore
from protocol.lorawan.keys import AESKey
from tests.gateway.harness import Clock
from tools.bench.street_lamps import mc_session_keys as lamp_session_keys
from tools.netsim.config import NetsimConfig
from tools.netsim.devices import Device as NetsimDevice
from tools.netsim.grpcapi import start_grpc
from tools.netsim.server import NetworkServer

APP = "8c1c5a3e-2f4b-4a57-9c1e-6b0d3f2a7e10"
SECRET = "000102030405060708090a0b0c0d0e0f"
EUIS = [f"70b3d57ed00f{i:04x}" for i in range(4)]


@dataclass
class Rig:
    ns: NetworkServer
    manager: MulticastManager
    devices: dict[str, Device]
    clock: Clock
    staged: list[str]
    active: dict[str, set[int]]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    known = [
        NetsimDevice(eui, "70b3d57ed00000ff", AESKey(bytes(16)), "C", f"lamp-{i}")
        for i, eui in enumerate(EUIS[:3])  # EUIS[3] is not in ChirpStack
    ]
    ns = NetworkServer(known, NetsimConfig(application_id=APP))
    (tmp_path / "key").write_text(SECRET + "\n")
    devices = {
        eui: Device(eui, kind="lamp", group="oak", registered=True, next_command_id=5)
        for eui in EUIS
    }
    clock = Clock(start=1_900_000_000.0)
    staged: list[str] = []
    active: dict[str, set[int]] = {eui: set() for eui in EUIS}
    async with ns:
        server, port = await start_grpc(ns, "127.0.0.1", 0, "cs-token")
        client = ChirpStackGroups(target=f"127.0.0.1:{port}", token="cs-token")
        manager = MulticastManager(
            config=MulticastConfig(enabled=True, key_file=str(tmp_path / "key")),
            chirpstack=ChirpstackConfig(),
            application_id=APP,
            devices=devices,
            active_command_ids=lambda eui: active[eui],
            stage_device=lambda d: staged.append(d.dev_eui),
            clock=clock,
            client=client,
        )
        try:
            yield Rig(ns, manager, devices, clock, staged, active)
        finally:
            await manager.close()
            await server.stop(grace=None)


def test_session_keys_follow_the_spec() -> None:
    # the gateway's derivation and the lamps' own (tools/bench/street_lamps.py) agree
    keys = derive_group_keys(bytes.fromhex(SECRET), "citypack:group:oak")
    assert mc_session_keys(keys.mc_key, keys.mc_addr) == lamp_session_keys(
        keys.mc_key, keys.mc_addr
    )
    assert (keys.mc_app_s_key, keys.mc_nwk_s_key) == mc_session_keys(keys.mc_key, keys.mc_addr)
    assert keys.mc_app_s_key != keys.mc_nwk_s_key
    other = derive_group_keys(bytes.fromhex(SECRET), "citypack:group:elm")
    assert other.mc_key != keys.mc_key and other.mc_addr != keys.mc_addr
    assert keys.mc_key.hex() not in repr(keys)


async def test_membership_follows_the_registry(rig: Rig) -> None:
    command = await rig.manager.submit("oak", "lamp_override", {"dim_level": 10})
    group_id = rig.manager.chirpstack_id("oak")
    group = rig.ns.multicast.get(group_id)
    assert group.devices == set(EUIS[:3])
    assert group.name == "citypack:group:oak"
    keys = rig.manager.keys("oak")
    assert (group.mc_addr, group.mc_app_s_key, group.mc_nwk_s_key) == (
        keys.mc_addr,
        keys.mc_app_s_key,
        keys.mc_nwk_s_key,
    )
    assert (group.frequency_hz, group.dr) == (869_525_000, 0)
    # the device ChirpStack does not know fails at once; the others wait for their result
    states = {eui: m.state for eui, m in command.members.items()}
    assert states == {EUIS[0]: "queued", EUIS[1]: "queued", EUIS[2]: "queued", EUIS[3]: "failed"}
    assert "not added to the multicast group" in command.members[EUIS[3]].error
    assert command.command_id == 5 and sorted(rig.staged) == EUIS
    assert all(d.next_command_id == 6 for d in rig.devices.values())
    # a lamp leaves the street: the next command's group no longer holds it
    rig.devices[EUIS[2]].group = "elm"
    second = await rig.manager.submit("oak", "lamp_override", {"dim_level": 20})
    assert rig.ns.multicast.get(group_id).devices == {EUIS[0], EUIS[1]}
    assert set(second.members) == {EUIS[0], EUIS[1], EUIS[3]}
    assert second.f_cnt == 1
    # the group deleted in ChirpStack meanwhile: made again under the same name and keys
    rig.ns.multicast.delete(group_id)
    third = await rig.manager.submit("oak", "lamp_override", {"dim_level": 30})
    again = rig.ns.multicast.get(rig.manager.chirpstack_id("oak"))
    assert again.name == "citypack:group:oak" and again.mc_addr == keys.mc_addr
    assert third.f_cnt == 0  # a new group starts at 0 (its members need a new setup)


async def test_results_expiry_and_ids(rig: Rig) -> None:
    rig.active[EUIS[0]] = {5, 6}  # unicast commands in flight on one member
    command = await rig.manager.submit("oak", "lamp_override", {"dim_level": 10})
    assert command.command_id == 7
    assert rig.manager.on_result(EUIS[0], {"command_id": 7, "outcome": "applied"}) is command
    assert rig.manager.on_result(EUIS[0], {"command_id": 7, "outcome": "applied"}) is None
    assert rig.manager.on_result(EUIS[1], {"command_id": 99}) is None
    assert rig.manager.on_result(EUIS[1], {"command_id": 7, "outcome": "unsupported"})
    assert command.members[EUIS[1]].state == "failed"
    assert command.state == "queued"  # EUIS[2] may still answer
    rig.clock.advance(601)
    got = rig.manager.get(command.id)
    assert got is command and command.state == "failed"
    assert command.members[EUIS[2]].state == "expired"
    assert rig.manager.on_result(EUIS[2], {"command_id": 7}) is None  # too late
    doc = command.to_json()
    assert doc["counts"] == {"queued": 0, "applied": 1, "failed": 2, "expired": 1}


async def test_bad_input_and_unreachable_chirpstack(rig: Rig, tmp_path: Path) -> None:
    with pytest.raises(UnknownGroup):
        await rig.manager.submit("pine", "lamp_override", {"dim_level": 1})
    bad = tmp_path / "bad"
    bad.write_text("not hex\n")
    with pytest.raises(ConfigError, match="32 hex digits"):
        MulticastManager(
            config=MulticastConfig(enabled=True, key_file=str(bad)),
            chirpstack=ChirpstackConfig(api="127.0.0.1:9", api_token_file=str(bad)),
            application_id=APP,
            devices={},
            active_command_ids=lambda eui: set(),
            stage_device=lambda d: None,
        )
    nowhere = ChirpStackGroups(target="127.0.0.1:9", token="secret-token", timeout_s=2)
    try:
        with pytest.raises(ChirpStackApiError) as info:
            await nowhere.find(APP, "x")
        assert info.value.context["code"] == "UNAVAILABLE"
        assert "secret-token" not in str(info.value)
    finally:
        await nowhere.close()
    wrong = ChirpStackGroups(target=rig.manager.client.target, token="wrong")
    try:
        with pytest.raises(ChirpStackApiError) as info:
            await wrong.find(APP, "x")
        assert info.value.context["code"] == "UNAUTHENTICATED"
    finally:
        await wrong.close()


async def test_a_restart_finds_the_group_and_brings_it_in_line(rig: Rig, tmp_path: Path) -> None:
    first = await rig.manager.submit("oak", "lamp_override", {"dim_level": 10})
    group_id = rig.manager.chirpstack_id("oak")
    assert group_id is not None and first.f_cnt == 0
    # a new process (nothing cached) with another data rate configured
    restarted = MulticastManager(
        config=MulticastConfig(enabled=True, key_file=str(tmp_path / "key"), dr=3),
        chirpstack=ChirpstackConfig(),
        application_id=APP,
        devices=rig.devices,
        active_command_ids=lambda eui: set(),
        stage_device=lambda d: None,
        clock=rig.clock,
        client=ChirpStackGroups(target=rig.manager.client.target, token="cs-token"),
    )
    try:
        second = await restarted.submit("oak", "lamp_override", {"dim_level": 20})
    finally:
        await restarted.close()
    assert restarted.chirpstack_id("oak") == group_id  # found by name, not made twice
    assert len(rig.ns.multicast.groups()) == 1
    group = rig.ns.multicast.get(group_id)
    assert group.dr == 3 and group.mc_addr == rig.manager.keys("oak").mc_addr
    assert second.f_cnt == 1  # the frame counter went on: members would refuse a lower one
    assert second.command_id != first.command_id  # members' next ids moved past the first


async def test_a_new_process_matches_results_from_the_store(rig: Rig, tmp_path: Path) -> None:
    """Group commands are in the store (gateway/store/groups.py): a process that never saw the
    command (restarted, or another instance) matches a member's result and records it."""
    store = SqliteStore(f"sqlite:///{tmp_path / 'groups.db'}")
    await store.open()

    async def commit(stage: Callable[[], None]) -> None:
        stage()
        await store.commit()

    def manager(client: ChirpStackGroups) -> MulticastManager:
        return MulticastManager(
            config=MulticastConfig(enabled=True, key_file=str(tmp_path / "key")),
            chirpstack=ChirpstackConfig(),
            application_id=APP,
            devices=rig.devices,
            active_command_ids=lambda eui: set(),
            stage_device=lambda d: None,
            clock=rig.clock,
            client=client,
            store=store,
            commit=commit,
        )

    target = rig.manager.client.target
    first = manager(ChirpStackGroups(target=target, token="cs-token"))
    second = manager(ChirpStackGroups(target=target, token="cs-token"))
    try:
        command = await first.submit("oak", "lamp_override", {"dim_level": 10})
        result = {"command_id": command.command_id, "outcome": "applied"}
        assert second.on_result(EUIS[0], result) is None  # not known here yet
        await second.ensure_known(EUIS[0], result)
        assert second.on_result(EUIS[0], result) is not None
        assert second.on_result(EUIS[0], result) is None  # once
        await store.commit()
        read = await first.read(command.id)
        assert read is not None and read.f_cnt == 0
        assert read.members[EUIS[0]].state == "applied"
        assert read.members[EUIS[3]].state == "failed"  # not in ChirpStack: failed at once
        assert read.state == "queued"
        rig.clock.advance(601)  # past command_timeout_s: the silent members read as expired
        late = await second.read(command.id)
        assert late is not None and late.state == "failed"
        assert {e: m.state for e, m in late.members.items()} == {
            EUIS[0]: "applied", EUIS[1]: "expired", EUIS[2]: "expired", EUIS[3]: "failed"
        }  # fmt: skip
        assert [c.id for c in await second.read_group("oak")] == [command.id]
    finally:
        await first.close()
        await second.close()
        await store.close()
