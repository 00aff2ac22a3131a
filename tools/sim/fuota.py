"""FUOTA lamps in the fleet simulator: the firmware's fuota agent on each simulated node.

What ``firmware/main.py`` does on a board, on a simulated node: the node's filesystem is a
directory (``workdir/<devEUI>/``: ``lib/`` the factory set, ``fw/`` the staged sets and the
pointer, ``fuota.bin`` the fragments), ``fwslot.select`` counts the boot, the app's node reports
the running set's version in ``device_info``, ports 200-202 go to the agent, the agent confirms
the set once the node's first uplink went out, and applying an update restarts the node (a power
cycle of the simulated board, the closest the simulator has to ``machine.reset``).

CPython runs the repository's modules whatever the slot holds: a simulated update changes the
version the node reports and the files in its slot, not the code the process runs.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FuotaNodes", "attach"]


@dataclass(frozen=True, slots=True)
class FuotaNodes:
    """Which simulated nodes take part, and what they trust."""

    public_key: bytes  # Ed25519, 32 bytes: the key bundles must be signed with
    workdir: Path  # each node's filesystem is workdir/<devEUI>/
    kinds: frozenset[str] = frozenset({"lamp"})


def _root(cfg: FuotaNodes, dev_eui: str) -> str:
    root = Path(cfg.workdir) / dev_eui
    lib = root / "lib"
    if not lib.is_dir():
        lib.mkdir(parents=True)
        # the factory set; a slot is a copy of it with the update's modules written over
        (lib / "FACTORY").write_text("the firmware set the node was flashed with\n")
    return str(root) + "/"


def attach(sim: Any, clock: Any, cfg: FuotaNodes, restart: Callable[[], None]) -> Any:
    """The agent for ``sim`` (a tools.sim.fleet.SimNode after its boot), wired as main.py does."""
    fwslot = importlib.import_module("fwslot")
    agent_mod = importlib.import_module("fuota.agent")
    node_mod = importlib.import_module("apps.node")
    root = _root(cfg, sim.dev_eui)
    fwslot.select(root)  # this boot counts against an unconfirmed set (and may roll it back)
    version = fwslot.version(root, node_mod.FIRMWARE_VERSION)
    sim.node.version = version
    agent = agent_mod.Agent(
        sim.mac,
        clock,
        sim.nvs,
        sim.app_key,
        cfg.public_key,
        root=root,
        running_version=version,
        max_wait_ms=180_000,
        reboot=restart,
    )
    sim.node.port_handler = agent.handle
    node = sim.node
    agent.confirm_when(lambda: node.uplinks_sent > 0)
    return agent


async def run_with(app_run: Any, agent: Any) -> None:
    """Run the app with the agent beside it; the agent stops with the app."""
    task = asyncio.create_task(agent.run(), name="fuota-agent")
    try:
        await app_run()
    finally:
        task.cancel()
        agent.close()
