"""`citypack fuota start|status|cancel`: FUOTA campaigns on a running gateway, over its HTTP API.

``POST /api/v1/fuota/campaigns``, ``GET /api/v1/fuota/campaigns[/{id}]`` and ``POST
/api/v1/fuota/campaigns/{id}/cancel`` (gateway/api_fuota.py), with the gateway's bearer token
from a file (never printed), as ``citypack collection route`` does. Progress is one line per
change: the campaign's state, devices done, fragments sent.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from tools.errors import CliError
from tools.gateway_api import gateway_request, read_token

__all__ = ["FINAL", "Client", "progress_line", "read_token"]

FINAL = ("done", "failed", "cancelled")


class Client:
    def __init__(self, api: str, token: str, timeout_s: float = 60.0) -> None:
        self.api = api.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return json.loads(
            gateway_request(self.api, path, self._token, self.timeout_s, method=method, body=body)
        )

    def start(self, group: str, bundle: bytes, kind: str | None = None) -> dict[str, Any]:
        body = {"group": group, "bundle": base64.b64encode(bundle).decode("ascii")}
        if kind is not None:
            body["kind"] = kind
        return dict(self.call("POST", "/api/v1/fuota/campaigns", body))

    def get(self, campaign_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/v1/fuota/campaigns/{campaign_id}"))

    def all(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/api/v1/fuota/campaigns")["campaigns"])

    def cancel(self, campaign_id: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/api/v1/fuota/campaigns/{campaign_id}/cancel"))

    def follow(
        self,
        campaign_id: str,
        out: Callable[[str], None],
        *,
        interval_s: float = 2.0,
        timeout_s: float = 24 * 3600.0,
    ) -> dict[str, Any]:
        """Poll until the campaign ends, printing a line whenever its progress changes."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            doc = self.get(campaign_id)
            line = progress_line(doc)
            if line != last:
                out(line)
                last = line
            if doc["state"] in FINAL:
                return doc
            if time.monotonic() > deadline:
                raise CliError(f"campaign {campaign_id} still {doc['state']} after {timeout_s} s")
            time.sleep(interval_s)


def progress_line(doc: dict[str, Any]) -> str:
    counts = doc.get("counts", {})
    p = doc.get("progress", {})
    return (
        f"campaign {doc['id'][:8]} {doc['state']}: {p.get('devices_done', 0)}/"
        f"{p.get('devices', 0)} devices done (applied {counts.get('applied', 0)}, failed "
        f"{counts.get('failed', 0)}), fragments {doc.get('fragments_sent', 0)}/"
        f"{p.get('fragments_planned', 0)}, airtime {doc.get('airtime_s', 0):.1f} s"
    )
