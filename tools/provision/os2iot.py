"""Register and decommission nodes through OS2iot's API, where OS2iot owns ChirpStack.

In an OS2iot city (Aarhus) "it is not supported to change data directly in ChirpStack": devices
are created through OS2iot, which creates them in ChirpStack (docs/os2iot.md §2). What this
module relies on, from OS2iot's backend:

- ``X-API-KEY: <key>``; 401 for a bad key, 403 without Write on the application.
- ``POST /iot-device/createMany`` takes 1..50 devices; any class-validator failure is a 400 for
  the whole batch, while a duplicate or a ChirpStack failure is an item error in a 201, in
  request order. ``metadata`` is a JSON *string* of string values.
- There is no DevEUI filter: ``GET /search?q=<devEUI>&limit&offset`` finds a device.
- A failed ChirpStack key call is swallowed on create, so every created device is read back
  (``GET /iot-device/:id``) and must say ``activationType: "OTAA"``.
- ``PUT /iot-device/:id`` replaces the device (the full DTO, keys included).

Idempotent: a DevEUI OS2iot already has is compared and updated (not duplicated); running the
same command again after a failure finishes the batch. The API key is sent only as the header
and never printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from tools.provision.errors import RegistrationError
from tools.provision.inventory import Node, Secrets
from tools.provision.register import BatchReport

__all__ = [
    "BATCH",
    "Os2iot",
    "decommission_os2iot",
    "device_dto",
    "node_metadata",
    "register_os2iot",
]

BATCH = 50  # createMany's ArrayMaxSize(50)
CREATED, UPDATED, UNCHANGED, DELETED, ABSENT = (
    "created",
    "updated",
    "unchanged",
    "deleted",
    "absent",
)


def node_metadata(node: Node) -> str:
    """OS2iot's ``metadata``: a JSON string of a flat object of non-empty strings."""
    fields = {"kind": node.kind, "board": node.board, "region": node.region}
    for name in ("street", "group", "serial"):
        value = getattr(node, name)
        if value:
            fields[name] = value
    return json.dumps({f"citypack_{k}": v for k, v in fields.items()}, sort_keys=True)


def device_dto(node: Node, app_key: str, application_id: int, profile_id: str) -> dict[str, Any]:
    """A ``CreateIoTDeviceDto`` for one OTAA node (lower-case DevEUI, docs/os2iot.md §2.3)."""
    dto: dict[str, Any] = {
        "name": node.name[:50],
        "type": "LORAWAN",
        "applicationId": application_id,
        "comment": f"citypack {node.kind}",
        "metadata": node_metadata(node),
        "lorawanSettings": {
            "devEUI": node.dev_eui.lower(),
            "deviceProfileID": profile_id,
            "activationType": "OTAA",
            "OTAAapplicationKey": app_key,
            "skipFCntCheck": False,
            "isDisabled": False,
        },
    }
    if node.latitude is not None and node.longitude is not None:
        dto["latitude"] = node.latitude
        dto["longitude"] = node.longitude
    return dto


def _same(current: dict[str, Any], dto: dict[str, Any]) -> bool:
    settings = current.get("lorawanSettings") or {}
    location = current.get("location") or {}
    coordinates = location.get("coordinates") if isinstance(location, dict) else None
    lon, lat = dto.get("longitude"), dto.get("latitude")
    if lon is None or lat is None:
        same_place = coordinates is None
    else:
        same_place = isinstance(coordinates, list) and all(
            isinstance(have, int | float) and abs(have - want) < 1e-9
            for have, want in zip(coordinates, (lon, lat), strict=True)
        )
    return (
        current.get("name") == dto["name"]
        and current.get("metadata") == dto["metadata"]
        and settings.get("deviceProfileID") == dto["lorawanSettings"]["deviceProfileID"]
        and settings.get("activationType") == "OTAA"
        and same_place
    )


class Os2iot:
    """Synchronous client for the slice of OS2iot's API that provisioning needs."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/api/v1") else base + "/api/v1"
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"X-API-KEY": api_key},
            timeout=timeout_s,
            transport=transport,
        )

    def __repr__(self) -> str:  # never the key
        return f"Os2iot({self.base_url!r})"

    def __enter__(self) -> Os2iot:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RegistrationError(
                f"cannot reach OS2iot at {self.base_url} ({type(exc).__name__}); check --os2iot"
            ) from None
        if response.status_code == 401:
            raise RegistrationError(
                f"OS2iot at {self.base_url} refused the API key (HTTP 401): check --api-key-file"
            )
        if response.status_code == 403:
            raise RegistrationError(
                "OS2iot refused the request (HTTP 403): the API key needs "
                "OrganizationApplicationAdmin on the application"
            )
        if response.status_code >= 500:
            raise RegistrationError(
                f"OS2iot answered HTTP {response.status_code} on {method} {path}: "
                f"{_message(response)}; run the same command again to resume"
            )
        return response

    def find(self, dev_eui: str) -> int | None:
        """The OS2iot id of the device with this DevEUI (any case), or None."""
        response = self._request(
            "GET", "/search", params={"q": dev_eui.lower(), "limit": 20, "offset": 0}
        )
        _expect(response, 200, f"search {dev_eui}")
        for hit in response.json().get("data", []):
            eui = hit.get("deviceEUI")
            mine = isinstance(eui, str) and eui.lower() == dev_eui.lower()
            if hit.get("type") == "IoTDevice" and mine:
                return int(hit["id"])
        return None

    def get(self, device_id: int) -> dict[str, Any]:
        response = self._request("GET", f"/iot-device/{device_id}")
        _expect(response, 200, f"GET iot-device {device_id}")
        data = response.json()
        if not isinstance(data, dict):
            raise RegistrationError(f"OS2iot GET iot-device {device_id}: expected an object")
        return data

    def create_many(self, dtos: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = self._request("POST", "/iot-device/createMany", json={"data": dtos})
        if response.status_code == 400:
            raise RegistrationError(f"OS2iot refused the batch: {_message(response)}")
        _expect(response, 201, "createMany")
        results = response.json()
        if not isinstance(results, list) or len(results) != len(dtos):
            raise RegistrationError("OS2iot createMany: expected one result per device")
        return results

    def update(self, device_id: int, dto: dict[str, Any]) -> None:
        response = self._request("PUT", f"/iot-device/{device_id}", json=dto | {"id": device_id})
        if response.status_code == 400:
            raise RegistrationError(f"OS2iot refused the update: {_message(response)}")
        _expect(response, 200, f"PUT iot-device {device_id}")

    def delete(self, device_id: int) -> None:
        response = self._request("DELETE", f"/iot-device/{device_id}")
        _expect(response, 200, f"DELETE iot-device {device_id}")


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise RegistrationError(f"OS2iot {what}: HTTP {response.status_code} {_message(response)}")


def _message(response: httpx.Response) -> str:
    """OS2iot's error text: ``message`` as a string, a list of validation errors, or raw."""
    try:
        body = response.json()
    except ValueError:
        return repr(response.text[:200])
    message = body.get("message") if isinstance(body, dict) else body
    if isinstance(message, list):
        parts = []
        for error in message:
            if isinstance(error, dict):
                constraints = "; ".join(str(v) for v in (error.get("constraints") or {}).values())
                parts.append(f"{error.get('property')}: {constraints}")
            else:
                parts.append(str(error))
        return ", ".join(parts)[:300]
    return str(message)[:300]


def register_os2iot(
    nodes: Sequence[Node],
    secrets: Secrets,
    client: Os2iot,
    *,
    application_id: int,
    profiles: Mapping[str, str],
    advance: Callable[[str], None] = lambda name: None,
) -> BatchReport:
    """Create or update every node in OS2iot, in batches of :data:`BATCH`.

    ``profiles`` maps a kind ("bin", "lamp") or "*" to a ChirpStack device-profile UUID. A row
    that OS2iot refuses is reported with its row number and DevEUI; the others go on.
    """
    report = BatchReport()
    rows = {node.dev_eui: index for index, node in enumerate(nodes, start=1)}
    plans: list[tuple[Node, dict[str, Any]]] = []
    for node in nodes:  # every key and profile must be there before anything is written
        profile = profiles.get(node.kind) or profiles.get("*")
        if not profile:
            raise RegistrationError(f"no --device-profile-id for kind {node.kind!r}")
        plans.append(
            (node, device_dto(node, secrets.app_key(node.dev_eui).hex(), application_id, profile))
        )
    for start in range(0, len(plans), BATCH):
        chunk = plans[start : start + BATCH]
        new: list[tuple[Node, dict[str, Any]]] = []
        for node, dto in chunk:
            device_id = client.find(node.dev_eui)
            if device_id is None:
                new.append((node, dto))
                continue
            try:
                if _same(client.get(device_id), dto):
                    report.outcomes[f"device {UNCHANGED}"] += 1
                else:
                    client.update(device_id, dto)
                    report.outcomes[f"device {UPDATED}"] += 1
            except RegistrationError as exc:
                if _fatal(exc):
                    raise
                report.failures.append((node.dev_eui, f"row {rows[node.dev_eui]}: {exc}"))
            advance(node.name)
        if new:
            results = client.create_many([dto for _, dto in new])
            for (node, _), result in zip(new, results, strict=True):
                error = result.get("error") if isinstance(result, dict) else None
                created = result.get("data") if isinstance(result, dict) else None
                if error or not isinstance(created, dict):
                    text = (error or {}).get("message", "no result")
                    report.failures.append((node.dev_eui, f"row {rows[node.dev_eui]}: {text}"))
                else:
                    # OS2iot swallows a failed ChirpStack key call: read the device back
                    settings = client.get(int(created["id"])).get("lorawanSettings") or {}
                    if settings.get("activationType") != "OTAA":
                        report.failures.append(
                            (
                                node.dev_eui,
                                f"row {rows[node.dev_eui]}: created, but ChirpStack holds no "
                                "OTAA keys for it (OS2iot ignored a failed key call); run "
                                "again to update it",
                            )
                        )
                    else:
                        report.outcomes[f"device {CREATED}"] += 1
                advance(node.name)
    return report


def decommission_os2iot(
    nodes: Sequence[Node], client: Os2iot, *, advance: Callable[[str], None] = lambda name: None
) -> BatchReport:
    """Delete every node from OS2iot (and so from ChirpStack); absent ones are left alone."""
    report = BatchReport()
    for node in nodes:
        device_id = client.find(node.dev_eui)
        if device_id is None:
            report.outcomes[f"device {ABSENT}"] += 1
        else:
            client.delete(device_id)
            report.outcomes[f"device {DELETED}"] += 1
        advance(node.name)
    return report


def _fatal(error: RegistrationError) -> bool:
    text = str(error)
    return any(marker in text for marker in ("cannot reach", "refused the API key", "HTTP 403"))
