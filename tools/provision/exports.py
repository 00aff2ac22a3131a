"""Import files for other platforms, all from one inventory (+ secrets).

- **OS2iot** bulk import: comma-separated, the header of OS2iot's LoRaWAN OTAA sample
  (reference/domain.md §1.1, OS2iot-frontend ``src/assets/docs/iotdevice_lorawan_otaa.csv`` for
  ChirpStack v4, i.e. without the v3 ``serviceProfileID`` column). ``deviceProfileID`` is the
  ChirpStack device-profile UUID OS2iot should attach (``--os2iot-profile bin=UUID``).
- **The Things Stack** CSV: semicolon-separated, header row required, unknown columns ignored
  (reference/domain.md §2; TTS docs "CSV File Reference"). ``id`` lower-case with hyphens.
- **ChirpStack** JSON: one object per device with the fields of ``api.Device`` and
  ``api.DeviceKeys`` (reference/chirpstack.md §5), AppKey in ``nwk_key`` for LoRaWAN 1.0.x.

These files carry AppKeys, which is what they are for; so each is written with mode 0600 and the
command warns on stderr. ``--no-keys`` leaves the key columns empty.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence

from tools.provision.errors import InventoryError
from tools.provision.inventory import Node, Secrets

OS2IOT_HEADER = (
    "name",
    "id",
    "type",
    "longitude",
    "latitude",
    "commentOnLocation",
    "comment",
    "deviceModelId",
    "devEUI",
    "deviceProfileID",
    "skipFCntCheck",
    "activationType",
    "OTAAapplicationKey",
)
TTS_HEADER = (
    "id",
    "dev_eui",
    "join_eui",
    "name",
    "description",
    "frequency_plan_id",
    "lorawan_version",
    "lorawan_phy_version",
    "supports_join",
    "app_key",
)
FORMATS = ("os2iot", "tts", "chirpstack")
# TTS frequency plans (lorawan-frequency-plans): EU868 as TTN uses it, US915 sub-band 2.
TTS_FREQUENCY_PLANS = {"EU868": "EU_863_870_TTN", "US915": "US_902_928_FSB_2"}
TTS_MAC_VERSION = "MAC_V1_0_4"
TTS_PHY_VERSION = "RP002_V1_0_3"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _key(secrets: Secrets | None, node: Node) -> str:
    return secrets.app_key(node.dev_eui).hex() if secrets is not None else ""


def _comment(node: Node) -> str:
    parts = [f"citypack {node.kind}", f"serial {node.serial}" if node.serial else ""]
    parts += [f"group {node.group}" if node.group else "", f"board {node.board}"]
    return "; ".join(p for p in parts if p)


def _coordinate(value: float | None) -> str:
    return "" if value is None else f"{value:.7f}".rstrip("0").rstrip(".")


def parse_profile_map(values: Sequence[str]) -> dict[str, str]:
    """``bin=UUID`` pairs from the command line."""
    result: dict[str, str] = {}
    for value in values:
        kind, sep, uuid = value.partition("=")
        if not sep or kind not in ("bin", "lamp") or not _UUID.match(uuid):
            raise InventoryError(
                f"expected bin=UUID or lamp=UUID, got {value[:60]!r}", field="--os2iot-profile"
            )
        result[kind] = uuid.lower()
    return result


def parse_device_profiles(values: Sequence[str], kinds: set[str]) -> dict[str, str]:
    """``--device-profile-id``: one bare UUID (every kind in ``kinds``) and/or ``KIND=UUID``."""
    result: dict[str, str] = {}
    for value in values:
        if "=" in value:
            result.update(parse_profile_map([value]))
        elif _UUID.match(value):
            result.update(dict.fromkeys(kinds, value.lower()))
        else:
            raise InventoryError(
                f"expected a UUID or bin=UUID / lamp=UUID, got {value[:60]!r}",
                field="--device-profile-id",
            )
    return result


def os2iot_csv(nodes: Sequence[Node], secrets: Secrets | None, profiles: Mapping[str, str]) -> str:
    missing = sorted({n.kind for n in nodes} - set(profiles))
    if missing:
        raise InventoryError(
            f"OS2iot needs the ChirpStack device-profile UUID for {missing[0]} nodes: "
            f"--os2iot-profile {missing[0]}=UUID",
            field="deviceProfileID",
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=",", lineterminator="\n")
    writer.writerow(OS2IOT_HEADER)
    for node in nodes:
        location = ", ".join(p for p in (node.street, node.group) if p)
        writer.writerow(
            [
                node.name,
                "",  # id: empty for a new device (OS2iot assigns it)
                "LORAWAN",
                _coordinate(node.longitude),
                _coordinate(node.latitude),
                location,
                _comment(node),
                "",  # deviceModelId: none
                node.dev_eui,
                profiles[node.kind],
                "false",
                "OTAA",
                _key(secrets, node),
            ]
        )
    return buffer.getvalue()


def tts_device_id(node: Node) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", node.name.lower()).strip("-")
    return (slug or f"eui-{node.dev_eui}")[:36]


def tts_csv(nodes: Sequence[Node], secrets: Secrets | None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
    writer.writerow(TTS_HEADER)
    for node in nodes:
        writer.writerow(
            [
                tts_device_id(node),
                node.dev_eui.upper(),
                node.join_eui.upper(),
                node.name,
                _comment(node),
                TTS_FREQUENCY_PLANS[node.region],
                TTS_MAC_VERSION,
                TTS_PHY_VERSION,
                "true",
                _key(secrets, node).upper(),
            ]
        )
    return buffer.getvalue()


def chirpstack_json(
    nodes: Sequence[Node],
    secrets: Secrets | None,
    *,
    application_id: str = "",
    profiles: Mapping[str, str] | None = None,
) -> str:
    devices = []
    for node in nodes:
        device = {
            "device": {
                "devEui": node.dev_eui,
                "name": node.name,
                "description": _comment(node),
                "applicationId": application_id,
                "deviceProfileId": (profiles or {}).get(node.kind, ""),
                "joinEui": node.join_eui,
                "tags": device_tags(node),
            },
            "deviceKeys": {
                "devEui": node.dev_eui,
                "nwkKey": _key(secrets, node),  # LoRaWAN 1.0.x: the AppKey goes in nwk_key
                "appKey": "",
            },
        }
        devices.append(device)
    return json.dumps({"devices": devices}, indent=2, ensure_ascii=False) + "\n"


def device_tags(node: Node) -> dict[str, str]:
    """Tags ChirpStack copies into every event (reference/chirpstack.md §2, DeviceInfo.tags)."""
    tags = {"kind": node.kind, "board": node.board}
    for name in ("street", "group", "serial"):
        value = getattr(node, name)
        if value:
            tags[name] = value
    return tags


def export(
    fmt: str,
    nodes: Sequence[Node],
    secrets: Secrets | None,
    *,
    profiles: Mapping[str, str] | None = None,
    application_id: str = "",
) -> str:
    if fmt == "os2iot":
        return os2iot_csv(nodes, secrets, profiles or {})
    if fmt == "tts":
        return tts_csv(nodes, secrets)
    if fmt == "chirpstack":
        return chirpstack_json(nodes, secrets, application_id=application_id, profiles=profiles)
    raise InventoryError(f"expected one of {', '.join(FORMATS)}, got {fmt!r}", field="--format")
