"""HTTP API of the gateway (FastAPI, served by uvicorn in the gateway's own event loop).

Contracts: ARCHITECTURE.md "HTTP API" and docs/interfaces.md "Gateway registry over HTTP".
Everything under ``/api/v1`` needs ``Authorization: Bearer <token>`` (compared with
``hmac.compare_digest``); ``/healthz``, ``/readyz`` and ``/metrics`` do not. Every error is JSON
``{"error": <code>, "message": <text>}``. OpenAPI at ``/openapi.json``.

One module per resource, each an ``APIRouter``: :mod:`~gateway.api.health`,
:mod:`~gateway.api.devices`, :mod:`~gateway.api.commands`, :mod:`~gateway.api.bins`,
:mod:`~gateway.api.events`, :mod:`~gateway.api.stats`; what they share is in
:mod:`~gateway.api.deps` (the gateway, the token check) and :mod:`~gateway.api.errors`; the app
is assembled in :mod:`~gateway.api.app` and served by :mod:`~gateway.api.server`.
"""

from __future__ import annotations

from gateway.api.app import ROUTERS, create_app
from gateway.api.deps import BEARER, V1_DEPENDENCIES, require_token
from gateway.api.errors import ApiError
from gateway.api.server import bind_api, start_api

__all__ = [
    "BEARER",
    "ROUTERS",
    "V1_DEPENDENCIES",
    "ApiError",
    "bind_api",
    "create_app",
    "require_token",
    "start_api",
]
