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
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.errors import CliError

__all__ = ["FINAL", "Client", "progress_line", "read_token"]

FINAL = ("done", "failed", "cancelled")


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--token-file: cannot read {path}: {exc}") from None
    if not token or any(c.isspace() for c in token):
        raise CliError(f"--token-file: {path} must hold one token on one line")
    return token


class Client:
    def __init__(self, api: str, token: str, timeout_s: float = 60.0) -> None:
        self.api = api.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self._token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.api + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", "replace")
            try:
                message = json.loads(raw).get("message", raw)
            except (ValueError, AttributeError):
                message = raw[:200]
            raise CliError(f"gateway answered {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach the gateway at {self.api}: {reason}") from None

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
