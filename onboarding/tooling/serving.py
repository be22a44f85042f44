"""Serving an ASGI app with uvicorn inside an existing event loop (``onboarding dev`` runs the
API and the Smile stand-in beside the worker; tests run the stand-in the same way)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn

# X-Forwarded-For is believed only from ONBOARDING_TRUSTED_PROXIES (api/client_ip.py). Uvicorn's
# own proxy-header rewrite would also believe it from 127.0.0.1 and hide the real peer from us.
UVICORN_OPTIONS: dict[str, Any] = {"proxy_headers": False, "server_header": False}


class EmbeddedServer(uvicorn.Server):
    """Uvicorn without its own signal handling: the owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def start_server(app: Any, host: str, port: int) -> tuple[EmbeddedServer, asyncio.Task[None]]:
    server = EmbeddedServer(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", **UVICORN_OPTIONS
        )
    )
    task = asyncio.create_task(server.serve(), name=f"uvicorn:{port}")
    # uvicorn exposes only a flag for "listening", so poll it briefly.
    while not server.started and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    if task.done():
        task.result()  # raises what went wrong
        raise RuntimeError(f"server on {host}:{port} stopped during startup")
    return server, task


async def stop_server(server: EmbeddedServer, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task


@contextlib.asynccontextmanager
async def serving(app: Any, host: str, port: int) -> AsyncIterator[EmbeddedServer]:
    server, task = await start_server(app, host, port)
    try:
        yield server
    finally:
        await stop_server(server, task)
