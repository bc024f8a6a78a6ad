"""A real HTTP server on a free port that records the requests it receives (a webhook target)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.ports import free_port
from tests.support.waiting import eventually


@dataclass
class Received:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    port: int
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # a hanging receiver answers once set


@contextlib.asynccontextmanager
async def receiver(
    status: int = 204, headers: dict[str, str] | None = None, *, hang: bool = False
) -> AsyncIterator[Receiver]:
    """Answers every POST with `status` (and `headers`); with `hang`, only once `release` is set."""
    port = free_port()
    rec = Receiver(f"http://127.0.0.1:{port}/hook", port)

    async def hook(request: Request) -> Response:
        rec.requests.append(Received(str(request.url), dict(request.headers), await request.body()))
        if hang:
            await rec.release.wait()
        return Response(status_code=status, headers=headers)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, 10)
    try:
        yield rec
    finally:
        rec.release.set()
        server.should_exit = True
        await asyncio.wait_for(task, 10)
