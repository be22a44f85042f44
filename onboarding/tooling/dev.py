"""``onboarding dev``: the Temporal dev server, a worker and the API in one command, and a local
Smile stand-in when no Smile credentials are configured, so everything works offline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from temporalio.runtime import Runtime

from api.app import create_app
from onboarding.service.codec import codec_from_settings
from onboarding.service.metrics import MetricsPortUnavailable, prometheus_runtime
from onboarding.service.settings import Settings, parse_secrets
from onboarding.service.tracing import (
    DEV_SERVICE,
    setup_tracing,
    temporal_interceptors,
    tracing_enabled,
)
from onboarding.service.worker import build_worker, notice_sender_from, smile_client_from
from onboarding.tooling.dev_secrets import DevSecrets, load_or_create
from onboarding.tooling.devserver import DevServerError, TemporalDevServer, ensure_port_free
from onboarding.tooling.discovery import (
    DEV_FILE,
    DEV_NAMESPACE,
    DevRun,
    process_start,
    reachable_url,
    remove_dev_file,
    write_dev_file,
)
from onboarding.tooling.listen import DEFAULT_PORT as LISTEN_PORT
from onboarding.tooling.serving import start_server, stop_server
from onboarding.tooling.smile_standin import create_standin_app


@dataclass(frozen=True)
class DevOptions:
    data_dir: Path
    host: str
    port: int
    temporal_port: int
    ui_port: int
    smile_port: int
    simulate: int = 0


def check_ports(options: DevOptions, with_standin: bool) -> None:
    ensure_port_free(options.host, options.port, "the API", "--port")
    ensure_port_free("127.0.0.1", options.temporal_port, "Temporal", "--temporal-port")
    ensure_port_free("127.0.0.1", options.ui_port, "the Temporal web UI", "--ui-port")
    if with_standin:
        ensure_port_free("127.0.0.1", options.smile_port, "the Smile stand-in", "--smile-port")


def metrics_runtime(host: str, port: int | None) -> Runtime | None:
    """With ``ONBOARDING_WORKER_METRICS_PORT`` set, the SDK runtime serving the worker's
    metrics on the API's host (the one client, the API's and the worker's, records into it)."""
    if port is None:
        return None
    option = "ONBOARDING_WORKER_METRICS_PORT"
    ensure_port_free(host, port, "the worker's metrics", option)
    try:
        return prometheus_runtime(port, host)
    except MetricsPortUnavailable as err:
        raise DevServerError(str(err)) from None


def dev_settings(options: DevOptions, secrets: DevSecrets) -> Settings:
    """The environment's settings, with dev's secrets, ports and (without credentials) the
    stand-in in place of Smile."""
    base = Settings()
    update: dict[str, object] = {
        "webhook_secrets": [SecretStr(s) for s in secrets.webhook_secrets],
        "admin_tokens": [SecretStr(t) for t in secrets.admin_tokens],
        "callback_secret": SecretStr(secrets.callback_secret),
        # notices go where ONBOARDING_NOTIFY_URL says (unset: none), signed with dev's secret
        "notify_secrets": [SecretStr(s) for s in secrets.notify_secrets],
        "host": options.host,
        "port": options.port,
        "data_dir": options.data_dir.resolve(),
        # the console links each onboarding to this dev server's own web UI
        "temporal_ui_url": f"http://127.0.0.1:{options.ui_port}",
        # payloads in Temporal encrypted with dev's key (or ONBOARDING_ENCRYPTION_KEYS), and
        # the web UI may decode them through the API's /codec (docs/encryption.md)
        "encryption_keys": [SecretStr(k) for k in secrets.encryption_keys],
        "codec_cors_origins": list(
            dict.fromkeys(
                [
                    *base.codec_cors_origins,
                    f"http://127.0.0.1:{options.ui_port}",
                    f"http://localhost:{options.ui_port}",
                ]
            )
        ),
    }
    if not base.has_smile_credentials:
        update |= {
            "smile_api_base_url": f"http://127.0.0.1:{options.smile_port}/v1",
            "smile_api_key": secrets.standin_api_key,
            "smile_api_secret": SecretStr(secrets.standin_api_secret),
        }
    return base.model_copy(update=update)


async def run_dev(options: DevOptions) -> None:
    environment = Settings()  # a bad value fails here, before anything starts
    with_standin = not environment.has_smile_credentials
    check_ports(options, with_standin)
    runtime = metrics_runtime(options.host, environment.worker_metrics_port)
    data_dir = options.data_dir.resolve()
    secrets = load_or_create(data_dir, environment)
    settings = dev_settings(options, secrets)
    server = TemporalDevServer(
        data_dir,
        port=options.temporal_port,
        ui_port=options.ui_port,
        # the console's path: the UI's "include cross-origin credentials" sends its cookie
        codec_endpoint=reachable_url(options.host, options.port, "/console/codec"),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # One process, one trace provider: the API's spans and the worker's share it.
    tracer_provider = setup_tracing(settings, DEV_SERVICE)  # None: OTLP endpoint unset
    client = await server.start(
        interceptors=temporal_interceptors(tracer_provider),
        runtime=runtime,
        codec=codec_from_settings(settings),
    )
    smile = smile_client_from(settings)
    notices = notice_sender_from(settings)  # refuses every notice without ONBOARDING_NOTIFY_URL
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(server.stop)
        stack.push_async_callback(smile.aclose)
        stack.push_async_callback(notices.aclose)
        api_url = f"http://{options.host}:{options.port}"
        standin_url = f"http://127.0.0.1:{options.smile_port}" if with_standin else None
        if with_standin:
            standin = create_standin_app(
                secrets.standin_api_key,
                secrets.standin_api_secret,
                webhook_url=f"{api_url}/webhooks/smile",
                webhook_secret=secrets.webhook_secret,
            )
            standin_server, standin_task = await start_server(
                standin, "127.0.0.1", options.smile_port
            )
            stack.push_async_callback(stop_server, standin_server, standin_task)
        worker = build_worker(client, settings.task_queue, smile, notices, settings=settings)
        worker_task = asyncio.create_task(worker.run(), name="worker")
        api_server, api_task = await start_server(
            create_app(settings, client, tracer_provider=tracer_provider),
            options.host,
            options.port,
        )
        # Up: from now on commands in another shell find this service (onboarding status, …).
        pid = os.getpid()
        write_dev_file(
            data_dir,
            DevRun(
                pid=pid,
                pid_start=process_start(pid),
                api_url=reachable_url(options.host, options.port),
                temporal_address=server.address,
                temporal_namespace=DEV_NAMESPACE,
                temporal_ui_url=server.ui_url,
                started_at=datetime.now(UTC),
                task_queue=settings.task_queue,
                smile_standin_url=standin_url,
                notice_endpoints=len(settings.notify_urls),
                secrets_from_environment=secrets.from_environment,
                default_options=settings.default_options(),
            ),
        )
        stack.callback(remove_dev_file, data_dir, pid)
        _print_banner(options, server, settings, secrets, data_dir, with_standin)
        stop_task = asyncio.create_task(stop.wait(), name="stop")
        if options.simulate:
            simulation = asyncio.create_task(
                _simulate(options, secrets, with_standin), name="simulate"
            )
            stack.callback(simulation.cancel)
        await asyncio.wait({worker_task, api_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        remove_dev_file(data_dir, pid)  # stopping: no longer to be found
        print("\nstopping: API, worker, Temporal …", flush=True)
        await stop_server(api_server, api_task)
        if not worker_task.done():
            await worker.shutdown()
        stop_task.cancel()
        for task in (worker_task, api_task):
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    print("stopped.", flush=True)


def _print_banner(
    options: DevOptions,
    server: TemporalDevServer,
    settings: Settings,
    secrets: DevSecrets,
    data_dir: Path,
    with_standin: bool,
) -> None:
    api = f"http://{options.host}:{options.port}"
    if with_standin:
        standin = f"http://127.0.0.1:{options.smile_port}"
        smile = (
            f"{settings.smile_api_base_url}   (local stand-in: no SMILE_API_KEY/SECRET)\n"
            f"  Play a webhook     curl -X POST {standin}/_control/webhooks "
            "-H 'Content-Type: application/json' "
            """-d '{"userId": "USER_ID", "type": "ACCOUNT_CONNECTED"}'"""
        )
    else:
        smile = settings.smile_api_base_url
    print(
        f"""
Smile onboarding — embedded dev mode
  API                {api}   (docs: {api}/docs)
  Console            {api}/console   (sign in with the admin token below)
  Smile webhooks     POST {api}/webhooks/smile
  Smile API          {smile}
  Temporal           {server.address}   (task queue {settings.task_queue})
  Temporal web UI    {server.ui_url}
  Metrics            {api}/metrics   {_worker_metrics(options, settings)}
  Traces             {_traces(settings)}
  Data               {data_dir}   (onboardings survive a restart)
  Spool              {_spool(settings)}   (events wait here while Temporal cannot take them)
  Webhook secret     {secrets.webhook_secret}{_others(secrets.webhook_secrets, "signs")}
  Admin token        {secrets.admin_token}{_others(secrets.admin_tokens)}
  Callback secret    {_callback(secrets.callback_secret)}
  Notices            {_notices(settings, secrets, data_dir)}
  Notify secret      {secrets.notify_secret}{_also_sign(secrets.notify_secrets)}
  Encryption         {_encryption(settings, secrets, data_dir, api)}

{_another_shell(data_dir, api)}

Ctrl-C stops everything.
""",
        flush=True,
    )


def _worker_metrics(options: DevOptions, settings: Settings) -> str:
    """The banner's Metrics line, after the API's: the worker's (the Temporal SDK's and ours)."""
    if settings.worker_metrics_port is None:
        return "(worker's: set ONBOARDING_WORKER_METRICS_PORT)"
    return f"(worker's: http://{options.host}:{settings.worker_metrics_port}/metrics)"


def _traces(settings: Settings) -> str:
    """The banner's Traces line (the endpoint is not printed: a URL may carry credentials)."""
    if not tracing_enabled(settings):
        return "off (set OTEL_EXPORTER_OTLP_ENDPOINT to export them over OTLP/HTTP)"
    return f"OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT, service {DEV_SERVICE}"


def _notices(settings: Settings, secrets: DevSecrets, data_dir: Path) -> str:
    """The banner's Notices line: where they go, or how to see them."""
    if not settings.notify_urls:
        listen = reachable_url("127.0.0.1", LISTEN_PORT, "/")
        return (
            "off (ONBOARDING_NOTIFY_URL is not set). To see them: run `onboarding listen` in\n"
            "                     another shell and start this as "
            f"ONBOARDING_NOTIFY_URL={listen} onboarding dev"
        )
    count = len(settings.notify_urls)
    endpoints = "1 endpoint" if count == 1 else f"{count} endpoints"
    if "ONBOARDING_NOTIFY_SECRET" in secrets.from_environment:
        signed = "signed with ONBOARDING_NOTIFY_SECRET"
    else:
        signed = f"signed with the notify secret in {data_dir / 'secrets.json'}"
    return f"on: {endpoints} (ONBOARDING_NOTIFY_URL), {signed}"


def _another_shell(data_dir: Path, api: str) -> str:
    """Commands that find this service through dev.json: from this directory as they are;
    from elsewhere (or with another --data-dir) once told the data directory."""
    if Path(".onboarding").resolve() == data_dir:
        intro = f"  From another shell in {Path.cwd()} (they find this service in {DEV_FILE}):"
    else:
        intro = (
            f"  From another shell (they find this service in {data_dir / DEV_FILE}):\n"
            f"    export ONBOARDING_DATA_DIR={data_dir}"
        )
    return (
        f"{intro}\n"
        f"    onboarding start            # or: curl -X POST -H 'Authorization: Bearer …' "
        f"{api}/onboardings\n"
        "    onboarding status USER_ID   # without USER_ID: the service, its spool, dead letters\n"
        "    onboarding listen           # the notices this service sends, verified"
    )


def _encryption(settings: Settings, secrets: DevSecrets, data_dir: Path, api: str) -> str:
    """The banner's Encryption line: the key's id and where it is kept, never the key."""
    if "ONBOARDING_ENCRYPTION_KEYS" in secrets.from_environment:
        kept = "ONBOARDING_ENCRYPTION_KEYS"
    else:
        kept = f"{data_dir / 'secrets.json'}"
    more = len(secrets.encryption_keys) - 1
    older = f", {more} older key(s) decrypt" if more > 0 else ""
    state = "on" if settings.encryption else "off (ONBOARDING_ENCRYPTION=off: decrypt only)"
    return (
        f"{state}: key {secrets.encryption_key_id} from {kept}{older}\n"
        f"                     web UI decodes through {api}/console/codec (sign in to the "
        "console, then turn on\n"
        "                     the UI's 'include cross-origin credentials'; docs/encryption.md)"
    )


def _callback(value: str) -> str:
    """ONBOARDING_CALLBACK_SECRET may list several (rotation): the newest, which issues."""
    values = tuple(parse_secrets(value)) or (value,)
    return values[0] + _others(values, "issues")


def _also_sign(values: tuple[str, ...]) -> str:
    """Every notify secret signs each notice (a receiver verifies with any one)."""
    if len(values) < 2:
        return ""
    return f"   ({len(values) - 1} more also sign, not shown)"


def _spool(settings: Settings) -> str:
    if settings.spool_url is not None:
        return "ONBOARDING_SPOOL_URL"  # may carry a password: not printed
    return settings.spool_location


def _others(values: tuple[str, ...], first: str = "") -> str:
    """How many more of a list are accepted besides the one printed."""
    if len(values) < 2:
        return ""
    more = f"{len(values) - 1} more accepted, not shown"
    return f"   ({first}; {more})" if first else f"   ({more})"


async def _simulate(options: DevOptions, secrets: DevSecrets, with_standin: bool) -> None:
    from rich.console import Console

    from onboarding.tooling.simulate import SimulationConfig, report, simulate

    console = Console()
    config = SimulationConfig(
        api_url=f"http://{options.host}:{options.port}",
        admin_token=secrets.admin_token,
        webhook_secret=secrets.webhook_secret,
        users=options.simulate,
        standin_url=f"http://127.0.0.1:{options.smile_port}" if with_standin else None,
    )
    result = await simulate(config, console)
    report(result, console)
