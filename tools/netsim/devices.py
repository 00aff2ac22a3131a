"""The emulator's device registry: which devices may join, with which root key and class.

Two sources, both read with :func:`load_devices`:

1. A keys file, TOML or JSON, one entry per device::

       [[device]]
       dev_eui = "70b3d57ed0051a2f"     # 16 hex digits, MSB first (as consoles print it)
       join_eui = "0000000000000000"
       app_key = "…32 hex digits…"      # the LoRaWAN 1.0.x root key (ChirpStack's nwk_key)
       class = "A"                      # "A" or "C" (also "CLASS_C"); default A
       name = "bin-001"                 # optional; default the DevEUI
       tags = { kind = "bin" }          # optional; appear in deviceInfo.tags

   JSON: ``{"device": [...]}``, ``{"devices": [...]}`` or a bare list of the same objects.

2. A provisioning inventory plus a secrets file (``tools/provision``): the inventory is TOML
   with ``[[device]]`` entries (``dev_eui``, ``join_eui``, ``kind``, ``name``, optional
   ``class``; without it a ``kind = "lamp"`` is class C, anything else class A) and no keys;
   the secrets file maps each DevEUI to its AppKey, either as ``{"<dev_eui>": "<app_key>"}``
   (``<dev_eui> = "<app_key>"`` in TOML) or as ``[[device]]`` entries with ``dev_eui`` and
   ``app_key``.

Keys never appear in an error message or a ``repr``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.errors import DecodeError
from protocol.lorawan.keys import EUI64, AESKey

__all__ = ["Device", "DeviceFileError", "load_devices", "parse_devices"]


class DeviceFileError(Exception):
    """A keys, inventory or secrets file that cannot be used (one line, no key material)."""


@dataclass(frozen=True)
class Device:
    """One OTAA device the emulator knows. ``device_class`` is "A" or "C"."""

    dev_eui: str
    join_eui: str
    app_key: AESKey = field(repr=False)
    device_class: str = "A"
    name: str = ""
    tags: dict[str, str] = field(default_factory=dict)


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeviceFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise DeviceFileError(f"{path} is neither valid TOML nor JSON: {exc}") from None


def _entries(document: Any, where: str) -> list[Mapping[str, Any]]:
    if isinstance(document, Mapping):
        for key in ("device", "devices"):
            if key in document:
                document = document[key]
                break
        else:
            raise DeviceFileError(f"{where}: no [[device]] entries")
    if not isinstance(document, list) or not all(isinstance(e, Mapping) for e in document):
        raise DeviceFileError(f"{where}: devices must be a list of tables/objects")
    return list(document)


def _eui(value: Any, what: str, where: str) -> str:
    try:
        return EUI64.from_hex(str(value)).hex()
    except DecodeError as exc:
        raise DeviceFileError(f"{where}: {what}: {exc}") from None


def _class(value: Any, where: str) -> str:
    text = str(value).strip().upper().removeprefix("CLASS_").removeprefix("CLASS ")
    if text not in ("A", "C"):
        raise DeviceFileError(f"{where}: class must be A or C, got {value!r}")
    return text


def parse_devices(
    entries: Iterable[Mapping[str, Any]],
    *,
    secrets: Mapping[str, str] | None = None,
    where: str = "devices",
) -> list[Device]:
    """Devices from already-loaded entries; ``secrets`` maps DevEUI → AppKey hex."""
    devices: list[Device] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        here = f"{where} entry {index + 1}"
        if "dev_eui" not in entry:
            raise DeviceFileError(f"{here}: dev_eui is missing")
        dev_eui = _eui(entry["dev_eui"], "dev_eui", here)
        if dev_eui in seen:
            raise DeviceFileError(f"{here}: dev_eui {dev_eui} appears twice")
        seen.add(dev_eui)
        join_eui = _eui(entry.get("join_eui", "0000000000000000"), "join_eui", here)
        key_text = entry.get("app_key")
        if key_text is None and secrets is not None:
            key_text = secrets.get(dev_eui)
        if key_text is None:
            raise DeviceFileError(f"{here}: no app_key for {dev_eui}")
        try:
            app_key = AESKey.from_hex(str(key_text), "app_key")
        except DecodeError as exc:
            raise DeviceFileError(f"{here} ({dev_eui}): {exc}") from None
        # Lamps are mains-powered and listen all the time (class C), bins sleep (class A):
        # an inventory without a class gets the one its kind implies (as tools/sim does).
        default_class = "C" if str(entry.get("kind", "")).lower() == "lamp" else "A"
        klass = entry.get(
            "class", entry.get("device_class", entry.get("lorawan_class", default_class))
        )
        tags = entry.get("tags", {})
        if not isinstance(tags, Mapping):
            raise DeviceFileError(f"{here}: tags must be a table of strings")
        devices.append(
            Device(
                dev_eui=dev_eui,
                join_eui=join_eui,
                app_key=app_key,
                device_class=_class(klass, here),
                name=str(entry.get("name") or dev_eui),
                tags={str(k): str(v) for k, v in tags.items()},
            )
        )
    return devices


def _secrets(path: Path) -> dict[str, str]:
    document = _read(path)
    out: dict[str, str] = {}
    if isinstance(document, Mapping) and not ({"device", "devices"} & set(document)):
        for key, value in document.items():
            if isinstance(value, Mapping):
                value = value.get("app_key")
            if value is not None:
                out[_eui(key, "dev_eui", str(path))] = str(value)
        return out
    for index, entry in enumerate(_entries(document, str(path))):
        if "dev_eui" in entry and "app_key" in entry:
            out[_eui(entry["dev_eui"], "dev_eui", f"{path} entry {index + 1}")] = str(
                entry["app_key"]
            )
    return out


def load_devices(path: Path, secrets: Path | None = None) -> list[Device]:
    """Read a keys file, or an inventory plus its ``secrets`` file."""
    document = _read(path)
    secret_map = _secrets(secrets) if secrets is not None else None
    devices = parse_devices(_entries(document, str(path)), secrets=secret_map, where=str(path))
    if not devices:
        raise DeviceFileError(f"{path}: no devices")
    return devices
