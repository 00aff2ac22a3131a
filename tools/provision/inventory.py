"""Batch inventory and secrets files for self-built nodes.

One inventory file per batch (TOML ``[[device]]`` entries preferred, CSV accepted) lists each
node's identity and place:
``dev_eui, join_eui, kind, name, latitude, longitude, street, group, board, serial, region``.
The AppKeys live in a separate secrets file (default ``<inventory stem>.secrets.toml``), created
with mode 0600 and refused when its mode lets anyone but the owner read it; keys are never in the
inventory and never in an error message (ARCHITECTURE.md invariant 8).

DevEUIs: from the ESP32's factory MAC when a board is attached (EUI-48 → EUI-64 by inserting
``FFFE`` between the OUI and the NIC part, IEEE "Guidelines for EUI-64", without the IPv6
"modified EUI-64" bit flip), else random with the IEEE U/L bit set (locally administered,
first octet ``x2/x6/xA/xE``) and the I/G bit clear (unicast). AppKeys come from :mod:`secrets`
(the OS CSPRNG). LoRaWAN L2 1.0.4 §6.1.1 (DevEUI, JoinEUI), §6.1.1.3 (AppKey).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import secrets as _secrets
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tools.provision.errors import InventoryError, ProvisionError

KINDS = ("bin", "lamp")
BOARDS = ("heltec-v3", "ttgo-lora32")
REGIONS = ("EU868", "US915")
FIELDS = (
    "dev_eui",
    "join_eui",
    "kind",
    "name",
    "latitude",
    "longitude",
    "street",
    "group",
    "board",
    "serial",
    "region",
)
REQUIRED = ("dev_eui", "kind", "name")
DEFAULT_JOIN_EUI = "0000000000000000"
_HEX16 = re.compile(r"^[0-9a-fA-F]{16}$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_SERIAL = re.compile(r"^[\x21-\x39\x3b-\x7e]{1,64}$")  # TR005 element: no space, no ':'
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TEXT_MAX = 200
_EXTRA = "\x00extra"


@dataclass(frozen=True)
class Node:
    """One node of a batch, as written in the inventory (no keys)."""

    dev_eui: str
    kind: str
    name: str
    join_eui: str = DEFAULT_JOIN_EUI
    latitude: float | None = None
    longitude: float | None = None
    street: str = ""
    group: str = ""
    board: str = "heltec-v3"
    serial: str = ""
    region: str = "EU868"

    def as_row(self) -> dict[str, str]:
        """The node as CSV cells (empty string for an absent location)."""
        row = {name: getattr(self, name) for name in FIELDS}
        return {
            k: "" if v is None else (repr(v) if isinstance(v, float) else str(v))
            for k, v in row.items()
        }


@dataclass
class Inventory:
    path: Path
    nodes: list[Node] = field(default_factory=list)

    def find(self, dev_eui: str) -> Node:
        wanted = parse_eui(dev_eui, where="argument", field_name="DEVEUI")
        for node in self.nodes:
            if node.dev_eui == wanted:
                return node
        raise InventoryError(f"DevEUI {wanted} is not in {self.path}", field="dev_eui")

    def select(self, dev_euis: Iterable[str] | None) -> list[Node]:
        wanted = list(dev_euis or [])
        return [self.find(d) for d in wanted] if wanted else list(self.nodes)


class Secrets:
    """AppKeys by DevEUI. ``repr`` and ``str`` never show a key."""

    def __init__(self, path: Path, app_keys: Mapping[str, bytes] | None = None) -> None:
        self.path = path
        self.app_keys: dict[str, bytes] = dict(app_keys or {})

    def __repr__(self) -> str:
        return f"Secrets({str(self.path)!r}, {len(self.app_keys)} keys)"

    __str__ = __repr__

    def app_key(self, dev_eui: str) -> bytes:
        try:
            return self.app_keys[dev_eui]
        except KeyError:
            raise InventoryError(
                f"no AppKey for DevEUI {dev_eui} in {self.path}", field="app_key"
            ) from None


# --- field validation ---------------------------------------------------------------------------


def parse_eui(value: object, *, where: str, field_name: str) -> str:
    """A 16-hex-digit EUI-64 (dashes/colons allowed) as lower-case hex, or InventoryError."""
    text = str(value).strip().replace(":", "").replace("-", "")
    if not _HEX16.match(text):
        raise InventoryError(
            f"expected 16 hex digits (an EUI-64), got {str(value)[:40]!r}",
            where=where,
            field=field_name,
        )
    return text.lower()


def parse_app_key(value: object, *, where: str) -> bytes:
    """A 32-hex-digit AppKey; the error message never echoes the value."""
    text = str(value).strip()
    if not isinstance(value, str) or not _HEX32.match(text):
        raise InventoryError(
            f"expected 32 hex digits (an AES-128 key), got {len(text)} characters",
            where=where,
            field="app_key",
        )
    return bytes.fromhex(text)


def _text(raw: Mapping[str, Any], name: str, where: str, default: str = "") -> str:
    value = raw.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InventoryError(f"expected text, got {type(value).__name__}", where=where, field=name)
    value = value.strip()
    if len(value) > _TEXT_MAX or any(ord(c) < 32 for c in value):
        raise InventoryError(
            f"expected at most {_TEXT_MAX} printable characters", where=where, field=name
        )
    return value


def _coordinate(raw: Mapping[str, Any], name: str, where: str, limit: float) -> float | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value) if isinstance(value, (str, int, float)) else math.nan
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not -limit <= number <= limit:
        raise InventoryError(
            f"expected a number from {-limit:g} to {limit:g}, got {value!r}",
            where=where,
            field=name,
        )
    return number


def _choice(
    raw: Mapping[str, Any], name: str, where: str, choices: tuple[str, ...], default: str
) -> str:
    value = _text(raw, name, where, default) or default
    if value not in choices:
        raise InventoryError(
            f"expected one of {', '.join(choices)}, got {value!r}", where=where, field=name
        )
    return value


def validate_node(raw: Mapping[str, Any], *, where: str) -> Node:
    """Check one raw entry (from TOML or CSV) and build a :class:`Node`."""
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise InventoryError(
            f"unknown field (known: {', '.join(FIELDS)})", where=where, field=unknown[0]
        )
    for name in REQUIRED:
        if raw.get(name) in (None, ""):
            raise InventoryError("missing", where=where, field=name)
    name = _text(raw, "name", where)
    if not _NAME.match(name):
        raise InventoryError(
            "expected 1-64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit",
            where=where,
            field="name",
        )
    latitude = _coordinate(raw, "latitude", where, 90.0)
    longitude = _coordinate(raw, "longitude", where, 180.0)
    if (latitude is None) != (longitude is None):
        missing = "longitude" if longitude is None else "latitude"
        raise InventoryError("latitude and longitude go together", where=where, field=missing)
    serial = _text(raw, "serial", where)
    if serial and not _SERIAL.match(serial):
        raise InventoryError(
            "expected printable ASCII without spaces or ':' (it goes into the TR005 QR code)",
            where=where,
            field="serial",
        )
    return Node(
        dev_eui=parse_eui(raw["dev_eui"], where=where, field_name="dev_eui"),
        join_eui=parse_eui(
            raw.get("join_eui") or DEFAULT_JOIN_EUI, where=where, field_name="join_eui"
        ),
        kind=_choice(raw, "kind", where, KINDS, ""),
        name=name,
        latitude=latitude,
        longitude=longitude,
        street=_text(raw, "street", where),
        group=_text(raw, "group", where),
        board=_choice(raw, "board", where, BOARDS, "heltec-v3"),
        serial=serial,
        region=_choice(raw, "region", where, REGIONS, "EU868"),
    )


def _check_unique(nodes: list[Node], wheres: list[str]) -> None:
    seen: dict[str, str] = {}
    names: dict[str, str] = {}
    serials: dict[str, str] = {}
    for node, where in zip(nodes, wheres, strict=True):
        for table, key, field_name in (
            (seen, node.dev_eui, "dev_eui"),
            (names, node.name, "name"),
            (serials, node.serial, "serial"),
        ):
            if not key:
                continue
            if key in table:
                raise InventoryError(
                    f"duplicate {key!r} (first in {table[key]})", where=where, field=field_name
                )
            table[key] = where


# --- inventory files ----------------------------------------------------------------------------


def parse_toml(text: str, source: str) -> list[Node]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"not valid TOML ({exc})", where=source) from exc
    unknown = sorted(set(data) - {"device"})
    if unknown:
        raise InventoryError(
            "unknown table; nodes go in [[device]] entries", where=source, field=unknown[0]
        )
    entries = data.get("device", [])
    if not isinstance(entries, list):
        raise InventoryError("expected [[device]] entries", where=source, field="device")
    nodes: list[Node] = []
    wheres: list[str] = []
    for index, entry in enumerate(entries, start=1):
        label = entry.get("name") if isinstance(entry, dict) else None
        where = f"{source} entry {index}" + (f" ({label})" if isinstance(label, str) else "")
        if not isinstance(entry, dict):
            raise InventoryError("expected a table", where=where)
        nodes.append(validate_node(entry, where=where))
        wheres.append(where)
    _check_unique(nodes, wheres)
    return nodes


def parse_csv(text: str, source: str) -> list[Node]:
    try:
        return _parse_csv(text, source)
    except csv.Error as exc:  # a bare CR inside a field, a field over csv's size limit
        raise InventoryError(f"not valid CSV ({exc})", where=source) from exc


def _parse_csv(text: str, source: str) -> list[Node]:
    reader = csv.DictReader(io.StringIO(text), restkey=_EXTRA)
    header = reader.fieldnames or []
    if not header:
        raise InventoryError("empty file; expected a header line", where=f"{source} line 1")
    for column in header:
        if column not in FIELDS:
            raise InventoryError(
                f"unknown column (known: {', '.join(FIELDS)})",
                where=f"{source} line 1",
                field=column,
            )
    for column in REQUIRED:
        if column not in header:
            raise InventoryError("missing column", where=f"{source} line 1", field=column)
    nodes: list[Node] = []
    wheres: list[str] = []
    for row in reader:
        where = f"{source} line {reader.line_num}"
        extra = row.get(_EXTRA)
        if extra is not None:
            raise InventoryError(
                f"{len(header) + len(extra)} cells for {len(header)} columns", where=where
            )
        if any(value is None for value in row.values()):
            raise InventoryError(f"fewer cells than the {len(header)} columns", where=where)
        if not any((value or "").strip() for value in row.values()):
            continue
        nodes.append(validate_node({k: v for k, v in row.items() if v != ""}, where=where))
        wheres.append(where)
    _check_unique(nodes, wheres)
    return nodes


def load_inventory(path: Path, *, missing_ok: bool = False) -> Inventory:
    """Read a batch inventory (``.toml`` or ``.csv``)."""
    _format_of(path)
    if not path.exists():
        if missing_ok:
            return Inventory(path, [])
        raise InventoryError(f"inventory {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc}") from exc
    nodes = (
        parse_toml(text, path.name) if _format_of(path) == "toml" else parse_csv(text, path.name)
    )
    return Inventory(path, nodes)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".csv"):
        raise InventoryError(f"inventory {path} must end in .toml or .csv")
    return suffix[1:]


def _toml_string(value: str) -> str:
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def render_toml(nodes: Iterable[Node]) -> str:
    lines = [
        "# citypack inventory: one [[device]] per node of this batch. No keys here: they are",
        "# in the secrets file beside it (mode 0600). Fields: dev_eui, join_eui, kind, name,",
        "# latitude, longitude, street, group, board, serial, region.",
    ]
    for node in nodes:
        lines.append("")
        lines.append("[[device]]")
        for name, value in asdict(node).items():
            if value is None:
                continue
            rendered = repr(float(value)) if isinstance(value, float) else _toml_string(str(value))
            lines.append(f"{name} = {rendered}")
    return "\n".join(lines) + "\n"


def render_csv(nodes: Iterable[Node], *, delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    for node in nodes:
        writer.writerow(node.as_row())
    return buffer.getvalue()


def save_inventory(inventory: Inventory) -> None:
    text = (
        render_toml(inventory.nodes)
        if _format_of(inventory.path) == "toml"
        else render_csv(inventory.nodes)
    )
    write_atomic(inventory.path, text.encode(), mode=0o644)


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to a new file created with ``mode`` and rename it over ``path``.

    The temporary file is opened with ``os.open(..., mode)`` so a secret is never readable by
    others, not even for the moment between create and chmod.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits we asked for; never adds any
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- secrets file -------------------------------------------------------------------------------


def default_secrets_path(inventory_path: Path) -> Path:
    return inventory_path.with_name(inventory_path.stem + ".secrets.toml")


def check_private(path: Path, *, fix: bool = False) -> None:
    """Refuse a file that group or others may read or write (or fix it with ``fix``)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise InventoryError(f"cannot stat secrets file {path}: {exc}") from exc
    if mode & 0o077:
        if fix:
            os.chmod(path, 0o600)
            return
        raise InventoryError(
            f"secrets file {path} has mode {mode:04o}; keys must be private to their owner: "
            f"run `chmod 600 {path}` or pass --fix-permissions"
        )


def load_secrets(path: Path, *, missing_ok: bool = False, fix_permissions: bool = False) -> Secrets:
    if not path.exists():
        if missing_ok:
            return Secrets(path)
        raise InventoryError(f"secrets file {path} does not exist")
    check_private(path, fix=fix_permissions)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read secrets file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message names line and column, never the value
        raise InventoryError(f"not valid TOML ({exc})", where=path.name) from exc
    keys: dict[str, bytes] = {}
    for dev_eui, value in data.items():
        where = f"{path.name} key {str(dev_eui)[:20]}"
        keys[parse_eui(dev_eui, where=where, field_name="dev_eui")] = parse_app_key(
            value, where=where
        )
    return Secrets(path, keys)


def save_secrets(secrets: Secrets, *, fix_permissions: bool = False) -> None:
    if secrets.path.exists():
        check_private(secrets.path, fix=fix_permissions)
    lines = [
        "# citypack secrets: <DevEUI> = <AppKey> (LoRaWAN 1.0.x root key). Mode 0600.",
        "# Never commit, print or mail this file.",
    ]
    lines += [f'{dev_eui} = "{key.hex()}"' for dev_eui, key in sorted(secrets.app_keys.items())]
    write_atomic(secrets.path, ("\n".join(lines) + "\n").encode(), mode=0o600)


# --- new identities -----------------------------------------------------------------------------


def new_app_key() -> bytes:
    """A fresh AppKey from the OS CSPRNG (:func:`secrets.token_bytes`)."""
    return _secrets.token_bytes(16)


def random_dev_eui() -> str:
    """A random EUI-64 with the U/L bit set (locally administered) and the I/G bit clear."""
    raw = bytearray(_secrets.token_bytes(8))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return raw.hex()


def mac_to_eui64(mac: bytes) -> str:
    """EUI-48 → EUI-64 (insert FFFE after the OUI); an 8-byte EUI-64 is returned as is."""
    if len(mac) == 8:
        return mac.hex()
    if len(mac) != 6:
        raise ProvisionError(f"a MAC has 6 or 8 bytes, got {len(mac)}")
    return (mac[:3] + b"\xff\xfe" + mac[3:]).hex()


_MAC_LINE = re.compile(r"^\s*MAC:\s*((?:[0-9a-fA-F]{2}:){5,7}[0-9a-fA-F]{2})\s*$", re.MULTILINE)


def parse_esptool_mac(output: str) -> str:
    """The DevEUI from ``esptool read-mac`` output (v4 and v5 print ``MAC: aa:bb:…``).

    Chips with a factory EUI-64 (ESP32-C6/H2) print it on the ``MAC:`` line; ESP32 and ESP32-S3
    print the 6-byte base MAC there, which becomes an EUI-64 by :func:`mac_to_eui64`.
    """
    match = _MAC_LINE.search(output)
    if match is None:
        raise ProvisionError("esptool printed no 'MAC:' line; is a board attached to the port?")
    return mac_to_eui64(bytes.fromhex(match.group(1).replace(":", "")))


def esptool_read_mac_command(port: str) -> list[str]:
    return [sys.executable, "-m", "esptool", "--port", port, "read-mac"]


def read_board_dev_eui(port: str, *, timeout_s: float = 60.0) -> str:
    """Ask the attached ESP32 for its MAC with esptool and derive its DevEUI."""
    try:
        result = subprocess.run(
            esptool_read_mac_command(port),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(
            f"esptool could not read the MAC on {port}: {exc}", exit_code=1
        ) from exc
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ProvisionError(f"esptool read-mac on {port} failed: {last[0]}", exit_code=1)
    return parse_esptool_mac(result.stdout)


def next_names(existing: Iterable[Node], prefix: str, count: int) -> list[str]:
    """``prefix-0001``… continuing after the highest number already used with this prefix."""
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)$")
    used = [int(m.group(1)) for n in existing if (m := pattern.match(n.name))]
    start = max(used, default=0) + 1
    return [f"{prefix}-{i:04d}" for i in range(start, start + count)]


def add_nodes(
    inventory: Inventory,
    secrets: Secrets,
    *,
    kind: str,
    count: int,
    name_prefix: str | None = None,
    dev_euis: list[str] | None = None,
    **fields: Any,
) -> list[Node]:
    """Append ``count`` new nodes with fresh AppKeys; DevEUIs given (from a board) or random."""
    if kind not in KINDS:
        raise InventoryError(f"expected one of {', '.join(KINDS)}, got {kind!r}", field="kind")
    if count < 1 or count > 10_000:
        raise InventoryError("expected 1 to 10000", field="count")
    if dev_euis is not None and len(dev_euis) != count:
        raise InventoryError("one attached board gives one node: use --count 1", field="count")
    prefix = name_prefix or kind
    taken = {n.dev_eui for n in inventory.nodes} | set(secrets.app_keys)
    new: list[Node] = []
    wheres: list[str] = []
    for index, name in enumerate(next_names(inventory.nodes, prefix, count)):
        if dev_euis is not None:
            dev_eui = dev_euis[index]
            if dev_eui in taken:
                raise InventoryError(
                    f"DevEUI {dev_eui} of the attached board is already in {inventory.path}",
                    field="dev_eui",
                )
        else:
            dev_eui = random_dev_eui()
            while dev_eui in taken:  # 2^-62 per draw; loop for completeness
                dev_eui = random_dev_eui()
        taken.add(dev_eui)
        raw = {k: v for k, v in fields.items() if v is not None}
        raw.setdefault("serial", name.upper())
        where = f"new node {name}"
        node = validate_node({"dev_eui": dev_eui, "kind": kind, "name": name, **raw}, where=where)
        new.append(node)
        wheres.append(where)
    _check_unique(
        inventory.nodes + new, [f"{inventory.path.name} {n.name}" for n in inventory.nodes] + wheres
    )
    for node in new:
        secrets.app_keys[node.dev_eui] = new_app_key()
    inventory.nodes.extend(new)
    return new


def with_location(node: Node, latitude: float, longitude: float) -> Node:
    return replace(node, latitude=latitude, longitude=longitude)
