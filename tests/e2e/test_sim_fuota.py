"""A FUOTA campaign by unicast through the network emulator, on a lamp of the fleet simulator.

The lamp runs the real firmware (MAC, lamp app, fuota agent wired as firmware/main.py wires it,
tools/sim/fuota.py) in virtual time; the emulator (tools/netsim) queues the campaign's downlinks
as ChirpStack's DeviceService.Enqueue would, and this test drives them like a FUOTA server: set up
the session and wait for its answer, send the fragments (one deliberately lost), ask for the
status and send more coded fragments while some are missing (a class C lamp that is transmitting
misses a downlink, as on the air). TS005 allows unicast fragments, so no multicast is needed
here; multicast frames are the emulator's side of issue 18. Then the lamp verifies the
signature, stages the set, restarts and reports the new version in device_info.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import codec
from protocol.errors import DecodeError
from protocol.fuota import bundle, fec, fragmentation
from tools.fuota import public_key_hex

pytest.importorskip("tools.sim.fleet", reason="the fleet simulator is not in the tree")

FRAG = 48
EPOCH = 1_764_000_000.0
ROUNDS = 5  # status requests, each followed by more coded fragments when some are missing


async def _until(clock: Any, check: Any, limit_s: int, step_s: int = 5) -> bool:
    for _ in range(limit_s // step_s):
        if check():
            return True
        await clock.sleep_ms(step_s * 1000)
    return bool(check())


def test_a_lamp_takes_a_unicast_update_and_reports_the_new_version(tmp_path: Path) -> None:
    from tools.sim.city import write_city
    from tools.sim.fleet import Fleet, _fw
    from tools.sim.fuota import FuotaNodes
    from tools.sim.world import World

    key = Ed25519PrivateKey.generate()
    data = bundle.build(
        "0.2.0", "0.1.0", [bundle.Module("apps/lamp_extra.mpy", b"M\x06" + bytes(300))], [],
        key.sign,
    )  # fmt: skip
    padded, padding = fec.pad(data, FRAG)
    m = len(padded) // FRAG
    frags = fec.encode(padded, FRAG, 4 * ROUNDS)
    lost = 2  # fragment N=3 is never sent: coded ones stand in for it
    fw = _fw()
    clock = fw.clock.VirtualClock()
    world = World.aarhus(bins=0, lamps=1, seed=3, start_time=EPOCH, step_s=60.0, traffic_scale=0)
    files = write_city(world, tmp_path / "city")
    versions: list[str] = []
    answers: list[Any] = []

    def sink(event: str, dev_eui: str, message: Any) -> None:
        if event != "up" or not message.f_port:
            return
        payload = bytes(message.data)
        if message.f_port == fragmentation.FPORT:
            answers.extend(fragmentation.decode_uplink(payload))  # DecodeError fails the test
            return
        try:
            got = codec.decode(message.f_port, payload)
        except DecodeError:
            return  # other FUOTA ports (clock sync) are not catalogue messages
        if got.message == "device_info":
            versions.append(got.fields["firmware_version"])

    def of(kind: type) -> list[Any]:
        return [a for a in answers if isinstance(a, kind)]

    async def body() -> dict[str, Any]:
        fleet = Fleet(
            world, files, clock=clock, epoch=EPOCH, report_interval_s=600, boot_spread_s=1.0,
            virtual=True, fuota=FuotaNodes(bytes.fromhex(public_key_hex(key)), tmp_path / "fs"),
        )  # fmt: skip
        async with fleet:
            fleet.netsim.server.add_event_sink(sink)
            (eui,) = list(fleet.nodes)
            lamp = fleet.nodes[eui]
            assert await _until(clock, lambda: lamp.mac.joined and versions, 3600)
            server = fleet.netsim.server

            def send(cmd: Any) -> None:
                server.enqueue(eui, cmd.to_bytes(), f_port=fragmentation.FPORT)

            first = lamp.agent  # this boot's agent; the update restarts the node with a new one
            setup = fragmentation.FragSessionSetupReq(0, 0, m, FRAG, padding)
            for _ in range(ROUNDS):
                send(setup)
                if await _until(clock, lambda: of(fragmentation.FragSessionSetupAns), 120):
                    break
            assert of(fragmentation.FragSessionSetupAns)[-1].ok
            for n in range(m):
                if n != lost:
                    send(fragmentation.DataFragment(0, n + 1, frags[n]))
            coded = m
            for _ in range(ROUNDS):
                await _until(clock, lambda: not server.queue(eui), 600)
                before = len(of(fragmentation.FragSessionStatusAns))
                send(fragmentation.FragSessionStatusReq(0, participants=True))
                await _until(
                    clock, lambda b=before: len(of(fragmentation.FragSessionStatusAns)) > b, 300
                )
                status = of(fragmentation.FragSessionStatusAns)
                if status and status[-1].missing_frag == 0 and len(status) > before:
                    break
                for n in range(coded, coded + 4):  # the next coded fragments
                    send(fragmentation.DataFragment(0, n + 1, frags[n]))
                coded += 4
            assert await _until(clock, lambda: first.update_result is not None, 600)
            result = first.update_result
            # the restart: a new boot, whose agent reports the staged set's version
            assert await _until(clock, lambda: fleet.nodes[eui].agent is not first, 600)
            assert await _until(clock, lambda: "0.2.0" in versions, 3600), versions
            return {"result": result, "agent": fleet.nodes[eui].agent, "crashes": fleet.crashes}

    out = clock.run(body())
    assert out["result"] == (True, "applied", "0.2.0")
    assert out["crashes"] == 0
    assert versions[0] == "0.1.0" and versions[-1] == "0.2.0"
    report = out["agent"].report()
    assert report["version"] == "0.2.0" and report["errors"] == 0 and report["done"] is True
    node_fs = next((tmp_path / "fs").iterdir())
    assert (node_fs / "fw" / "a" / "apps" / "lamp_extra.mpy").exists()
