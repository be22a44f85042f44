"""Configuration from environment variables (pydantic-settings). The Temporal connection itself
is configured through the SDK's own ``temporalio.envconfig`` conventions (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS*``), see
:mod:`onboarding.service.temporal`."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from onboarding.core.bulk import DEFAULT_RATE as DEFAULT_BULK_RATE
from onboarding.core.bulk import MAX_RATE as MAX_BULK_RATE
from onboarding.core.datapoints import normalise_required_data
from onboarding.core.durations import parse_duration
from onboarding.core.encryption_keys import parse_keys
from onboarding.core.models import (
    NoticeType,
    OnboardingOptions,
    Stage,
    Timeouts,
    stage_with_stall_timeout,
)
from onboarding.core.notices import notice_type
from onboarding.service.deployment import check_build_id, check_deployment_name
from onboarding.service.spool import open_spool

DEFAULT_STALL_TIMEOUTS: dict[Stage, timedelta] = {
    Stage.CREATED: timedelta(hours=24),
    Stage.ACCOUNT_CREATED: timedelta(hours=1),
    Stage.CONNECTED: timedelta(hours=6),
    Stage.UPLOADS: timedelta(hours=24),
}


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def parse_secrets(value: Any) -> list[str]:
    """One or more secrets from one environment value: a JSON list of strings when the value
    starts with ``[`` (``["old phrase, with a comma", "new"]``: any secret can be carried),
    otherwise comma separated (``old,new``; spaces around each are dropped). Used for
    ``SMILE_WEBHOOK_SECRET`` and ``ONBOARDING_ADMIN_TOKEN`` by ``onboarding api``, ``worker`` and
    ``dev`` alike. Error messages never repeat the value."""
    if value is None:
        return []
    if not isinstance(value, str):  # a list given in code
        items = (v.get_secret_value() if isinstance(v, SecretStr) else str(v) for v in value)
        return [item.strip() for item in items if item.strip()]
    text = value.strip()
    if not text.startswith("["):
        return _split(text)
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"starts with '[' but is not valid JSON ({err.msg} at character {err.pos}); "
            'use a JSON list of strings such as ["old", "new"], or comma-separated secrets'
        ) from None
    if not isinstance(parsed, list) or not all(isinstance(v, str) and v.strip() for v in parsed):
        raise ValueError('a JSON value must be a list of non-empty strings, e.g. ["old", "new"]')
    return parsed


def parse_stall_timeouts(value: Any) -> dict[Stage, timedelta]:
    """``created=24h,connected=6h`` (or a mapping) into per-stage timeouts; unnamed stages keep
    their defaults."""
    pairs: dict[str, Any]
    if isinstance(value, dict):
        pairs = dict(value)
    else:
        pairs = {}
        for item in _split(value):
            name, sep, duration = item.partition("=")
            if not sep:
                raise ValueError(f"expected STAGE=DURATION, got {item!r}")
            pairs[name.strip()] = duration.strip()
    result = dict(DEFAULT_STALL_TIMEOUTS)
    for name, duration in pairs.items():
        stage = stage_with_stall_timeout(str(name))
        parsed = parse_duration(duration)
        if parsed.total_seconds() <= 0:
            raise ValueError(f"stall timeout for {stage.value} must be positive, got {duration!r}")
        result[stage] = parsed
    return result


# A Standard Webhooks secret: ``whsec_`` and base64 of at least this many random bytes.
NOTIFY_SECRET_MIN_BYTES = 24


def check_notify_url(url: str, position: int) -> None:
    """An absolute http(s) URL; the error names the position, never the URL (it may carry a
    token)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"notify URL number {position} is not an absolute http(s) URL")


def check_notify_secret(secret: str, position: int) -> None:
    if not secret.startswith("whsec_"):
        raise ValueError(f"notify secret number {position} does not start with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"notify secret number {position} is not whsec_ followed by base64"
        ) from None
    if len(key) < NOTIFY_SECRET_MIN_BYTES:
        raise ValueError(
            f"notify secret number {position} is too short: give at least "
            f"{NOTIFY_SECRET_MIN_BYTES} random bytes (onboarding dev generates one)"
        )


def new_notify_secret() -> str:
    """A fresh ``whsec_`` secret of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Settings(BaseSettings):
    # Errors never echo the value: it may be a secret.
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, case_sensitive=False, hide_input_in_errors=True
    )

    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias="SMILE_WEBHOOK_SECRET",
        description="Webhook secret(s), comma separated or a JSON list; any one verifies "
        "(rotation). The first listed is the one dev's stand-in and the simulator sign with.",
    )
    admin_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias="ONBOARDING_ADMIN_TOKEN",
        description="Bearer token(s) for operator endpoints, comma separated or a JSON list.",
    )
    host: str = Field("127.0.0.1", validation_alias="ONBOARDING_HOST")
    port: int = Field(8000, ge=0, le=65535, validation_alias="ONBOARDING_PORT")
    task_queue: str = Field(
        "smile-onboarding", min_length=1, validation_alias="ONBOARDING_TASK_QUEUE"
    )
    # --- worker versioning (README "Deploying"; onboarding/service/deployment.py) ----------
    deployment_name: str = Field(
        "smile-onboarding",
        validation_alias="ONBOARDING_DEPLOYMENT_NAME",
        description="The Worker Deployment this worker's version belongs to (no '.').",
    )
    build_id: str | None = Field(
        None,
        validation_alias="ONBOARDING_BUILD_ID",
        description="This worker's build id (e.g. the release or commit). Set: the worker is "
        "versioned, version DEPLOYMENT_NAME.BUILD_ID. Unset: unversioned, as before.",
    )
    stall_timeouts: Annotated[dict[Stage, timedelta], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_STALL_TIMEOUTS),
        validation_alias="ONBOARDING_STALL_TIMEOUTS",
    )
    expire_after: timedelta = Field(timedelta(days=7), validation_alias="ONBOARDING_EXPIRE_AFTER")
    settle_window: timedelta = Field(
        timedelta(minutes=10), validation_alias="ONBOARDING_SETTLE_WINDOW"
    )
    # Run-time defaults (docs/operations.md): the environment's timeouts above are only the
    # initial value of the defaults workflow; once it exists, its stored value wins.
    defaults_id: str = Field(
        "smile-onboarding-defaults",
        min_length=1,
        max_length=200,
        validation_alias="ONBOARDING_DEFAULTS_ID",
        description="Workflow id of the defaults workflow.",
    )
    defaults_ttl: timedelta = Field(
        timedelta(seconds=10),
        validation_alias="ONBOARDING_DEFAULTS_TTL",
        description="How long a process reuses the defaults it read: a change made through "
        "another process reaches this one's new onboardings within this time.",
    )
    required_data: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["identity", "employments", "incomes"],
        validation_alias="ONBOARDING_REQUIRED_DATA",
    )
    continue_as_new_after: int = Field(
        2000, ge=1, validation_alias="ONBOARDING_CONTINUE_AS_NEW_AFTER"
    )
    dedupe_window: int = Field(10_000, ge=1, validation_alias="ONBOARDING_DEDUPE_WINDOW")
    history_limit: int = Field(500, ge=1, validation_alias="ONBOARDING_HISTORY_LIMIT")
    smile_api_base_url: str = Field(
        "https://sandbox.smileapi.io/v1", validation_alias="SMILE_API_BASE_URL"
    )
    smile_api_key: str | None = Field(None, validation_alias="SMILE_API_KEY")
    smile_api_secret: SecretStr | None = Field(None, validation_alias="SMILE_API_SECRET")
    smile_api_timeout: timedelta = Field(
        timedelta(seconds=10), validation_alias="SMILE_API_TIMEOUT"
    )
    callback_secret: SecretStr | None = Field(
        None,
        validation_alias="ONBOARDING_CALLBACK_SECRET",
        description="Callback-token secret(s), newest first, comma separated or a JSON list: "
        "tokens are issued with the first and verify under any (rotation). Read them through "
        "callback_secrets.",
    )
    callback_token_ttl: timedelta = Field(
        timedelta(hours=24), validation_alias="ONBOARDING_CALLBACK_TOKEN_TTL"
    )
    webhook_allowed_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias="SMILE_WEBHOOK_ALLOWED_IPS",
        description="IPs/CIDRs allowed to send webhooks (Smile documents 18.142.61.230)",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="ONBOARDING_TRUSTED_PROXIES"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="ONBOARDING_CORS_ORIGINS"
    )
    callback_max_bytes: int = Field(
        16 * 1024, ge=256, validation_alias="ONBOARDING_CALLBACK_MAX_BYTES"
    )
    webhook_max_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, validation_alias="SMILE_WEBHOOK_MAX_BYTES"
    )
    request_max_bytes: int = Field(
        64 * 1024, ge=1024, validation_alias="ONBOARDING_REQUEST_MAX_BYTES"
    )
    batch_signals: bool = Field(True, validation_alias="ONBOARDING_BATCH_SIGNALS")
    rpc_timeout: timedelta = Field(timedelta(seconds=10), validation_alias="ONBOARDING_RPC_TIMEOUT")
    stats_max_age: timedelta = Field(
        timedelta(seconds=10),
        validation_alias="ONBOARDING_STATS_MAX_AGE",
        description="How old GET /onboardings/stats may be before a fresh count is started",
    )
    bulk_rate: float = Field(
        DEFAULT_BULK_RATE,
        gt=0,
        le=MAX_BULK_RATE,
        validation_alias="ONBOARDING_BULK_RATE",
        description="Onboardings a bulk operation changes per second, unless it asks otherwise",
    )
    # --- the spool: where events wait while Temporal cannot take them -------------------
    data_dir: Path = Field(
        Path(".onboarding"),
        validation_alias="ONBOARDING_DATA_DIR",
        description="Where the embedded default keeps its files (the SQLite spool).",
    )
    spool_url: SecretStr | None = Field(
        None,
        validation_alias="ONBOARDING_SPOOL_URL",
        description="postgresql://… (replicas share one spool) or a SQLite path; "
        "default: spool.sqlite3 in ONBOARDING_DATA_DIR.",
    )
    spool_max_bytes: int = Field(1024**3, ge=1024, validation_alias="ONBOARDING_SPOOL_MAX_BYTES")
    ingest_timeout: timedelta = Field(
        timedelta(seconds=3),
        validation_alias="ONBOARDING_INGEST_TIMEOUT",
        description="How long a webhook waits for Temporal before its event is spooled.",
    )
    breaker_cooldown: timedelta = Field(
        timedelta(seconds=5), validation_alias="ONBOARDING_BREAKER_COOLDOWN"
    )
    spool_lease: timedelta = Field(
        timedelta(seconds=30),
        validation_alias="ONBOARDING_SPOOL_LEASE",
        description="How long a drainer holds claimed events before another may take them.",
    )
    drain_concurrency: int = Field(4, ge=1, le=64, validation_alias="ONBOARDING_DRAIN_CONCURRENCY")
    # --- notices to the customer's backend (Standard Webhooks) -------------------------
    notify_urls: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias="ONBOARDING_NOTIFY_URL",
        description="Where notices go: http(s) URL(s), comma separated or a JSON list; each "
        "gets every notice. Unset: no notices. Kept secret (a URL may carry a token).",
    )
    notify_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias="ONBOARDING_NOTIFY_SECRET",
        description="whsec_… signing secret(s); each notice is signed with every one listed, "
        "so a receiver verifies with either during a rotation.",
    )
    notify_types: Annotated[list[NoticeType], NoDecode] = Field(
        default_factory=lambda: list(NoticeType),
        validation_alias="ONBOARDING_NOTIFY_TYPES",
        description="The notice types to send, e.g. data_ready,stalled,failed (default: all).",
    )
    notify_timeout: timedelta = Field(
        timedelta(seconds=10),
        validation_alias="ONBOARDING_NOTIFY_TIMEOUT",
        description="How long one delivery attempt waits for the receiver's answer.",
    )
    notify_hold: timedelta = Field(
        timedelta(days=3),
        validation_alias="ONBOARDING_NOTIFY_HOLD",
        description="How long an ended onboarding with failed notices stays open for redelivery.",
    )

    # --- payloads in Temporal, encrypted (docs/encryption.md) ------------------------------
    encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias="ONBOARDING_ENCRYPTION_KEYS",
        description="ID:BASE64 AES-256 key(s), newest first, comma separated or a JSON list: "
        "new payloads are encrypted with the first, older ones decrypt with theirs.",
    )
    encryption: bool = Field(
        True,
        validation_alias="ONBOARDING_ENCRYPTION",
        description="off: payloads are written unencrypted (keys still given decrypt older "
        "ones); on (default): worker and api refuse to start without a key.",
    )
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias="ONBOARDING_CODEC_CORS_ORIGINS",
        description="Origins (Temporal's web UI) allowed to call /codec/encode and /codec/decode "
        "from a browser, credentials included; onboarding dev sets its own UI's.",
    )

    # --- seeing it: the console, metrics, traces -----------------------------------------
    console_session_ttl: timedelta = Field(
        timedelta(hours=8),
        validation_alias="ONBOARDING_CONSOLE_SESSION_TTL",
        description="How long a console sign-in lasts.",
    )
    console_sign_in_attempts: int = Field(
        10,
        ge=1,
        validation_alias="ONBOARDING_CONSOLE_SIGN_IN_ATTEMPTS",
        description="Failed console sign-ins from one address within "
        "ONBOARDING_CONSOLE_SIGN_IN_WINDOW before it must wait (429).",
    )
    console_sign_in_window: timedelta = Field(
        timedelta(minutes=5),
        validation_alias="ONBOARDING_CONSOLE_SIGN_IN_WINDOW",
        description="The window the failed console sign-ins are counted in.",
    )
    temporal_ui_url: str | None = Field(
        None,
        validation_alias="ONBOARDING_TEMPORAL_UI_URL",
        description="Temporal's web UI (e.g. http://127.0.0.1:8233), for the console's links; "
        "onboarding dev sets its own.",
    )
    worker_max_cached_workflows: int = Field(
        800,
        ge=0,
        validation_alias="ONBOARDING_WORKER_MAX_CACHED_WORKFLOWS",
        description="Onboardings a worker keeps in memory between their tasks (about 0.2 MB "
        "each); one not kept replays its history at its next task.",
    )
    worker_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        validation_alias="ONBOARDING_WORKER_METRICS_PORT",
        description="Where the worker serves Prometheus metrics (the SDK's and ours); unset: off.",
    )
    otlp_endpoint: str | None = Field(
        None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="OpenTelemetry's own variable: when set, traces are exported there (OTLP "
        "over HTTP); unset, tracing is off and costs nothing.",
    )
    otlp_traces_endpoint: str | None = Field(
        None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="OpenTelemetry's variable for traces alone; either one turns tracing on.",
    )

    @field_validator("webhook_secrets", "admin_tokens", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> list[Any]:
        if isinstance(value, list) and all(isinstance(v, SecretStr) for v in value):
            return value
        return parse_secrets(value)

    @field_validator("notify_urls", "notify_secrets", mode="before")
    @classmethod
    def _split_notify(cls, value: Any, info: ValidationInfo) -> list[SecretStr]:
        """Several, like the other secrets; each checked, its error naming its position."""
        check = check_notify_url if info.field_name == "notify_urls" else check_notify_secret
        values = parse_secrets(value)
        for position, item in enumerate(values, start=1):
            check(item, position)
        return [SecretStr(item) for item in values]

    @field_validator("notify_types", mode="before")
    @classmethod
    def _parse_notify_types(cls, value: Any) -> list[NoticeType]:
        names = _split(value)
        if not names:
            raise ValueError("name at least one notice type, or leave it unset for all")
        return list(dict.fromkeys(notice_type(name) for name in names))

    @field_validator("webhook_allowed_ips", "trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> list[str]:
        networks = _split(value)
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an IP address or CIDR range") from None
        return networks

    @field_validator("encryption_keys", mode="before")
    @classmethod
    def _parse_encryption_keys(cls, value: Any) -> list[SecretStr]:
        """Each ``ID:BASE64`` checked (32 bytes, distinct ids), its error naming its position."""
        values = parse_secrets(value)
        parse_keys(values)
        return [SecretStr(item) for item in values]

    @field_validator("callback_secret", mode="before")
    @classmethod
    def _check_callback_secrets(cls, value: Any) -> Any:
        """One secret, or several (comma separated, a JSON list, or a list in code), kept as
        one value so the single-secret form reads as before; :attr:`callback_secrets` splits it."""
        if value is None or isinstance(value, str | SecretStr):
            parse_secrets(value.get_secret_value() if isinstance(value, SecretStr) else value)
            return value
        return SecretStr(json.dumps(parse_secrets(value)))

    @field_validator("cors_origins", "codec_cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> list[str]:
        return _split(value)

    @field_validator("codec_cors_origins")
    @classmethod
    def _no_wildcard_for_the_codec(cls, value: list[str]) -> list[str]:
        # The codec's CORS admits credentials, and decoded payloads are personal data: a
        # wildcard would let any site an operator visits read them.
        if "*" in value:
            raise ValueError("name the Temporal UI's origin (e.g. http://127.0.0.1:8233), not *")
        return value

    @field_validator("required_data", mode="before")
    @classmethod
    def _split_required(cls, value: Any) -> list[str]:
        return normalise_required_data(_split(value))

    @field_validator("stall_timeouts", mode="before")
    @classmethod
    def _parse_stalls(cls, value: Any) -> dict[Stage, timedelta]:
        return parse_stall_timeouts(value)

    @field_validator(
        "expire_after",
        "settle_window",
        "rpc_timeout",
        "ingest_timeout",
        "breaker_cooldown",
        "spool_lease",
        "smile_api_timeout",
        "callback_token_ttl",
        "notify_timeout",
        "notify_hold",
        "console_session_ttl",
        "console_sign_in_window",
        "stats_max_age",
        "defaults_ttl",
        mode="before",
    )
    @classmethod
    def _parse_duration(cls, value: Any) -> timedelta:
        parsed = parse_duration(value)
        if parsed.total_seconds() <= 0:
            raise ValueError("must be a positive duration")
        return parsed

    @field_validator("deployment_name", mode="after")
    @classmethod
    def _check_deployment_name(cls, value: str) -> str:
        return check_deployment_name(value)

    @field_validator("build_id", mode="after")
    @classmethod
    def _check_build_id(cls, value: str | None) -> str | None:
        return check_build_id(value)

    @field_validator("spool_url", mode="after")
    @classmethod
    def _check_spool_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            # No I/O: only the URL is read; a ValueError says what is wrong without the password.
            open_spool(value.get_secret_value(), 1024)
        return value

    @property
    def spool_location(self) -> str:
        """The spool's URL or path: ``ONBOARDING_SPOOL_URL``, else the SQLite file in the
        data directory. May hold a password: never log it."""
        if self.spool_url is not None:
            return self.spool_url.get_secret_value()
        return str(self.data_dir / "spool.sqlite3")

    @property
    def callback_secrets(self) -> list[SecretStr]:
        """The callback-token secrets, newest (the one that issues) first; empty: callbacks off."""
        if self.callback_secret is None:
            return []
        return [SecretStr(s) for s in parse_secrets(self.callback_secret.get_secret_value())]

    def encryption_problem(self) -> str | None:
        """Why ``worker`` and ``api`` must not start as configured: encryption on (the
        default) with no key (``dev`` generates one instead)."""
        if self.encryption and not self.encryption_keys:
            return (
                "ONBOARDING_ENCRYPTION_KEYS is not set: payloads in Temporal would be stored "
                "unencrypted. Give a key (ID:BASE64 of 32 random bytes; `onboarding "
                "encryption-key` prints a new one), or set ONBOARDING_ENCRYPTION=off to store "
                "them in plain text on purpose (see docs/encryption.md)"
            )
        return None

    @property
    def notices_on(self) -> bool:
        return bool(self.notify_urls)

    def notice_problem(self) -> str | None:
        """Why notices as configured could not work, for ``worker`` and ``api`` to refuse to
        start with (``dev`` generates a secret instead)."""
        if self.notify_urls and not self.notify_secrets:
            return (
                "ONBOARDING_NOTIFY_URL is set but ONBOARDING_NOTIFY_SECRET is not: notices "
                "could not be signed (give a whsec_… secret)"
            )
        return None

    @property
    def has_smile_credentials(self) -> bool:
        return bool(self.smile_api_key and self.smile_api_secret)

    def default_options(self) -> OnboardingOptions:
        """The per-onboarding options a new onboarding starts with."""
        return OnboardingOptions(
            timeouts=Timeouts(
                stall={s: t.total_seconds() for s, t in self.stall_timeouts.items()},
                expire_after=self.expire_after.total_seconds(),
                settle_window=self.settle_window.total_seconds(),
            ),
            required_data=list(self.required_data),
            continue_as_new_after=self.continue_as_new_after,
            dedupe_window=self.dedupe_window,
            history_limit=self.history_limit,
            notices=list(self.notify_types) if self.notices_on else None,
            notice_hold=self.notify_hold.total_seconds(),
        )
