"""`citypack sim --udp`: simulated gateways speak GWMP over UDP to a packet-forwarder endpoint.

The endpoint here is the emulator's own GWMP server (what a ChirpStack Gateway Bridge is to
ChirpStack), so the whole path is real UDP: PUSH_DATA/PUSH_ACK up, PULL_DATA keep-alive,
PULL_RESP for the join-accepts and TX_ACK back.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from protocol import codec
from tests.e2e.city import eventually
from tools.netsim.devices import parse_devices
from tools.netsim.runner import Netsim
from tools.netsim.server import NetsimConfig
from tools.sim.city import write_city
from tools.sim.clock import ScaledClock, evening_start
from tools.sim.fleet import Fleet
from tools.sim.world import AARHUS_GATEWAYS, World


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_fleet_joins_reports_and_is_commanded_through_gwmp_over_udp(
    tmp_path: Path,
) -> None:
    epoch = evening_start(time.time())
    world = World(start_time=epoch, traffic_scale=0.0)
    world.add_bin("02c17a0b000000d1", "Søndergade", 100.0, fill_percent=30.0)
    world.add_bin("02c17a0b000000d2", "Mejlgade", 300.0, fill_percent=60.0)
    world.add_lamp("02c17a0c000000d3", "Mejlgade", 200.0)
    files = write_city(world, tmp_path)
    entries = [
        {"dev_eui": n.dev_eui, "name": n.name, "class": "C" if n.kind == "lamp" else "A"}
        for n in files.inventory.nodes
    ]
    keys = {eui: key.hex() for eui, key in files.secrets.app_keys.items()}
    port = _free_udp_port()
    events: list[tuple[str, str, Any]] = []
    # real-time network server: its answer windows are real seconds, so the fleet runs at a
    # modest speed and the server's own delays are short (its config, as ChirpStack's would be)
    config = NetsimConfig(dedup_window_s=0.02, downlink_data_delay_s=0.01, seed=2)
    netsim = Netsim(
        parse_devices(entries, secrets=keys),
        broker_url=None,
        config=config,
        udp=("127.0.0.1", port),
    )
    async with netsim:
        netsim.server.add_event_sink(
            lambda event, dev_eui, message: events.append((event, dev_eui, message))
        )
        clock = ScaledClock(speed=8.0)
        fleet = Fleet(
            world,
            files,
            clock=clock,
            epoch=epoch,
            udp=("127.0.0.1", port),
            report_interval_s=60,
            boot_spread_s=2.0,
        )
        async with fleet:
            await eventually(
                lambda: all(n.mac is not None and n.mac.joined for n in fleet.nodes.values()),
                timeout_s=30,
                what="both nodes joining through GWMP",
            )
            await eventually(
                lambda: {d for e, d, _ in events if e == "up"} == {*world.bins, *world.lamps},
                timeout_s=30,
                what="an uplink from each node through GWMP",
            )
            assert fleet.backhaul.pushed > 0 and fleet.backhaul.downlinks >= 3
            # a class C downlink ("imme" PULL_RESP) finds the lamp by its DevAddr
            lamp = "02c17a0c000000d3"
            port, data = codec.encode(
                "lamp_override", {"command_id": 7, "dim_level": 70, "duration_s": 0, "fade_s": 0}
            )
            netsim.server.enqueue(lamp, data, f_port=port)
            await eventually(
                lambda: world.lamps[lamp].dim_level == 70,
                timeout_s=30,
                what="the lamp applying a class C override sent over GWMP",
            )
    ups = [m for e, _, m in events if e == "up"]
    gateways = {info.gateway_id for m in ups for info in m.rx_info}
    assert gateways <= {gid for gid, *_ in AARHUS_GATEWAYS} and gateways
    assert all(m.rx_info[0].rssi < 0 for m in ups)
