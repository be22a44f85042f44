"""The worker writes its workflow modules' bytecode even under PYTHONDONTWRITEBYTECODE, so the
sandbox's per-workflow import reads it instead of compiling the source."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import CodeType

import pytest

from onboarding.service.bytecode import write_bytecode
from workflows.create_user import CreateSmileUserWorkflow
from workflows.onboarding import OnboardingWorkflow


def _compiling_is_forbidden(data: object, path: object, **_: object) -> CodeType:
    raise AssertionError(f"compiled {path} from source")


def test_the_sandbox_import_reads_bytecode_instead_of_compiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    source = sys.modules[OnboardingWorkflow.__module__].__file__
    assert source is not None
    Path(importlib.util.cache_from_source(source)).unlink(missing_ok=True)

    written = write_bytecode(OnboardingWorkflow, CreateSmileUserWorkflow, OnboardingWorkflow)

    assert written == [
        importlib.util.cache_from_source(source),
        importlib.util.cache_from_source(
            str(sys.modules[CreateSmileUserWorkflow.__module__].__file__)
        ),
    ]
    # What an import does: with a valid cache file, the source is never compiled.
    loader = importlib.machinery.SourceFileLoader(OnboardingWorkflow.__module__, source)
    monkeypatch.setattr(loader, "source_to_code", _compiling_is_forbidden)
    assert isinstance(loader.get_code(OnboardingWorkflow.__module__), CodeType)


@pytest.fixture
def unwritable_module(tmp_path: Path) -> Iterator[type]:
    source = tmp_path / "unwritable_workflow_module.py"
    source.write_text("class Workflow:\n    pass\n")
    (tmp_path / "__pycache__").write_text("a file where the cache directory would go")
    spec = importlib.util.spec_from_file_location("unwritable_workflow_module", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module.Workflow
    del sys.modules[spec.name]


def test_an_unwritable_install_costs_speed_not_the_worker(
    unwritable_module: type, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="onboarding.worker")
    assert write_bytecode(unwritable_module) == []
    assert "cannot write bytecode" in caplog.text
