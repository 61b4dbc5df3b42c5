"""The operator console: this package's web files, served at ``/`` and ``/console/``.

The page (``index.html``), its script, style sheet and icon sit beside this
module and are served as they are, with security headers.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from ..http.problems import ProblemError
from ..relay import shown

CONSOLE_DIR = Path(__file__).resolve().parent
#: The kinds of file the console ships; nothing else in the package is served.
WEB_SUFFIXES = frozenset({".html", ".js", ".css", ".svg"})
INDEX_ROUTE = "console"
ASSETS_ROUTE = "console-assets"
ROUTE_NAMES = frozenset({INDEX_ROUTE, ASSETS_ROUTE})
#: The page runs only its own script and style, and no other site may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate (cheaply, by ETag) so that an upgrade's page is seen at once.
    "Cache-Control": "no-cache",
}


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(CONSOLE_DIR / "index.html", headers=SECURITY_HEADERS)


def _asset_handler() -> Handler:
    # The files shipped, listed once: nothing else under the directory is ever served.
    assets = {
        path.name: path
        for path in CONSOLE_DIR.iterdir()
        if path.is_file() and path.suffix in WEB_SUFFIXES
    }

    async def asset(request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        path = assets.get(name)
        if path is None:
            raise ProblemError(
                404,
                f"the console has no file {shown(name)}; open the console at /",
                kind="not-found",
                headers=SECURITY_HEADERS,
            )
        return web.FileResponse(path, headers=SECURITY_HEADERS)

    return asset


def setup_console(app: web.Application) -> None:
    """The page and its assets are open: they hold no data (the data endpoints are guarded).
    Their files, and the 404 for a file the console does not ship, carry the security
    headers; no other answer pays for them."""
    app.router.add_get("/", index, name=INDEX_ROUTE)
    app.router.add_get("/console/{name}", _asset_handler(), name=ASSETS_ROUTE)
