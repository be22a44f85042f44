"""A whole service made of real processes for one chaos run: the Temporal dev server, N
``onboarding worker`` and M ``onboarding api`` processes, and a Smile stand-in served inside
the harness (the workers call it for tokens and reconciliation)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from onboarding.core.encryption_keys import new_key
from onboarding.tooling.chaos.processes import (
    ApiProcess,
    ManagedProcess,
    TemporalProcess,
    WorkerProcess,
    clean_environment,
)
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import serving
from onboarding.tooling.smile_standin import create_standin_app


@dataclass(frozen=True)
class ClusterConfig:
    workers: int = 1
    apis: int = 1
    # ``ONBOARDING_SPOOL_URL`` shared by every API (``sqlite:////abs/path`` or
    # ``postgresql://…``); None: each API keeps its own SQLite spool in its ONBOARDING_DATA_DIR.
    spool_url: str | None = None
    ingest_timeout: float = 3.0  # ONBOARDING_INGEST_TIMEOUT: how long an API waits for Temporal
    spool_lease: float = 3.0  # ONBOARDING_SPOOL_LEASE: short, so a killed API's leases lapse soon
    extra_env: Mapping[str, str] = field(default_factory=dict)  # for every worker and API


@dataclass(frozen=True)
class Secrets:
    """Generated for the run; handed to the processes in their environment, never printed."""

    webhook_secret: str = field(repr=False)
    admin_token: str = field(repr=False)
    callback_secret: str = field(repr=False)
    smile_key: str = field(repr=False)
    smile_secret: str = field(repr=False)
    # ONBOARDING_ENCRYPTION_KEYS of every worker and API: payloads encrypted, as in production
    encryption_key: str = field(default_factory=new_key, repr=False)

    @classmethod
    def generate(cls) -> Secrets:
        return cls(*(secrets.token_urlsafe(24) for _ in range(5)))


class Cluster:
    """The processes of one run, under ``work_dir``: ``temporal/`` (its SQLite file and log),
    ``api-<n>/`` (each API's data dir, so its spool survives its restarts), ``logs/``."""

    def __init__(self, work_dir: Path, config: ClusterConfig, smile_url: str, keys: Secrets):
        self.work_dir = work_dir
        self.config = config
        self.secrets = keys
        self.logs = work_dir / "logs"
        self.temporal = TemporalProcess(work_dir / "temporal", self.logs / "temporal.log")
        common = {
            "TEMPORAL_ADDRESS": self.temporal.address,
            "ONBOARDING_LOG_LEVEL": "INFO",
            "ONBOARDING_ENCRYPTION_KEYS": keys.encryption_key,
            **config.extra_env,
        }
        worker_env = clean_environment({
            **common,
            "SMILE_API_BASE_URL": smile_url,
            "SMILE_API_KEY": keys.smile_key,
            "SMILE_API_SECRET": keys.smile_secret,
        })  # fmt: skip
        self.workers = [
            WorkerProcess(f"worker-{n}", worker_env, self.logs / f"worker-{n}.log")
            for n in range(1, config.workers + 1)
        ]
        self.apis: list[ApiProcess] = []
        for n in range(1, config.apis + 1):
            data_dir = work_dir / f"api-{n}"
            data_dir.mkdir(parents=True, exist_ok=True)
            env = {
                **common,
                "SMILE_WEBHOOK_SECRET": keys.webhook_secret,
                "ONBOARDING_ADMIN_TOKEN": keys.admin_token,
                "ONBOARDING_CALLBACK_SECRET": keys.callback_secret,
                "ONBOARDING_DATA_DIR": str(data_dir),
                "ONBOARDING_INGEST_TIMEOUT": f"{config.ingest_timeout:g}s",
                "ONBOARDING_SPOOL_LEASE": f"{config.spool_lease:g}s",
            }
            if config.spool_url is not None:
                env["ONBOARDING_SPOOL_URL"] = config.spool_url
            # Without a URL: the service's default, spool.sqlite3 in its data dir.
            spool = config.spool_url or str(data_dir / "spool.sqlite3")
            api = ApiProcess(f"api-{n}", clean_environment(env), self.logs / f"api-{n}.log",
                             free_port(), spool)  # fmt: skip
            self.apis.append(api)

    @property
    def processes(self) -> list[ManagedProcess]:
        return [*self.apis, *self.workers, self.temporal]

    @property
    def api_urls(self) -> list[str]:
        return [api.url for api in self.apis]

    def live_api_urls(self) -> list[str]:
        return [api.url for api in self.apis if api.running]

    async def start(self, within: float = 60.0) -> None:
        await self.temporal.start()
        await self.temporal.wait_ready(within)
        for process in [*self.workers, *self.apis]:
            await process.start()
        for worker in self.workers:
            await worker.wait_ready(within)
        for api in self.apis:
            await api.wait_ready(within, temporal=True)

    async def close(self) -> None:
        """Kill everything still running (frozen or not); never raises."""
        for process in self.processes:
            with contextlib.suppress(Exception):
                await process.close()

    def log_tails(self, lines: int = 15) -> str:
        return "\n".join(f"--- {p.name} ({p.log_file}) ---\n{p.log_tail(lines)}"
                         for p in self.processes)  # fmt: skip


@contextlib.asynccontextmanager
async def running_cluster(work_dir: Path, config: ClusterConfig) -> AsyncIterator[Cluster]:
    """Start the stand-in and every process; kill them all on the way out, whatever happened."""
    keys = Secrets.generate()
    app = create_standin_app(keys.smile_key, keys.smile_secret)
    port = free_port()
    async with serving(app, "127.0.0.1", port):
        cluster = Cluster(work_dir, config, f"http://127.0.0.1:{port}/v1", keys)
        try:
            await cluster.start()
            yield cluster
        finally:
            await cluster.close()
