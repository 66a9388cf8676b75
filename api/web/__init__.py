"""The inspector's workspace in the browser (issue 16) and the offline /docs page.

``install(app)`` adds the pages under ``/ui/``, their static files, ``/`` (to the workspace) and
``/docs`` and ``/redoc`` served from the assets of an installed package (fastapi-offline; no CDN).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.web import pages, site

STATIC = Path(__file__).with_name("static")
DOCS_PAGE = (Path(__file__).parent / "templates" / "docs.html").read_text(encoding="utf-8")
REDOC_PAGE = (Path(__file__).parent / "templates" / "redoc.html").read_text(encoding="utf-8")


def _docs_assets() -> Path:
    """swagger-ui and ReDoc as the fastapi-offline package installs them (no CDN at run time)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).with_name("static")


def install(app: FastAPI) -> None:
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="web-static")
    app.mount("/docs/assets", StaticFiles(directory=_docs_assets()), name="docs-assets")
    app.include_router(pages.router)
    app.include_router(site.router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/participants", 303)

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        """The OpenAPI page, its scripts and styles served by trialaudit itself."""
        return HTMLResponse(DOCS_PAGE)

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return HTMLResponse(REDOC_PAGE)
