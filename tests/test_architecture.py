"""Imports run one way: entry points (cli, api, tooling) → service → workflows → activities → core.

Every module under the project's packages is parsed (not imported) and each import of a project
package is checked against the table below: all of them, wherever they stand (module level,
function bodies, ``with workflow.unsafe.imports_passed_through()`` blocks, ``TYPE_CHECKING``)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGES = ("onboarding", "workflows", "activities", "api")

CORE = "onboarding.core"
SERVICE = "onboarding.service"
TOOLING = "onboarding.tooling"
CLI = "onboarding.cli"

# package → the project packages its modules may import (its own included). The longest prefix
# names a module's package; ``onboarding`` alone is the namespace's docstring-only __init__.
ALLOWED: dict[str, frozenset[str]] = {
    "onboarding": frozenset(),
    CORE: frozenset({CORE}),
    "activities": frozenset({"activities", CORE}),
    "workflows": frozenset({"workflows", "activities", CORE}),
    SERVICE: frozenset({SERVICE, "workflows", "activities", CORE}),
    "api": frozenset({"api", SERVICE, "workflows", CORE}),
    TOOLING: frozenset({TOOLING, "api", SERVICE, "workflows", "activities", CORE}),
    CLI: frozenset({CLI, TOOLING, "api", SERVICE, "workflows", "activities", CORE}),
}

# The core is pure: no Temporal, no network, no processes, no settings read from the environment.
CORE_FORBIDDEN_THIRD_PARTY = frozenset(
    {
        "temporalio",
        "httpx",
        "fastapi",
        "starlette",
        "uvicorn",
        "rich",
        "pydantic_settings",
        "asyncio",
        "socket",
        "subprocess",
        "os",
    }
)


def package_of(module: str) -> str | None:
    """The entry of ``ALLOWED`` that ``module`` belongs to, or None outside the project."""
    matches = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> Iterator[str]:
    """Every module ``source`` imports, absolute; ``from a import b`` yields ``a.b`` (b may be a
    submodule), relative imports are resolved against ``module``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = anchor[: len(anchor) - drop]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    own = package_of(module)
    assert own is not None, f"{module} is in no package of the table"
    found = []
    for imported in imported_modules(source, module, is_package):
        target = package_of(imported)
        if target is None:
            top = imported.split(".")[0]
            if own == CORE and top in CORE_FORBIDDEN_THIRD_PARTY:
                found.append(f"{module} imports {imported}: the core is pure")
            continue
        if target == "onboarding" and imported == "onboarding":
            continue  # ``from onboarding import core``: the submodule is checked as well
        if target not in ALLOWED[own]:
            found.append(f"{module} ({own}) imports {imported} ({target})")
    return found


def project_modules() -> list[Path]:
    return sorted(
        path
        for package in SOURCE_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def test_every_module_is_in_a_package_of_the_table() -> None:
    assert project_modules()
    for path in project_modules():
        assert package_of(module_name(path)) is not None, path


def test_imports_run_one_way() -> None:
    found = [
        violation
        for path in project_modules()
        for violation in violations(
            path.read_text(), module_name(path), is_package=path.name == "__init__.py"
        )
    ]
    assert not found, "imports against the direction:\n" + "\n".join(found)


def test_onboarding_namespace_imports_nothing() -> None:
    source = (ROOT / "onboarding" / "__init__.py").read_text()
    assert not list(imported_modules(source, "onboarding", is_package=True))


def test_imports_are_found_wherever_they_stand() -> None:
    """The walk sees the sandbox's pass-through block and imports inside functions."""
    workflow = (ROOT / "workflows" / "onboarding.py").read_text()
    assert "onboarding.core.lifecycle" in set(imported_modules(workflow, "workflows.onboarding"))
    cli = (ROOT / "onboarding" / "cli" / "main.py").read_text()
    assert "onboarding.tooling.dev" in set(imported_modules(cli, "onboarding.cli.main"))


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("onboarding.core.models", "from onboarding.service.settings import Settings"),
        ("onboarding.core.models", "from temporalio.common import SearchAttributeKey"),
        ("onboarding.core.state_machine", "def f():\n    import httpx\n"),
        ("activities.smile", "from workflows import policies"),
        (
            "workflows.onboarding",
            "with workflow.unsafe.imports_passed_through():\n"
            "    from onboarding.service.onboardings import Onboardings\n",
        ),
        ("onboarding.service.worker", "from api.app import create_app"),
        ("onboarding.service.worker", "from onboarding.tooling import devserver"),
        ("api.app", "from onboarding.tooling.serving import UVICORN_OPTIONS"),
        ("api.app", "from onboarding.cli.main import run"),
        ("onboarding.tooling.dev", "from onboarding.cli import render"),
        ("onboarding.core.models", "from ..service import settings"),
        ("onboarding", "from onboarding import service"),
    ],
)
def test_a_forbidden_import_is_caught(module: str, source: str) -> None:
    assert violations(source, module, is_package=module == "onboarding")


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("onboarding.core.state_machine", "from onboarding.core.catalogue import spec_for"),
        ("onboarding.core.models", "from .catalogue import Effect"),
        ("workflows.onboarding", "from activities.smile import SmileActivities"),
        ("onboarding.service.worker", "from workflows.onboarding import OnboardingWorkflow"),
        ("api.deps", "from onboarding.service.batching import SignalBatcher"),
        ("onboarding.tooling.dev", "from api.app import create_app"),
        ("onboarding.cli.main", "from onboarding.tooling.dev import run_dev"),
    ],
)
def test_an_allowed_import_passes(module: str, source: str) -> None:
    assert not violations(source, module)
