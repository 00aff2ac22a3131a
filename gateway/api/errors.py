"""The API's one error shape: ``{"error": <code>, "message": <text>}`` with an HTTP status.

Routers raise :class:`ApiError`; :func:`install_handlers` turns it, request validation errors,
Starlette's HTTP errors, a store that cannot take a change now (503, ``store_unavailable``,
``Retry-After``) and anything unexpected into that shape.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import NotCommitted, StoreConflict, StoreError
from gateway.logs import get_logger

__all__ = ["ApiError", "error_response", "install_handlers"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}")
        return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        # the database is away or full, or refused the change again and again
        # (gateway/service.py _committed_on): nothing was answered as done. The client may
        # send it again, except after NotCommitted, whose message says what to check first
        gateway = getattr(request.app.state, "gateway", None)
        log = gateway.log if gateway is not None else get_logger()
        log.warning("api: store unavailable", extra={"path": request.url.path, "error": str(exc)})
        if isinstance(exc, NotCommitted):
            message = str(exc)
        elif isinstance(exc, StoreConflict):
            message = f"{exc}; try again"
        else:
            message = "the store is unavailable; try again"
        response = error_response(503, "store_unavailable", message)
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        gateway = getattr(request.app.state, "gateway", None)
        log = gateway.log if gateway is not None else get_logger()
        log.exception("api error", extra={"path": request.url.path})
        return error_response(500, "internal", f"{type(exc).__name__}")
