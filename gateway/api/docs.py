"""``/docs``: the interactive API page (Swagger UI) from files installed with the gateway.

Nothing is fetched from a CDN (a gateway in a city's network may have no internet): the
JavaScript and CSS come from the ``swagger-ui-bundle`` package and are served under
``/docs/static``. The page reads ``/openapi.json``; "Authorize" takes the bearer token.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

__all__ = ["mount"]

_STATIC = "/docs/static"


def mount(app: FastAPI) -> None:
    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{_STATIC}/favicon-32x32.png",
        )

    app.mount(_STATIC, StaticFiles(directory=swagger_ui_path), name="docs-static")
