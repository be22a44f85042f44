"""Logging for every ``onboarding`` process.

The Temporal SDK logs whole activity results at DEBUG (``temporalio.worker``), and a link token
is an activity result; httpcore logs raw connection traffic at DEBUG. Those loggers are held at
INFO whatever level is asked for, so no token or secret reaches a log."""

from __future__ import annotations

import logging

_PAYLOAD_LOGGERS = ("temporalio.worker", "temporalio.activity", "httpcore")


def configure_logging(level: int | str = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    cap_payload_loggers()
    # One line per HTTP request is noise at INFO; failures still surface as our own logs.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def cap_payload_loggers() -> None:
    for name in _PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
