"""The ``Expect`` header, answered as every other error is: problem+json.

aiohttp reads ``Expect`` before the request reaches the middleware, and its own
handler refuses any expectation but ``100-continue`` with a plain-text 417. This
one is given to every route instead.
"""

from __future__ import annotations

from aiohttp import HttpVersion11, hdrs, web

from ..relay import shown
from .problems import problem_response

CONTINUE = "100-continue"


async def expect_continue(request: web.Request) -> web.Response | None:
    """``Expect: 100-continue`` gets ``100 Continue`` (the client then sends its body);
    any other expectation, which no route meets, a 417 problem."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if expect.strip().lower() == CONTINUE:
        if request.version >= HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # what follows is the response proper
        return None
    return problem_response(
        417,
        f"the server meets no expectation but {CONTINUE}, got Expect: {shown(expect)}; "
        "send the request without that header",
        kind="expectation-failed",
    )
