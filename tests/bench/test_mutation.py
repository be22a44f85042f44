"""The mutation tool cannot rot: its generator makes the mutants it promises, each a single
change, and one end-to-end run kills an obvious mutant with one quick test (a few seconds; the
full run is not part of the suite)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "bench" / "mutation.py"
sys.path.insert(0, str(SCRIPT.parent))

import mutation  # noqa: E402  (bench/ is not a package: its scripts import as siblings)


@pytest.mark.parametrize("module", list(mutation.MODULES))
def test_every_mutant_is_one_valid_change_and_the_numbering_is_stable(module: str) -> None:
    listed = mutation.mutants(module)
    assert listed == mutation.mutants(module)
    assert len(listed) > 100
    assert [m.index for m in listed] == list(range(len(listed)))
    assert len({m.key for m in listed}) == len(listed)  # keys name survivors unambiguously
    original = ast.dump(ast.parse(mutation.module_path(module).read_text()))
    for m in listed[:: max(1, len(listed) // 15)]:
        source = mutation.mutated_source(module, m.index)
        assert ast.dump(ast.parse(source)) != original, m


def test_the_operators_the_issue_asks_for_are_there() -> None:
    changes = {m.change for module in mutation.MODULES for m in mutation.mutants(module)}
    wanted = [
        "min(...)  ->  max(...)",
        "_webhook('USER_CREATED', Effect.USER)  ->  Effect.HISTORY_ONLY (no-op)",
        "table Effect.TASK: _task  ->  no-op",
        "incoming > existing  ->  incoming >= existing",
        "delete: current.succeeded = current.succeeded or succeeded",
        "10000  ->  10001",
    ]
    for change in wanted:
        assert change in changes
    assert any(c.startswith("(source.is_proof, at,") and ": drop at" in c for c in changes)


def test_a_mutant_shows_as_a_diff_of_one_change() -> None:
    (index,) = [
        m.index
        for m in mutation.mutants("state_machine")
        if m.change == "delete: current.succeeded = current.succeeded or succeeded"
    ]
    diff = mutation.diff("state_machine", index)
    assert "-    current.succeeded = current.succeeded or succeeded" in diff
    assert "+    pass" in diff


def test_one_obvious_mutant_is_killed_end_to_end() -> None:
    (renamed,) = [
        m.index
        for m in mutation.mutants("catalogue")
        if m.change == "'USER_CREATED'  ->  'USER_CREATEDX'"
    ]
    test = "tests/onboarding/core/test_catalogue.py::test_every_webhook_type_in_the_spec_is_mapped"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "catalogue", "--only", str(renamed), "--tests", test],
        capture_output=True, text=True, timeout=120, check=False, cwd=SCRIPT.parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "catalogue: 1 mutants, 1 killed, 0 timeouts, 0 survived" in result.stdout
