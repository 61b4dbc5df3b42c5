"""The operator console: this package's web files, served at ``/`` and ``/console/``.

The page (``index.html``), its script, style sheet and icon sit beside this
module and are served as they are (read once, at start-up), with security headers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from ..http.problems import ProblemError
from ..relay import shown

CONSOLE_DIR = Path(__file__).resolve().parent
#: The kinds of file the console ships; nothing else in the package is served.
WEB_SUFFIXES = frozenset({".html", ".js", ".css", ".svg"})
#: what a route does with an ``Expect`` header (``aiohttp``'s ``expect_handler``)
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
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


#: what each kind of file is served as
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class WebFile:
    """One of the console's files, read once: they are small, and served whole."""

    body: bytes
    content_type: str
    #: a strong validator of the body, for ``If-None-Match``
    etag: str

    @classmethod
    def read(cls, path: Path) -> WebFile:
        body = path.read_bytes()
        return cls(body, CONTENT_TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:32])

    def answer(self, request: web.Request) -> web.Response:
        """The file, or 304 when the client has this version. A ``Range`` is ignored (as
        HTTP allows): the whole file is small, and a range refused would be an error
        without a problem body."""
        held = request.if_none_match or ()
        if any(tag.value in (self.etag, "*") for tag in held):
            response = web.Response(status=304, headers=SECURITY_HEADERS)
        else:
            response = web.Response(
                body=self.body,
                content_type=self.content_type,
                charset=None if self.content_type == "image/svg+xml" else "utf-8",
                headers=SECURITY_HEADERS,
            )
        response.etag = self.etag
        return response


def _index_handler() -> Handler:
    page = WebFile.read(CONSOLE_DIR / "index.html")

    async def index(request: web.Request) -> web.Response:
        return page.answer(request)

    return index


def _asset_handler() -> Handler:
    # The files shipped, listed once: nothing else under the directory is ever served.
    assets = {
        path.name: WebFile.read(path)
        for path in CONSOLE_DIR.iterdir()
        if path.is_file() and path.suffix in WEB_SUFFIXES
    }

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        file = assets.get(name)
        if file is None:
            raise ProblemError(
                404,
                f"the console has no file {shown(name)}; open the console at /",
                kind="not-found",
                headers=SECURITY_HEADERS,
            )
        return file.answer(request)

    return asset


def setup_console(app: web.Application, expect_handler: ExpectHandler) -> None:
    """The page and its assets are open: they hold no data (the data endpoints are guarded).
    Their files, and the 404 for a file the console does not ship, carry the security
    headers; no other answer pays for them."""
    app.router.add_get("/", _index_handler(), name=INDEX_ROUTE, expect_handler=expect_handler)
    app.router.add_get(
        "/console/{name}", _asset_handler(), name=ASSETS_ROUTE, expect_handler=expect_handler
    )
