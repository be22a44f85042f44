"""Finding the running ``onboarding dev`` from another shell, the way the ``temporal`` CLI finds
its dev server: ``onboarding dev`` writes ``<data dir>/dev.json`` (mode 0600) once it is up and
removes it when it stops, and the operator commands read it, and the secrets kept beside it, for
whatever the user has not set.

Explicit settings always win: ``--temporal-address``, ``TEMPORAL_ADDRESS`` or a ``temporal.toml``
profile's address over dev's Temporal; an environment variable over the secret kept in
``secrets.json`` (pydantic-settings records what it read in ``model_fields_set``). A file left
behind by a dev that died (``kill -9``) names a process that is gone, and is ignored. Nothing here
ever creates ``secrets.json`` or ``dev.json``: only ``onboarding dev`` writes them."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from temporalio.envconfig import ClientConfig

from onboarding.core.models import OnboardingOptions
from onboarding.service.settings import Settings
from onboarding.tooling.dev_secrets import OVERRIDDEN_BY, SECRETS_FILE, read_stored, trusted_file

DEV_FILE = "dev.json"
DEV_NAMESPACE = "default"  # the embedded dev server's only namespace

logger = logging.getLogger("onboarding.discovery")


@dataclass(frozen=True)
class DevRun:
    """A running ``onboarding dev``, as it describes itself in ``dev.json``."""

    pid: int
    api_url: str
    temporal_address: str
    temporal_namespace: str
    temporal_ui_url: str
    started_at: datetime
    task_queue: str = "smile-onboarding"
    smile_standin_url: str | None = None  # None: dev talks to Smile itself
    notice_endpoints: int = 0  # how many ONBOARDING_NOTIFY_URL entries it sends notices to
    # environment variables whose value dev took from its environment, not from secrets.json:
    # their kept secret is not the one in use, so it is never offered to another command
    secrets_from_environment: frozenset[str] = frozenset()
    # the options a new onboarding starts with in dev, so `onboarding start` from another shell
    # starts the same onboarding as POST /onboardings would
    default_options: OnboardingOptions | None = None
    # the process's start time (Linux: clock ticks since boot), so a reused pid is not taken
    # for dev
    pid_start: int | None = None
    data_dir: Path = field(default=Path(), compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "pidStart": self.pid_start,
            "apiUrl": self.api_url,
            "temporalAddress": self.temporal_address,
            "temporalNamespace": self.temporal_namespace,
            "temporalUiUrl": self.temporal_ui_url,
            "startedAt": self.started_at.isoformat(),
            "taskQueue": self.task_queue,
            "smileStandinUrl": self.smile_standin_url,
            "noticeEndpoints": self.notice_endpoints,
            "secretsFromEnvironment": sorted(self.secrets_from_environment),
            "defaultOptions": (
                self.default_options.model_dump(mode="json", by_alias=True)
                if self.default_options is not None
                else None
            ),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any], data_dir: Path) -> DevRun:
        """Raises ``KeyError``/``TypeError``/``ValueError`` for a file that is not dev's."""
        options = None
        if raw.get("defaultOptions") is not None:
            # Written by another version, perhaps: the rest of the file still holds.
            with contextlib.suppress(ValidationError):
                options = OnboardingOptions.model_validate(raw["defaultOptions"])
        standin = raw.get("smileStandinUrl")
        pid_start = raw.get("pidStart")
        return cls(
            pid=_int(raw["pid"]),
            pid_start=None if pid_start is None else _int(pid_start),
            api_url=_str(raw["apiUrl"]),
            temporal_address=_str(raw["temporalAddress"]),
            temporal_namespace=_str(raw.get("temporalNamespace", DEV_NAMESPACE)),
            temporal_ui_url=_str(raw.get("temporalUiUrl", "")),
            started_at=datetime.fromisoformat(_str(raw["startedAt"])),
            task_queue=_str(raw.get("taskQueue", "smile-onboarding")),
            smile_standin_url=None if standin is None else _str(standin),
            notice_endpoints=_int(raw.get("noticeEndpoints", 0)),
            secrets_from_environment=frozenset(
                _str(name) for name in raw.get("secretsFromEnvironment", [])
            ),
            default_options=options,
            data_dir=data_dir,
        )


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


# --- the process ---------------------------------------------------------------------------


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, from ``/proc``), or None where that cannot
    be read (not Linux, or no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ")"
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])  # field 22 of proc(5); fields[0] is field 3
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, started: int | None = None) -> bool:
    """Whether ``pid`` is a live process (and, when ``started`` is known, the same one)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    if started is not None:
        now = process_start(pid)
        if now is not None and now != started:
            return False  # the pid was reused by another process
    return True


# --- the file ------------------------------------------------------------------------------


def write_dev_file(data_dir: Path, run: DevRun) -> Path:
    """Write ``dev.json`` whole (mode 0600) or not at all: a reader never sees half of it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEV_FILE
    partial = data_dir / f".{DEV_FILE}.{os.getpid()}.tmp"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(run.to_json(), handle, indent=2)
            handle.write("\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def remove_dev_file(data_dir: Path, pid: int) -> None:
    """Remove ``dev.json`` if it is still the one ``pid`` wrote (another dev may have taken the
    data directory over since)."""
    path = data_dir / DEV_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(raw, dict) and raw.get("pid") == pid:
        path.unlink(missing_ok=True)


def find_dev(data_dir: Path) -> DevRun | None:
    """The ``onboarding dev`` running on ``data_dir``, or None: no file, a file that is not
    dev's, or one left by a dev that is gone."""
    path = data_dir / DEV_FILE
    if path.exists() and not trusted_file(path):
        logger.warning("ignoring %s: not owned by this user, or writable by others", path)
        return None
    try:
        raw = json.loads(path.read_text())
        run = DevRun.from_json(raw, data_dir.resolve())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        logger.debug("ignoring %s: %s", path, err)
        return None
    if not pid_alive(run.pid, run.pid_start):
        logger.debug("ignoring %s: process %d is gone", path, run.pid)
        return None
    return run


# --- settings for a command run from another shell ----------------------------------------

# Settings field -> (name in secrets.json, whether the field holds a list)
_SECRET_FIELDS: dict[str, tuple[str, bool]] = {
    "webhook_secrets": ("webhookSecret", True),
    "admin_tokens": ("adminToken", True),
    "callback_secret": ("callbackSecret", False),
    "notify_secrets": ("notifySecret", True),
    "encryption_keys": ("encryptionKey", True),
}

# The settings that make up a new onboarding's options (Settings.default_options).
_OPTION_FIELDS = frozenset(
    {
        "stall_timeouts",
        "expire_after",
        "settle_window",
        "required_data",
        "continue_as_new_after",
        "dedupe_window",
        "history_limit",
        "notify_urls",
        "notify_types",
        "notify_hold",
    }
)


@dataclass(frozen=True)
class DevTarget:
    """What a command run from another shell uses: the settings (with the kept secrets filled
    in where the user set none) and where the service is."""

    settings: Settings
    # for connect(): --temporal-address when given, else dev's when nothing else names one;
    # None: the SDK's environment configuration (or its default) decides
    temporal_address: str | None = None
    temporal_namespace: str | None = None
    api_url: str | None = None  # dev's API, unless ONBOARDING_HOST/PORT are set
    standin_url: str | None = None  # dev's Smile stand-in, when it runs one
    # dev's options for a new onboarding, unless the user set any of those settings
    default_options: OnboardingOptions | None = None
    dev: DevRun | None = None
    # the secrets.json the secrets were taken from, and which of them (settings fields)
    secrets_file: Path | None = None
    secrets_used: frozenset[str] = frozenset()


def _given(settings: Settings, name: str) -> bool:
    """Set by the user, to something: an empty variable counts as unset, as for ``dev``."""
    if name not in settings.model_fields_set:
        return False
    value = getattr(settings, name)
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value().strip())
    return bool(value)


def _environment_temporal() -> tuple[bool, bool]:
    """Whether ``TEMPORAL_*`` or a ``temporal.toml`` profile gives an address, a namespace."""
    try:
        config = ClientConfig.load_client_connect_config()
    except Exception:  # a broken profile: leave it to connect() to report, discover nothing
        return True, True
    return "target_host" in config, "namespace" in config


def settings_with_dev(
    settings: Settings,
    temporal_address: str | None = None,
    *,
    stored_secrets_without_dev: bool = False,
) -> DevTarget:
    """``settings`` (from the environment) completed from the ``onboarding dev`` running on
    ``settings.data_dir``, for whatever the user did not set. ``temporal_address`` is the
    ``--temporal-address`` flag, if given. ``stored_secrets_without_dev``: take the kept
    secrets even when dev is not running (``onboarding listen`` starts before dev, which will
    reuse them). Never creates a file."""
    data_dir = settings.data_dir
    dev = find_dev(data_dir)
    target = DevTarget(settings=settings, temporal_address=temporal_address, dev=dev)
    if dev is not None:
        address_set, namespace_set = (True, True) if temporal_address else _environment_temporal()
        if not address_set:
            target = replace(
                target,
                temporal_address=dev.temporal_address,
                temporal_namespace=None if namespace_set else dev.temporal_namespace,
            )
        if not _given(settings, "host") and not _given(settings, "port"):
            target = replace(target, api_url=dev.api_url)
        target = replace(target, standin_url=dev.smile_standin_url)
        if not settings.model_fields_set & _OPTION_FIELDS:
            target = replace(target, default_options=dev.default_options)
        if "task_queue" not in settings.model_fields_set:
            settings = settings.model_copy(update={"task_queue": dev.task_queue})
    if dev is None and not stored_secrets_without_dev:
        return replace(target, settings=settings)
    stored = read_stored(data_dir)
    if stored is None:
        return replace(target, settings=settings)
    in_environment = dev.secrets_from_environment if dev is not None else frozenset()
    update: dict[str, object] = {}
    for name, (key, is_list) in _SECRET_FIELDS.items():
        value = stored.get(key, "")
        if _given(settings, name) or not value.strip():
            continue
        if OVERRIDDEN_BY[key] in in_environment:
            continue  # dev does not use the kept one
        update[name] = [SecretStr(value)] if is_list else SecretStr(value)
    if not update:
        return replace(target, settings=settings)
    return replace(
        target,
        settings=settings.model_copy(update=update),
        secrets_file=(data_dir / SECRETS_FILE).resolve(),
        secrets_used=frozenset(update),
    )


def reachable_url(host: str, port: int, path: str = "") -> str:
    """A URL a client on this machine can use for a server bound to ``host``: a wildcard
    address becomes the loopback one."""
    if host in ("", "0.0.0.0"):  # the wildcard, recognised
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"
