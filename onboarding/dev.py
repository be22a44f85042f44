"""``onboarding dev``: the Temporal dev server, a worker and the API in one command."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from pydantic import SecretStr

from api.app import create_app
from onboarding.dev_secrets import load_or_create
from onboarding.devserver import TemporalDevServer, ensure_port_free
from onboarding.settings import Settings
from onboarding.worker import build_worker


@dataclass(frozen=True)
class DevOptions:
    data_dir: Path
    host: str
    port: int
    temporal_port: int
    ui_port: int


class _ApiServer(uvicorn.Server):
    """Uvicorn without its own signal handling: ``dev`` stops every part itself, in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def check_ports(options: DevOptions) -> None:
    ensure_port_free(options.host, options.port, "the API", "--port")
    ensure_port_free("127.0.0.1", options.temporal_port, "Temporal", "--temporal-port")
    ensure_port_free("127.0.0.1", options.ui_port, "the Temporal web UI", "--ui-port")


async def run_dev(options: DevOptions) -> None:
    check_ports(options)
    data_dir = options.data_dir.resolve()
    secrets = load_or_create(data_dir)
    settings = Settings(
        webhook_secrets=[SecretStr(secrets.webhook_secret)],
        admin_tokens=[SecretStr(secrets.admin_token)],
        host=options.host,
        port=options.port,
    )
    server = TemporalDevServer(data_dir, port=options.temporal_port, ui_port=options.ui_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await server.start()
    try:
        worker = build_worker(client, settings.task_queue)
        api = _ApiServer(
            uvicorn.Config(
                create_app(settings, client),
                host=options.host,
                port=options.port,
                log_level="warning",
                lifespan="on",
            )
        )
        worker_task = asyncio.create_task(worker.run(), name="worker")
        api_task = asyncio.create_task(api.serve(), name="api")
        stop_task = asyncio.create_task(stop.wait(), name="stop")
        # uvicorn exposes only a flag for "listening", so poll it briefly.
        while not api.started and not api_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if api.started:
            _print_banner(
                options,
                server,
                settings.task_queue,
                secrets.webhook_secret,
                secrets.admin_token,
                data_dir,
            )
        await asyncio.wait({worker_task, api_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        print("\nstopping: API, worker, Temporal …", flush=True)
        api.should_exit = True
        await api_task
        if not worker_task.done():
            await worker.shutdown()
        stop_task.cancel()
        for task in (worker_task, api_task):
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("stopped.", flush=True)


def _print_banner(
    options: DevOptions,
    server: TemporalDevServer,
    task_queue: str,
    webhook_secret: str,
    admin_token: str,
    data_dir: Path,
) -> None:
    api = f"http://{options.host}:{options.port}"
    print(
        f"""
Smile onboarding — embedded dev mode
  API                {api}   (docs: {api}/docs)
  Smile webhooks     POST {api}/webhooks/smile
  Temporal           {server.address}   (task queue {task_queue})
  Temporal web UI    {server.ui_url}
  Data               {data_dir}   (onboardings survive a restart)
  Webhook secret     {webhook_secret}
  Admin token        {admin_token}

  From another shell:
    export TEMPORAL_ADDRESS={server.address}
    onboarding status USER_ID
    curl -H 'Authorization: Bearer {admin_token}' {api}/onboardings/USER_ID

Ctrl-C stops everything.
""",
        flush=True,
    )
