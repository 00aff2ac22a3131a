"""A city's identities: the inventory and secrets files of a simulated fleet, and its gateway map.

The demo and the end-to-end tests need what a municipality's technicians would have: a
provisioning inventory (``tools.provision.inventory``: no keys in it) and its secrets file
(mode 0600), plus the registry entries the gateway's rules use (street, position and the
neighbouring lamps along the street). Everything here is written through ``tools.provision``; the
simulator only chooses where the nodes stand (``tools.sim.world``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.provision.inventory import (
    Inventory,
    Node,
    Secrets,
    new_app_key,
    save_inventory,
    save_secrets,
)
from tools.sim.world import World


@dataclass(frozen=True)
class CityFiles:
    inventory: Inventory
    secrets: Secrets

    @property
    def inventory_path(self) -> Path:
        return self.inventory.path

    @property
    def secrets_path(self) -> Path:
        return self.secrets.path


def neighbours(world: World, dev_eui: str, *, each_side: int = 2) -> list[str]:
    """The lamps next to a lamp along its street (``each_side`` before and after it)."""
    lamp = world.lamps[dev_eui]
    street = world.lamps_on(lamp.street)
    index = next(i for i, other in enumerate(street) if other.dev_eui == dev_eui)
    near = street[max(0, index - each_side) : index] + street[index + 1 : index + 1 + each_side]
    return [other.dev_eui for other in near]


def write_city(world: World, directory: Path, *, group: str = "aarhus-demo") -> CityFiles:
    """Write ``inventory.toml`` and ``inventory.secrets.toml`` for every node of ``world``.

    Existing files are reused (same DevEUIs and keys) when they list the same nodes, so a
    ``--workdir`` kept between runs keeps its identities and the nodes' persisted DevNonces stay
    valid against the emulator's records.
    """
    directory.mkdir(parents=True, exist_ok=True)
    inventory = Inventory(directory / "inventory.toml", [])
    secrets = Secrets(directory / "inventory.secrets.toml")
    for sim_bin in world.bins.values():
        inventory.nodes.append(
            Node(
                dev_eui=sim_bin.dev_eui,
                kind="bin",
                name=sim_bin.name,
                latitude=round(sim_bin.latitude, 6),
                longitude=round(sim_bin.longitude, 6),
                street=sim_bin.street,
                group=group,
                serial=sim_bin.name.upper(),
            )
        )
    for lamp in world.lamps.values():
        inventory.nodes.append(
            Node(
                dev_eui=lamp.dev_eui,
                kind="lamp",
                name=lamp.name,
                latitude=round(lamp.latitude, 6),
                longitude=round(lamp.longitude, 6),
                street=lamp.street,
                group=group,
                serial=lamp.name.upper(),
            )
        )
    old_keys: dict[str, bytes] = {}
    if secrets.path.exists():
        from tools.provision.inventory import load_secrets

        old_keys = load_secrets(secrets.path).app_keys
    for node in inventory.nodes:
        secrets.app_keys[node.dev_eui] = old_keys.get(node.dev_eui) or new_app_key()
    save_inventory(inventory)
    save_secrets(secrets)
    return CityFiles(inventory, secrets)


def registry_entries(world: World, files: CityFiles) -> dict[str, dict[str, Any]]:
    """``PUT /api/v1/devices/{devEui}`` bodies (docs/interfaces.md) for every node."""
    entries: dict[str, dict[str, Any]] = {}
    for node in files.inventory.nodes:
        body: dict[str, Any] = {
            "kind": node.kind,
            "name": node.name,
            "join_eui": node.join_eui,
            "latitude": node.latitude,
            "longitude": node.longitude,
            "street": node.street,
            "group": node.group,
            "board": node.board,
            "serial": node.serial,
        }
        if node.kind == "lamp":
            body["neighbours"] = neighbours(world, node.dev_eui)
        entries[node.dev_eui] = body
    return entries
