"""The gateway's HTTP API as the CLI calls it (``citypack fuota``, ``citypack collection``):
the bearer token from ``--token-file`` and one request with one-line errors."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tools.errors import CliError

__all__ = ["gateway_request", "read_token"]


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--token-file: cannot read {path}: {exc}") from None
    if not token or any(c.isspace() for c in token):
        raise CliError(f"--token-file: {path} must hold one token on one line")
    return token


def gateway_request(
    api: str,
    path: str,
    token: str,
    timeout_s: float,
    *,
    method: str = "GET",
    body: dict[str, Any] | None = None,
) -> str:
    """One call to the gateway's API with its bearer token; the answer's text. A refusal or an
    unreachable gateway is one :class:`CliError` line (the gateway's own message when it gave
    one); the token is never in it."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        api.rstrip("/") + path, data=data, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return str(response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        raw = exc.read().decode("utf-8", "replace")
        try:
            message = json.loads(raw).get("message", raw)
        except (ValueError, AttributeError):
            message = raw[:200]
        raise CliError(f"gateway answered {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach the gateway at {api}: {reason}") from None
