"""The gateway's device registry over its HTTP API (docs/interfaces.md, "Gateway registry").

``PUT /api/v1/devices/{devEui}`` creates or updates a device (idempotent) with
``{"kind", "name", "join_eui", "latitude", "longitude", "street", "group", "board", "serial"}``;
``GET /api/v1/devices/{devEui}`` reads it back. A bearer token goes on every call. To report
"unchanged" honestly (and to write nothing on a second run), the client reads the device first and
only PUTs when a field differs.

Many at once: ``PUT /api/v1/devices`` with ``{"devices": [{"dev_eui", ...}, ...]}`` (up to
:data:`BATCH_SIZE` per request, one commit on the gateway) answers each entry's outcome, the
gateway deciding "unchanged" itself; :meth:`GatewayRegistry.ensure_many` uses it and falls back to
one GET/PUT per node against a gateway without that route (HTTP 404/405).
"""

from __future__ import annotations

from typing import Any

import httpx

from tools.provision.errors import RegistrationError
from tools.provision.inventory import Node

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
BATCH_SIZE = 500  # nodes per PUT /api/v1/devices (the gateway takes up to 1,000)


def registry_body(node: Node) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": node.kind,
        "name": node.name,
        "join_eui": node.join_eui,
        "street": node.street,
        "group": node.group,
        "board": node.board,
        "serial": node.serial,
    }
    if node.latitude is not None and node.longitude is not None:
        body["latitude"] = node.latitude
        body["longitude"] = node.longitude
    return body


def _same(current: dict[str, Any], body: dict[str, Any]) -> bool:
    for key, value in body.items():
        have = current.get(key)
        if isinstance(value, float) and isinstance(have, (int, float)):
            if abs(float(have) - value) > 1e-9:
                return False
        elif key == "join_eui" and isinstance(have, str):
            if have.lower() != value:
                return False
        elif (have if have is not None else "") != value:
            return False
    return True


class GatewayRegistry:
    """Synchronous client for the gateway's registry routes; errors become one line."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )

    def __repr__(self) -> str:  # never the token
        return f"GatewayRegistry({self.base_url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GatewayRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RegistrationError(
                f"cannot reach the gateway API at {self.base_url} ({type(exc).__name__}); "
                "check --gateway-api"
            ) from None
        if response.status_code in (401, 403):
            raise RegistrationError(
                f"the gateway API at {self.base_url} refused the token (HTTP "
                f"{response.status_code}): check --gateway-token-file"
            )
        return response

    def get(self, dev_eui: str) -> dict[str, Any] | None:
        response = self._request("GET", f"/api/v1/devices/{dev_eui}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistrationError(
                f"gateway API GET device {dev_eui}: HTTP {response.status_code} "
                f"{response.text[:200]!r}"
            )
        data = response.json()
        if not isinstance(data, dict):
            raise RegistrationError(f"gateway API GET device {dev_eui}: expected a JSON object")
        return data

    def ensure(self, node: Node) -> str:
        body = registry_body(node)
        current = self.get(node.dev_eui)
        if current is not None and _same(current, body):
            return UNCHANGED
        response = self._request("PUT", f"/api/v1/devices/{node.dev_eui}", json=body)
        if response.status_code not in (200, 201):
            raise RegistrationError(
                f"gateway API PUT device {node.dev_eui}: HTTP {response.status_code} "
                f"{response.text[:200]!r}"
            )
        return CREATED if current is None else UPDATED

    def ensure_many(self, nodes: list[Node]) -> list[str | RegistrationError]:
        """:meth:`ensure` for each node, :data:`BATCH_SIZE` per request; a node's outcome or
        the error that refused it, in order. Errors that stop everything (token, network) raise."""
        results: list[str | RegistrationError] = []
        for start in range(0, len(nodes), BATCH_SIZE):
            chunk = nodes[start : start + BATCH_SIZE]
            body = {"devices": [{"dev_eui": n.dev_eui, **registry_body(n)} for n in chunk]}
            response = self._request("PUT", "/api/v1/devices", json=body)
            if response.status_code in (404, 405):  # a gateway from before the batch route
                results.extend(self._one_by_one(chunk))
                continue
            if response.status_code != 200:
                raise RegistrationError(
                    f"gateway API PUT devices: HTTP {response.status_code} {response.text[:200]!r}"
                )
            answers = response.json().get("results")
            if not isinstance(answers, list) or len(answers) != len(chunk):
                raise RegistrationError("gateway API PUT devices: the answer does not match")
            for node, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, dict) and answer.get("outcome") in (
                    CREATED,
                    UPDATED,
                    UNCHANGED,
                ):
                    results.append(str(answer["outcome"]))
                else:
                    error = answer.get("error") if isinstance(answer, dict) else answer
                    results.append(
                        RegistrationError(f"gateway API refused {node.dev_eui}: {error}")
                    )
        return results

    def _one_by_one(self, nodes: list[Node]) -> list[str | RegistrationError]:
        out: list[str | RegistrationError] = []
        for node in nodes:
            try:
                out.append(self.ensure(node))
            except RegistrationError as error:
                if "cannot reach" in str(error) or "refused the token" in str(error):
                    raise
                out.append(error)
        return out
