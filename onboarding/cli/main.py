"""The ``onboarding`` command: run the service (``dev``, ``worker``, ``api``), operate it
(``status``, ``list``, ``stats``, ``timeouts``, ``cancel``, ``notices``, …) and watch its
notices (``listen``). Run from another shell beside ``onboarding dev``, the operator commands
find it through its data directory (``onboarding.tooling.discovery``): nothing to export."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from onboarding.cli.logging_setup import configure_logging
from onboarding.core.bulk import BulkKind
from onboarding.core.durations import parse_duration
from onboarding.core.models import Stage, Status, TimeoutsChange
from onboarding.core.selection import (
    OnboardingFilter,
    SelectionError,
    Where,
    first_reason,
    parse_where,
)
from onboarding.service.listing import ListOrder
from onboarding.service.onboardings import OnboardingError, Onboardings
from onboarding.service.settings import Settings

if TYPE_CHECKING:
    from onboarding.service.dead_letters import DeadLetters
    from onboarding.service.spooling import Spooler
    from onboarding.tooling.discovery import DevTarget
from onboarding.tooling.binaries import BinaryNotFound
from onboarding.tooling.devserver import DevServerError

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    pass


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as err:
        raise CliError(f"invalid configuration: {err}") from None


def _target(args: argparse.Namespace, *, stored_secrets_without_dev: bool = False) -> DevTarget:
    """The settings, completed from the ``onboarding dev`` running on the data directory for
    what the user set neither in the environment nor with a flag."""
    from onboarding.tooling.discovery import settings_with_dev

    return settings_with_dev(
        _settings(),
        getattr(args, "temporal_address", None),
        stored_secrets_without_dev=stored_secrets_without_dev,
    )


# --- running the service -----------------------------------------------------------------


def cmd_dev(args: argparse.Namespace) -> None:
    from onboarding.tooling.dev import DevOptions, run_dev
    from onboarding.tooling.dev_secrets import DevSecretsError

    # The same default as every other command's (Settings.data_dir), so they find this one.
    data_dir = Path(args.data_dir) if args.data_dir else _settings().data_dir
    try:
        asyncio.run(
            run_dev(
                DevOptions(
                    data_dir=data_dir,
                    host=args.host,
                    port=args.port,
                    temporal_port=args.temporal_port,
                    ui_port=args.ui_port,
                    smile_port=args.smile_port,
                    simulate=args.simulate,
                )
            )
        )
    except DevSecretsError as err:
        raise CliError(str(err)) from None


def cmd_worker(args: argparse.Namespace) -> None:
    from onboarding.service.codec import codec_from_settings
    from onboarding.service.deployment import deployment_config
    from onboarding.service.deployment import describe as describe_deployment
    from onboarding.service.metrics import MetricsPortUnavailable, prometheus_runtime
    from onboarding.service.namespace import missing_search_attributes
    from onboarding.service.temporal import connect
    from onboarding.service.tracing import WORKER_SERVICE, setup_tracing, temporal_interceptors
    from onboarding.service.worker import (
        MissingSmileCredentials,
        build_worker,
        notice_sender_from,
        smile_client_from,
    )

    settings = _settings()
    if (problem := settings.notice_problem() or settings.encryption_problem()) is not None:
        raise CliError(problem)
    runtime = None  # the SDK's default: no metrics served
    if settings.worker_metrics_port is not None:
        try:
            runtime = prometheus_runtime(settings.worker_metrics_port)
        except MetricsPortUnavailable as err:
            raise CliError(str(err)) from None
    try:
        smile = smile_client_from(settings)
        notices = notice_sender_from(settings)
    except (MissingSmileCredentials, ValueError) as err:
        raise CliError(str(err)) from None
    tracer_provider = setup_tracing(settings, WORKER_SERVICE)  # None: OTLP endpoint unset
    deployment = deployment_config(settings)  # None: ONBOARDING_BUILD_ID unset, unversioned

    async def run() -> None:
        client = await connect(
            args.temporal_address,
            interceptors=temporal_interceptors(tracer_provider),
            runtime=runtime,
            codec=codec_from_settings(settings),
        )
        missing = await missing_search_attributes(client)
        if missing:
            raise CliError(
                "the namespace lacks search attributes this version publishes; register them "
                "first (once per namespace), then start the worker: " + "; ".join(missing)
            )
        worker = build_worker(client, settings.task_queue, smile, notices, deployment=deployment,
                              settings=settings)  # fmt: skip
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.shutdown()))
        logging.getLogger("onboarding").info(
            "worker polling task queue %s on %s, %s",
            settings.task_queue,
            client.service_client.config.target_host,
            describe_deployment(deployment),
        )
        if settings.worker_metrics_port is not None:
            logging.getLogger("onboarding").info(
                "worker metrics on http://0.0.0.0:%d/metrics", settings.worker_metrics_port
            )
        try:
            await worker.run()
        finally:
            await smile.aclose()
            await notices.aclose()

    asyncio.run(run())


def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn

    from api.app import create_app
    from onboarding.service.tracing import API_SERVICE, setup_tracing
    from onboarding.tooling.serving import UVICORN_OPTIONS

    settings = _settings()
    if not settings.webhook_secrets:
        raise CliError("SMILE_WEBHOOK_SECRET is not set: webhooks could never be verified")
    if not settings.admin_tokens:
        raise CliError("ONBOARDING_ADMIN_TOKEN is not set: operator endpoints would admit nobody")
    if not settings.callback_secrets:  # unset, or nothing but separators
        raise CliError("ONBOARDING_CALLBACK_SECRET is not set: callback tokens cannot be issued")
    if (problem := settings.notice_problem() or settings.encryption_problem()) is not None:
        raise CliError(problem)
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    if settings.spool_url is None:  # say where: a relative data dir depends on where we run
        logging.getLogger("onboarding").info(
            "spool: SQLite at %s (set ONBOARDING_SPOOL_URL to share one between replicas)",
            Path(settings.spool_location).resolve(),
        )
    tracer_provider = setup_tracing(settings, API_SERVICE)  # None: OTLP endpoint unset
    uvicorn.run(
        create_app(
            settings, temporal_address=args.temporal_address, tracer_provider=tracer_provider
        ),
        host=host,
        port=port,
        access_log=args.access_log,
        log_level=logging.getLevelName(logging.getLogger().level).lower(),
        **UVICORN_OPTIONS,  # uvloop and httptools are dependencies; "auto" picks them
    )


# --- operating it ------------------------------------------------------------------------


def _operate(
    args: argparse.Namespace,
    action: Callable[[Onboardings], Awaitable[Any]],
    *,
    lazy: bool = False,
    target: DevTarget | None = None,
    writes: bool = False,
) -> Any:
    """Run ``action`` against Temporal (the running ``onboarding dev``'s, unless told another).
    ``lazy``: connect on first use, for commands that may not need Temporal at all or must work
    while it is away. ``writes``: it sends data to Temporal, so it refuses to without a key
    when encryption is on, as ``worker`` and ``api`` do (it would be written in plain text)."""
    from onboarding.service.codec import EncryptionError, codec_from_settings
    from onboarding.service.temporal import connect

    found = target if target is not None else _target(args)
    if writes and (problem := found.settings.encryption_problem()) is not None:
        raise CliError(problem)

    async def run() -> Any:
        try:
            client = await connect(
                found.temporal_address,
                namespace=found.temporal_namespace,
                lazy=lazy,
                codec=codec_from_settings(found.settings),
            )
        except RuntimeError as err:
            raise CliError(f"cannot reach Temporal: {err}") from None
        onboardings = Onboardings(client, found.settings)
        if found.default_options is not None:  # start as dev's own POST /onboardings would
            onboardings.default_options = found.default_options
        try:
            return await action(onboardings)
        except EncryptionError as err:  # names the key id it needs, never a key
            raise CliError(f"cannot read the onboarding's data: {err}") from None

    return asyncio.run(run())


def _operate_spool(
    args: argparse.Namespace,
    action: Callable[[Onboardings, Spooler], Awaitable[Any]],
    *,
    writes: bool = False,
) -> Any:
    """Like :func:`_operate`, with the spool of ``ONBOARDING_SPOOL_URL`` (or the one in
    ``ONBOARDING_DATA_DIR``) open as well."""
    from onboarding.service.spool import SpoolError, open_spool
    from onboarding.service.spooling import Spooler

    target = _target(args)
    settings = target.settings
    # Never create one: a spool made here, away from the service's, would report empty.
    spool = open_spool(settings.spool_location, settings.spool_max_bytes, create=False)

    async def with_spool(onboardings: Onboardings) -> Any:
        spooler = Spooler(spool)
        try:
            return await action(onboardings, spooler)
        except SpoolError as err:
            raise CliError(f"the spool: {err}") from None
        finally:
            await spooler.close()

    return _operate(args, with_spool, lazy=True, target=target, writes=writes)


def _dead_letters(onboardings: Onboardings, spooler: Spooler) -> DeadLetters:
    """Replays from the command line go straight to Temporal: if it is unreachable the dead
    letter stays, and the command says so."""
    from onboarding.service.dead_letters import DeadLetters

    return DeadLetters(spooler, lambda user_id, event: onboardings.ingest(user_id, [event]))


def _emit(args: argparse.Namespace, value: BaseModel, text: str) -> None:
    if args.json:
        print(value.model_dump_json(by_alias=True, indent=2))
    else:
        print(text)


def cmd_status(args: argparse.Namespace) -> None:
    from onboarding.cli.render import render_health, render_view

    if args.user_id is None:  # the service itself: what /readyz says
        from onboarding.service.health import check

        health = _operate_spool(args, check)
        _emit(args, health, render_health(health))
        if not health.ready:
            raise CliError(health.detail)
        return
    view = _operate(args, lambda o: o.get(args.user_id))
    _emit(args, view, render_view(view))


def cmd_dead_letters(args: argparse.Namespace) -> None:
    from onboarding.cli import render

    if args.action == "list":
        page = _operate_spool(
            args, lambda o, s: _dead_letters(o, s).list(args.page_size, args.page_token)
        )
        _emit(args, page, render.render_dead_letters(page))
    elif args.action == "show":
        letter = _operate_spool(args, lambda o, s: _dead_letters(o, s).get(args.id))
        _emit(args, letter, render.render_dead_letter(letter))
    elif args.action == "replay":
        result = _operate_spool(args, lambda o, s: _dead_letters(o, s).replay(args.id), writes=True)
        text = f"{result.id}: {result.outcome}" + (
            f" (user {result.user_id})" if result.user_id else ""
        )
        _emit(args, result, text)
    else:
        _operate_spool(args, lambda o, s: _dead_letters(o, s).discard(args.id))
        print(f"{args.id}: discarded")


def cmd_list(args: argparse.Namespace) -> None:
    from onboarding.cli.render import render_page

    selection = _selection(args)
    page = _operate(
        args,
        lambda o: o.list(
            page_size=args.page_size,
            page_token=args.page_token,
            selection=selection,
            order=args.sort,
        ),
    )
    _emit(args, page, render_page(page))


def _selection(args: argparse.Namespace) -> OnboardingFilter:
    """``--where`` with ``--stage``, ``--status`` and ``--waiting-longer-than`` folded in; a
    key given both ways is an error rather than a silent choice."""
    where: Where = args.where or Where()
    fields = where.selection.model_dump(exclude_unset=True)
    for key in ("stage", "status"):
        value = getattr(args, key, None)
        if value is None:
            continue
        if key in fields:
            raise CliError(f"{key} is given both in --where and as --{key}")
        fields[key] = value
    if getattr(args, "waiting_longer_than", None) is not None:
        if where.waiting_longer_than is not None:
            raise CliError("waiting_longer_than is given both in --where and as an option")
        where = where.model_copy(update={"waiting_longer_than": args.waiting_longer_than})
    where = where.model_copy(update={"selection": OnboardingFilter.model_validate(fields)})
    return where.at(datetime.now(UTC))


def _parse_where(text: str) -> Where:
    try:
        return parse_where(text)
    except SelectionError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _parse_age(text: str) -> timedelta:
    try:
        age = parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if age <= timedelta(0):
        raise argparse.ArgumentTypeError("give a positive duration such as 6h")
    return age


def cmd_stats(args: argparse.Namespace) -> None:
    from onboarding.cli.render import render_stats

    stats = _operate(args, lambda o: o.stats())
    _emit(args, stats, render_stats(stats))


def _parse_assignment(text: str) -> tuple[str, float]:
    stage, sep, duration = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"expected STAGE=DURATION (e.g. connected=6h), got {text!r}"
        )
    try:
        return stage.strip(), parse_duration(duration).total_seconds()
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _parse_seconds(text: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_timeouts(args: argparse.Namespace) -> None:
    from onboarding.cli.render import render_timeouts

    change = TimeoutsChange(
        stall=dict(args.set or []),
        expire_after=args.expire_after,
        settle_window=args.settle_window,
    )
    if _one_or_bulk(args):
        _submit_bulk(args, BulkKind.TIMEOUTS, timeouts=change)
        return
    if not change.stall and change.expire_after is None and change.settle_window is None:
        view = _operate(args, lambda o: o.get(args.user_id))
        _emit(args, view.timeouts, render_timeouts(view.timeouts))
        return
    timeouts = _operate(args, lambda o: o.set_timeouts(args.user_id, change), writes=True)
    _emit(args, timeouts, render_timeouts(timeouts))


def _parse_assignments(text: str) -> list[tuple[str, float]]:
    """``connected=2d,expire_after=10d``: one or more NAME=DURATION, comma separated."""
    return [_parse_assignment(part) for part in text.split(",") if part.strip()]


def _default_actor() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        user = "unknown"
    return f"{user}@{socket.gethostname()} (cli)"


def cmd_defaults(args: argparse.Namespace) -> None:
    """Show the default timeouts of new onboardings and their audit, or change them."""
    from onboarding.cli.render import render_defaults

    stall: dict[str, float] = {}
    fields: dict[str, float] = {}
    for name, seconds in [pair for group in args.set or [] for pair in group]:
        key = name.replace("-", "_").lower()
        if key in ("expire_after", "expireafter", "settle_window", "settlewindow"):
            fields["expire_after" if key.startswith("expire") else "settle_window"] = seconds
        else:
            stall[name] = seconds
    if args.expire_after is not None:
        fields["expire_after"] = args.expire_after
    if args.settle_window is not None:
        fields["settle_window"] = args.settle_window
    actor = args.actor or _default_actor()
    if args.reset:
        if stall or fields:
            raise CliError("--reset sets every default: give it alone")
        state = _operate(args, lambda o: o.defaults.reset(actor), writes=True)
    elif stall or fields:
        change = TimeoutsChange(stall=stall, **fields)
        state = _operate(args, lambda o: o.defaults.change(change, actor), writes=True)
    else:
        state = _operate(args, lambda o: o.defaults.state())
    _emit(args, state, render_defaults(state))


def cmd_start(args: argparse.Namespace) -> None:
    from onboarding.core.models import StartRequest

    try:
        metadata = json.loads(args.metadata) if args.metadata else None
    except json.JSONDecodeError as err:
        raise CliError(f"--metadata is not JSON: {err.msg}") from None
    if metadata is not None and not isinstance(metadata, dict):
        raise CliError("--metadata must be a JSON object")
    stall = dict(args.set or [])
    request = StartRequest(
        external_metadata=metadata,
        required_data=args.required_data.split(",") if args.required_data else None,
        timeouts=TimeoutsChange(stall=stall) if stall else None,
    )
    issued, view = _operate(args, lambda o: o.start(request, args.idempotency_key), writes=True)
    if args.json:  # the same document as POST /onboardings answers
        started = issued.model_dump(mode="json", by_alias=True)
        started["onboarding"] = view.model_dump(mode="json", by_alias=True)
        print(json.dumps(started, indent=2))
        return
    text = (
        f"userId          {issued.user_id}\n"
        f"linkToken       {issued.link_token}\n"
        f"expiresAt       {issued.expires_at.isoformat()}\n"
        f"callbackToken   {issued.callback_token}\n"
        f"stage/status    {view.stage.value}/{view.status.value}"
    )
    _emit(args, issued, text)


def cmd_link_token(args: argparse.Namespace) -> None:
    issued = _operate(args, lambda o: o.link_token(args.user_id), writes=True)
    text = (
        f"linkToken       {issued.link_token}\n"
        f"expiresAt       {issued.expires_at.isoformat()}\n"
        f"callbackToken   {issued.callback_token}"
    )
    _emit(args, issued, text)


def cmd_reconcile(args: argparse.Namespace) -> None:
    from onboarding.cli.render import render_view

    if _one_or_bulk(args):
        _submit_bulk(args, BulkKind.RECONCILE)
        return
    view = _operate(args, lambda o: o.reconcile(args.user_id), writes=True)
    _emit(args, view, render_view(view))


def cmd_simulate(args: argparse.Namespace) -> None:
    from rich.console import Console

    from onboarding.tooling.simulate import SimulationConfig, report, simulate

    target = _target(args)
    settings = target.settings
    if not settings.admin_tokens or not settings.webhook_secrets:
        raise CliError(
            "set ONBOARDING_ADMIN_TOKEN and SMILE_WEBHOOK_SECRET to those the service uses "
            "(found without them beside a running `onboarding dev`)"
        )
    config = SimulationConfig(
        api_url=args.api_url or target.api_url or f"http://{settings.host}:{settings.port}",
        admin_token=settings.admin_tokens[0].get_secret_value(),
        webhook_secret=settings.webhook_secrets[0].get_secret_value(),
        users=args.users,
        concurrency=args.concurrency,
        seed=args.seed,
        stall_after=args.stall_after,
        standin_url=args.standin_url or target.standin_url,
    )
    console = Console()
    result = asyncio.run(simulate(config, console))
    report(result, console)
    if result.mismatches:
        raise CliError(f"{result.mismatches} of {len(result.runs)} users ended in the wrong state")


def cmd_listen(args: argparse.Namespace) -> None:
    from onboarding.tooling.listen import ListenError, listen_options, run_listener

    # dev keeps its notify secret and reuses it on every start, so a listener started before
    # dev (as the banner suggests) verifies what dev will send
    target = _target(args, stored_secrets_without_dev=True)
    try:
        options = listen_options(
            target,
            args.secret,
            host=args.host,
            port=args.port,
            json_lines=args.json,
            answer=args.answer,
        )
        asyncio.run(run_listener(options))
    except ListenError as err:
        raise CliError(str(err)) from None


def _parse_status(text: str) -> int:
    try:
        status = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an HTTP status, got {text!r}") from None
    if not 200 <= status <= 599:
        raise argparse.ArgumentTypeError(f"{status}: give an HTTP status from 200 to 599")
    return status


def cmd_notices(args: argparse.Namespace) -> None:
    from onboarding.cli.render import render_notices
    from onboarding.service.notices import Notices

    if args.redeliver is not None or args.redeliver_failed:
        sequence = args.redeliver  # None with --redeliver-failed: every failed one
        queued = _operate(args, lambda o: Notices(o).redeliver(args.user_id, sequence), writes=True)
        if args.json:
            print(json.dumps({"userId": args.user_id, "sequences": queued}))
        else:
            print(f"{args.user_id}: queued again: {', '.join(map(str, queued))}")
        return
    listing = _operate(args, lambda o: Notices(o).deliveries(args.user_id))
    _emit(args, listing, render_notices(listing))


def cmd_encryption_key(args: argparse.Namespace) -> None:
    """A new ``ID:BASE64`` key for ``ONBOARDING_ENCRYPTION_KEYS`` (put it first to rotate)."""
    from onboarding.core.encryption_keys import new_key

    try:
        print(new_key(args.id))
    except ValueError as err:
        raise CliError(str(err).replace("encryption key number 1", "--id")) from None


def cmd_cancel(args: argparse.Namespace) -> None:
    if _one_or_bulk(args):
        _submit_bulk(args, BulkKind.CANCEL, reason=args.reason)
        return
    view = _operate(args, lambda o: o.cancel(args.user_id, args.reason), writes=True)
    _emit(args, view, f"{view.user_id}: {view.status.value} ({view.status_reason})")


def _one_or_bulk(args: argparse.Namespace) -> bool:
    """True for a bulk operation (``--where``); a user or ``--where``, exactly one."""
    if (args.user_id is None) == (args.where is None):
        raise CliError("give a user id, or --where to select onboardings in bulk (not both)")
    return args.where is not None


def _submit_bulk(args: argparse.Namespace, kind: BulkKind, **change: Any) -> None:
    from onboarding.core.bulk import BulkRequest
    from onboarding.service.bulk import BulkOperations

    where: Where = args.where

    async def submit(o: Onboardings) -> Any:
        try:
            request = BulkRequest(
                kind=kind,
                selection=where.selection,
                waiting_longer_than=where.waiting_longer_than,
                everything=where.everything,
                rate=args.rate or o.settings.bulk_rate,
                **change,
            )
        except ValidationError as err:
            raise CliError(first_reason(err)) from None
        bulk = BulkOperations(o.client, o.settings)
        return await _follow(bulk, await bulk.submit(request), args.wait)

    status = _operate(args, submit, writes=True)
    _emit(args, status, _render_bulk(status))


def cmd_bulk(args: argparse.Namespace) -> None:
    from onboarding.service.bulk import BulkOperations

    async def act(o: Onboardings) -> Any:
        bulk = BulkOperations(o.client, o.settings)
        status = await (bulk.stop(args.operation_id) if args.stop else bulk.get(args.operation_id))
        return await _follow(bulk, status, args.wait)

    status = _operate(args, act)
    _emit(args, status, _render_bulk(status))


async def _follow(bulk: Any, status: Any, wait: bool) -> Any:
    """With ``--wait``, print progress every second or so until the operation ends."""
    from onboarding.cli.render import render_bulk_line
    from onboarding.core.bulk import BulkState

    while wait and status.progress.state is BulkState.RUNNING:
        print(render_bulk_line(status), file=sys.stderr, flush=True)
        await asyncio.sleep(1.0)
        status = await bulk.get(status.id)
    return status


def _render_bulk(status: Any) -> str:
    from onboarding.cli.render import render_bulk

    return str(render_bulk(status))


# --- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onboarding", description="Durable onboarding orchestrator for Smile, on Temporal."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="Temporal dev server + worker + API in one process")
    dev.add_argument("--data-dir", default=None,
                     help="default: ONBOARDING_DATA_DIR or ./.onboarding")  # fmt: skip
    dev.add_argument("--host", default="127.0.0.1", help="API host (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    dev.add_argument("--temporal-port", type=int, default=7233, help="default 7233")
    dev.add_argument("--ui-port", type=int, default=8233, help="Temporal web UI (default 8233)")
    dev.add_argument(
        "--smile-port", type=int, default=8234,
        help="the local Smile stand-in, used unless SMILE_API_KEY and SMILE_API_SECRET are set "
        "(default 8234)",
    )  # fmt: skip
    dev.add_argument("--simulate", type=int, default=0, metavar="N",
                     help="once up, play N synthetic users through it")  # fmt: skip
    dev.set_defaults(func=cmd_dev)

    def temporal_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--temporal-address",
            default=None,
            help="host:port; default from TEMPORAL_ADDRESS or the temporal.toml profile",
        )

    worker = sub.add_parser("worker", help="run a worker against any Temporal cluster")
    temporal_option(worker)
    worker.set_defaults(func=cmd_worker)

    api = sub.add_parser("api", help="run the HTTP API against any Temporal cluster")
    api.add_argument("--host", default=None, help="default ONBOARDING_HOST or 127.0.0.1")
    api.add_argument("--port", type=int, default=None, help="default ONBOARDING_PORT or 8000")
    api.add_argument("--access-log", action="store_true", help="log every request (off: cost)")
    temporal_option(api)
    api.set_defaults(func=cmd_api)

    def bulk_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--where", type=_parse_where, default=None, metavar="EXPR",
                       help="instead of one user, every onboarding matching (a bulk "
                            "operation), e.g. stage=connected,status=stalled, or all")  # fmt: skip
        p.add_argument("--rate", type=float, default=None,
                       help="onboardings per second (default ONBOARDING_BULK_RATE)")  # fmt: skip
        p.add_argument("--wait", action="store_true", help="follow the bulk operation to its end")

    def operator(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        temporal_option(p)
        p.add_argument("--json", action="store_true", help="print JSON")
        return p

    status = operator("status", "one user's onboarding state, or without a user the service's")
    status.add_argument("user_id", nargs="?", default=None)
    status.set_defaults(func=cmd_status)

    dead = sub.add_parser("dead-letters", help="signed webhooks that could not be used")
    dead_actions = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_ in (
        ("list", "oldest first"),
        ("show", "one, with its body"),
        ("replay", "judge it again and deliver it if it can now be used"),
        ("discard", "drop it for good"),
    ):
        action = dead_actions.add_parser(name, help=help_)
        temporal_option(action)
        action.add_argument("--json", action="store_true", help="print JSON")
        if name == "list":
            action.add_argument("--page-size", type=int, default=50)
            action.add_argument("--page-token", default=None)
        else:
            action.add_argument("id")
    dead.set_defaults(func=cmd_dead_letters)

    list_ = operator("list", "onboardings by stage and status")
    list_.add_argument("--stage", type=Stage, choices=list(Stage), default=None)
    list_.add_argument("--status", type=Status, choices=list(Status), default=None)
    list_.add_argument("--where", type=_parse_where, default=None, metavar="EXPR",
                       help="e.g. stage=connected,status=stalled,waiting_longer_than=2d, "
                            "started_before=2026-11-01 (also started_after)")  # fmt: skip
    list_.add_argument("--waiting-longer-than", type=_parse_age, default=None, metavar="DURATION",
                       help="only those in their stage for longer than this, e.g. 6h")  # fmt: skip
    list_.add_argument("--sort", type=ListOrder, choices=list(ListOrder), default=ListOrder.NEWEST,
                       help="newest (started) first, or longest in their stage first")  # fmt: skip
    list_.add_argument("--page-size", type=int, default=50)
    list_.add_argument("--page-token", default=None)
    list_.set_defaults(func=cmd_list)

    stats = operator("stats", "the funnel: counts per stage and status")
    stats.set_defaults(func=cmd_stats)

    timeouts = operator("timeouts", "show or change one onboarding's timeouts, or in bulk")
    timeouts.add_argument("user_id", nargs="?", default=None)
    bulk_options(timeouts)
    timeouts.add_argument(
        "--set",
        type=_parse_assignment,
        action="append",
        metavar="STAGE=DURATION",
        help="e.g. connected=6h (repeatable)",
    )
    timeouts.add_argument("--expire-after", type=_parse_seconds, default=None)
    timeouts.add_argument("--settle-window", type=_parse_seconds, default=None)
    timeouts.set_defaults(func=cmd_timeouts)

    defaults = operator("defaults", "show or change the timeouts new onboardings start with")
    defaults.add_argument(
        "--set", type=_parse_assignments, action="append", metavar="NAME=DURATION[,…]",
        help="a stage's stall timeout, expire_after or settle_window, e.g. "
        "connected=2d,expire_after=10d (repeatable)",
    )  # fmt: skip
    defaults.add_argument("--expire-after", type=_parse_seconds, default=None)
    defaults.add_argument("--settle-window", type=_parse_seconds, default=None)
    defaults.add_argument("--reset", action="store_true",
                          help="set every default to this environment's values")  # fmt: skip
    defaults.add_argument(
        "--actor", default=None, help="who makes the change, for the audit (default USER@HOST)"
    )
    defaults.set_defaults(func=cmd_defaults)

    start = operator("start", "create a Smile user and start its onboarding")
    start.add_argument("--metadata", default=None, help="externalMetadata as a JSON object")
    start.add_argument(
        "--required-data",
        default=None,
        help="Smile datapoints, any case, e.g. IDENTITIES,INCOMES",
    )
    start.add_argument("--set", type=_parse_assignment, action="append", metavar="STAGE=DURATION",
                       help="a stall timeout for this onboarding (repeatable)")  # fmt: skip
    start.add_argument("--idempotency-key", default=None)
    start.set_defaults(func=cmd_start)

    link_token = operator("link-token", "a fresh link token for one onboarding")
    link_token.add_argument("user_id")
    link_token.set_defaults(func=cmd_link_token)

    reconcile = operator("reconcile", "check Smile's records now and merge them (or in bulk)")
    reconcile.add_argument("user_id", nargs="?", default=None)
    bulk_options(reconcile)
    reconcile.set_defaults(func=cmd_reconcile)

    sim = sub.add_parser("simulate", help="play synthetic users through a running service")
    sim.add_argument("--users", type=int, required=True)
    sim.add_argument(
        "--standin-url",
        default=None,
        help="the Smile stand-in's URL (onboarding dev: http://127.0.0.1:8234); without it the "
        "healed journeys are skipped",
    )
    sim.add_argument("--concurrency", type=int, default=10)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument(
        "--api-url", default=None, help="default http://ONBOARDING_HOST:ONBOARDING_PORT"
    )
    sim.add_argument("--stall-after", type=_parse_seconds, default=2.0,
                     help="stall timeout given to the users who stall (default 2s)")  # fmt: skip
    sim.set_defaults(func=cmd_simulate)

    notices = operator("notices", "one onboarding's notices to your backend; redeliver failed")
    notices.add_argument("user_id")
    redeliver = notices.add_mutually_exclusive_group()
    redeliver.add_argument("--redeliver", type=int, default=None, metavar="SEQ",
                           help="deliver failed notice SEQ again (same webhook-id)")  # fmt: skip
    redeliver.add_argument("--redeliver-failed", action="store_true",
                           help="deliver every failed notice again")  # fmt: skip
    notices.set_defaults(func=cmd_notices)

    cancel = operator("cancel", "cancel one onboarding, or in bulk")
    cancel.add_argument("user_id", nargs="?", default=None)
    cancel.add_argument("--reason", default="cancelled by operator")
    bulk_options(cancel)

    bulk = operator("bulk", "a bulk operation's progress; stop it")
    bulk.add_argument("operation_id")
    bulk.add_argument("--stop", action="store_true", help="stop after the chunk in hand")
    bulk.add_argument("--wait", action="store_true", help="follow it until it ends")
    bulk.set_defaults(func=cmd_bulk)
    cancel.set_defaults(func=cmd_cancel)

    key = sub.add_parser(
        "encryption-key",
        help="print a new key for ONBOARDING_ENCRYPTION_KEYS (ID:BASE64, AES-256)",
    )
    key.add_argument("--id", default=None, help="the key's id (default: k- and 8 random hex)")
    key.set_defaults(func=cmd_encryption_key)

    listen = sub.add_parser(
        "listen",
        help="receive, verify and print the service's notices (point ONBOARDING_NOTIFY_URL here)",
    )
    listen.add_argument("--port", type=int, default=8010, help="default 8010")
    listen.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    listen.add_argument(
        "--secret",
        action="append",
        default=None,
        metavar="WHSEC",
        help="a whsec_… secret to verify with (repeatable; any one verifies); default "
        "ONBOARDING_NOTIFY_SECRET, else onboarding dev's from its data directory",
    )
    listen.add_argument(
        "--json",
        action="store_true",
        help="print each notice's body as one JSON line (the rest on stderr)",
    )
    listen.add_argument(
        "--answer",
        type=_parse_status,
        default=None,
        metavar="STATUS",
        help="answer every verified notice with this status (e.g. 503 to watch retries, 410 "
        "for a refusal); default 204",
    )
    listen.set_defaults(func=cmd_listen)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging(os.environ.get("ONBOARDING_LOG_LEVEL", "INFO").upper())
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CliError, DevServerError, BinaryNotFound) as err:
        print(f"onboarding {args.command}: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except OnboardingError as err:
        print(f"onboarding {args.command}: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``onboarding status … | head``): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


def run() -> None:
    """The console script: ``main``, then out without interpreter teardown. Temporal's Rust
    core keeps threads of its own, and tearing the interpreter down under them can abort the
    process after a clean shutdown (temporalio/sdk-python#300): a successful ``onboarding dev``
    exiting 134. Everything of ours is closed by then, so only output needs flushing."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
