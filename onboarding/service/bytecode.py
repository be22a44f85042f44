"""Bytecode for the workflow modules, written once when a worker starts.

Temporal's sandbox imports a workflow's module afresh for every workflow it starts or replays.
Without a ``.pyc`` beside the source (PYTHONDONTWRITEBYTECODE, common in container images and
set on these machines, or an editable install that never wrote one), each of those imports
compiles the source again: a third of the worker's CPU in a profile at 100 new onboardings a
second. ``py_compile`` writes the cache file even when PYTHONDONTWRITEBYTECODE is set; reading
it is never turned off."""

from __future__ import annotations

import importlib.util
import logging
import py_compile
import sys

logger = logging.getLogger("onboarding.worker")


def write_bytecode(*classes: type) -> list[str]:
    """Write the bytecode cache of the modules defining ``classes``; returns the files written.
    A read-only install only costs speed, so a failure is logged, not raised."""
    written: list[str] = []
    for module_name in dict.fromkeys(cls.__module__ for cls in classes):
        source = getattr(sys.modules[module_name], "__file__", None)
        if not source or not source.endswith(".py"):
            continue
        cache = importlib.util.cache_from_source(source)
        try:
            written.append(py_compile.compile(source, cfile=cache, doraise=True) or cache)
        except (OSError, py_compile.PyCompileError) as err:
            logger.info(
                "cannot write bytecode for %s (%s); the sandbox will compile it", source, err
            )
    return written
