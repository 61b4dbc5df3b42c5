"""The console's files: served at / and /console/, open, with security headers, no inline code."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from server.console import CONSOLE_DIR, WEB_SUFFIXES
from tests.conftest import Client, MakeClient

ASSETS = {
    "app.js": ("application/javascript", "text/javascript"),
    "style.css": ("text/css",),
    "favicon.svg": ("image/svg+xml",),
}


def assert_security_headers(headers: Mapping[str, str]) -> None:
    csp = headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "script-src" not in directives  # scripts fall back to default-src 'self'
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


async def test_the_page_is_served_at_root_with_security_headers(client: Client) -> None:
    async with client.get("/") as response:
        assert (response.status, response.content_type) == (200, "text/html")
        assert await response.read() == (CONSOLE_DIR / "index.html").read_bytes()
        assert_security_headers(response.headers)


@pytest.mark.parametrize("name", sorted(ASSETS))
async def test_assets_are_served_with_security_headers(client: Client, name: str) -> None:
    async with client.get(f"/console/{name}") as response:
        assert response.status == 200
        assert response.content_type in ASSETS[name]
        assert await response.read() == (CONSOLE_DIR / name).read_bytes()
        assert_security_headers(response.headers)


def test_every_shipped_file_is_known_and_the_page_has_no_inline_code() -> None:
    shipped = {path.name for path in CONSOLE_DIR.iterdir() if path.suffix in WEB_SUFFIXES}
    assert shipped == {"index.html", *ASSETS}
    html = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
    assert scripts == [""]  # one script, loaded by src
    assert re.search(r'<script src="/console/app.js" defer>', html)
    assert not re.search(r"\son[a-z]+\s*=", html), "no inline event handlers"
    assert not re.search(r"\sstyle\s*=", html), "no inline styles"
    script = (CONSOLE_DIR / "app.js").read_text(encoding="utf-8")
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert "eval(" not in script


async def test_the_page_is_open_while_data_endpoints_stay_guarded(make_client: MakeClient) -> None:
    client = await make_client(api_token="secret")
    for path in ["/", "/console/app.js", "/console/style.css"]:
        async with client.get(path) as response:
            assert response.status == 200, path
    for path in ["/cameras", "/cameras?limit=5", "/logs"]:
        async with client.get(path) as response:
            assert response.status == 401, path


@pytest.mark.parametrize("name", ["nope.js", "__init__.py", "..%2Fapp.py", "index.html.bak"])
async def test_a_file_the_console_does_not_ship_is_a_404_problem(client: Client, name: str) -> None:
    async with client.get(f"/console/{name}") as response:
        assert (response.status, response.content_type) == (404, "application/problem+json")
        assert_security_headers(response.headers)
        problem = await response.json(content_type=None)
    assert problem["detail"].startswith("the console has no file")


async def test_a_revalidated_page_keeps_its_security_headers(client: Client) -> None:
    async with client.get("/") as response:
        etag = response.headers["ETag"]
    async with client.get("/", headers={"If-None-Match": etag}) as response:
        assert response.status == 304
        assert_security_headers(response.headers)


async def test_api_answers_carry_no_console_headers(client: Client) -> None:
    async with client.get("/healthz") as response:
        assert "Content-Security-Policy" not in response.headers


@pytest.mark.parametrize("path", ["/", "/console/app.js"])
@pytest.mark.parametrize(
    "byte_range", ["bytes=99999999-", "bytes=abc", "bytes=0-0,2-3", "bytes=0-9"]
)
async def test_a_range_is_ignored_and_the_whole_file_served(
    client: Client, path: str, byte_range: str
) -> None:
    """A refused range would be a 416 without a problem body: the files are small, so
    a range is ignored (as HTTP allows) and the file comes whole."""
    name = "index.html" if path == "/" else path.rsplit("/", 1)[1]
    async with client.get(path, headers={"Range": byte_range}) as response:
        assert response.status == 200
        assert "Content-Range" not in response.headers
        assert await response.read() == (CONSOLE_DIR / name).read_bytes()
        assert_security_headers(response.headers)


async def test_a_head_of_the_page_has_its_length_and_no_body(client: Client) -> None:
    async with client.head("/") as response:
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(
            (CONSOLE_DIR / "index.html").read_bytes()
        )
        assert await response.read() == b""
