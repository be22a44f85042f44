"""Mutation testing of the pure core: does a small change to the code fail a test?

Each mutant is one small change to one module, made on its syntax tree: a comparison flipped or
moved off by one, ``and``/``or``, ``min``/``max`` and ``any``/``all`` swapped, a ``not`` dropped,
``+``/``-`` swapped, a statement deleted, a keyword argument dropped (the field falls back to its
default), an element dropped from a tuple (a tie-break key, a set of allowed values), a constant
changed, a table entry pointed at a no-op. The fast tests of the module then run against it: a
mutant is *killed* if a test fails, *timed out* if they hang, and *survives* otherwise. A
survivor is either a behaviour no test pins or an *equivalent* mutant (no input can tell it from
the original); the known equivalents are listed below, each with the reason, and the score is
reported with and without them.

    .venv/bin/python bench/mutation.py                 # all three modules, 2 processes
    .venv/bin/python bench/mutation.py lifecycle -j 4  # one module
    .venv/bin/python bench/mutation.py --list          # the mutants only, nothing run
    .venv/bin/python bench/mutation.py --show state_machine:17   # one mutant as a diff

Fast by design: the test runner (pytest, hypothesis, pydantic) is imported once, and every
mutant runs in a forked child that loads the mutated module before the tests import it, stops at
the first failure and is killed by ``SIGALRM`` past its timeout. Hypothesis runs derandomized
and without its example database, so a run is reproducible. Not part of CI (minutes, not
seconds); see docs/testing.md. POSIX only (``fork``)."""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import importlib
import json
import os
import signal
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORE_TESTS = "tests/onboarding/core"

# Which tests run against each module: those that exercise it, fastest and most pointed first
# (a mutant stops at its first failure, so the order is only about speed).
_STATE_MACHINE_TESTS = (
    f"{CORE_TESTS}/test_state_machine_facts.py",
    f"{CORE_TESTS}/test_catalogue_effects.py",
    f"{CORE_TESTS}/test_catalogue.py",
    f"{CORE_TESTS}/test_state_machine.py",
    f"{CORE_TESTS}/test_bounded_state.py",
    f"{CORE_TESTS}/test_state_machine_oracle.py",
    f"{CORE_TESTS}/test_state_machine_ties.py",
    f"{CORE_TESTS}/test_state_machine_properties.py",
)
MODULES: dict[str, tuple[str, ...]] = {
    "state_machine": _STATE_MACHINE_TESTS,
    "catalogue": _STATE_MACHINE_TESTS,
    "lifecycle": (
        f"{CORE_TESTS}/test_lifecycle_oracle.py",
        f"{CORE_TESTS}/test_lifecycle.py",
        f"{CORE_TESTS}/test_notices.py",
    ),
}
PACKAGE = "onboarding.core"


def tests_for(module: str) -> list[str]:
    """The module's test files that exist (a checkout may predate some)."""
    return [t for t in MODULES[module] if (ROOT / t).is_file()]


# Imported once, before any fork: everything the tests need that no mutant changes.
_PRELOAD = (
    "pytest",
    "hypothesis",
    "hypothesis.strategies",
    "pydantic",
    "pydantic_core",
    "temporalio.contrib.pydantic",
    "onboarding.core.models",
    "onboarding.core.datapoints",
    "onboarding.core.compact",
    "onboarding.core.notices",
)

# Survivors judged equivalent: no input tells them from the original. Keyed by module and the
# mutant's key (the function it is in and the change, so the entry survives lines moving); each
# is explained in docs/testing.md.
_SAME_EVENT = (
    "ranks tie only for the same source kind and event id (the id is the last element), "
    "i.e. the same event applied again once the window forgot it: it writes what is there"
)
_LAST_STEP = "the last step of its lifecycle, raised: still above every other step"
_KNOWN_STEP = "every status that reaches this lookup is in the table: the default is never used"
_MISSING_IS_DEFAULT = "the step's key renamed: the lookup's default is the rank it had"
_SAME_TIME = "ties on the time write the same time"
EQUIVALENT: dict[str, dict[str, str]] = {
    "state_machine": {
        "<module>: 4  ->  5": _LAST_STEP + " (account: disconnected)",
        "<module>: 3  ->  4  #3": _LAST_STEP + " (archive: revoked)",
        "<module>: 3  ->  4  #4": _LAST_STEP + " (task: SUCCEEDED)",
        "<module>: 1  ->  2  #4": _LAST_STEP + " (invite: linked)",
        "<module>: 1  ->  2  #5": _LAST_STEP + " (widget: closed)",
        "<module>: 1  ->  2  #6": _LAST_STEP + " (session: USER_SESSION_RESET)",
        "<module>: 2  ->  3  #4": "task FAILED raised to SUCCEEDED's rank: the tie then goes to "
        "the content, and 'SUCCEEDED' > 'FAILED' decides as the lifecycle did",
        "<module>: 'started'  ->  'startedX'": _MISSING_IS_DEFAULT + " (archive started, 0)",
        "<module>: 'FINISHED'  ->  'FINISHEDX'": _MISSING_IS_DEFAULT + " (task FINISHED, 1)",
        "<module>: 'invited'  ->  'invitedX'": _MISSING_IS_DEFAULT + " (invite invited, 0)",
        "<module>: 'USER_SESSION_COMPLETED'  ->  'USER_SESSION_COMPLETEDX'": _MISSING_IS_DEFAULT
        + " (session completed, 0)",
        "StateMachine.apply: event.created_at > facts.last_event_at  ->  "
        "event.created_at >= facts.last_event_at": _SAME_TIME,
        "_user: event.created_at < facts.user_created_at  ->  "
        "event.created_at <= facts.user_created_at": _SAME_TIME,
        "_data: event.created_at > received.last_at  ->  event.created_at >= received.last_at": (
            _SAME_TIME
        ),
        "_token_expired: event.created_at > token.expired_reported_at  ->  "
        "event.created_at >= token.expired_reported_at": _SAME_TIME,
        "_ui_event: event.created_at > seen  ->  event.created_at >= seen": _SAME_TIME,
        "StateMachine._trim_seen: excess > 0  ->  excess >= 0": "trimming 0 entries is a no-op",
        "_set_account_status: incoming > existing  ->  incoming >= existing": _SAME_EVENT,
        "_task: incoming > existing  ->  incoming >= existing": _SAME_EVENT,
        "_archive: _archive_rank(candidate) > _archive_rank(current)  ->  "
        "_archive_rank(candidate) >= _archive_rank(current)": _SAME_EVENT,
        "_invite: incoming > _rank(event.source, current.updated_at, "
        "_INVITE_LIFECYCLE.get(current.status, 0), (current.invite_id,), current.event_id)  ->  "
        "incoming >= _rank(event.source, current.updated_at, "
        "_INVITE_LIFECYCLE.get(current.status, 0), (current.invite_id,), current.event_id)": (
            _SAME_EVENT
        ),
        "_session: _rank(event.source, event.created_at, lifecycle, (status, channel), event.id)"
        " > _rank(event.source, current.updated_at, _SESSION_LIFECYCLE.get(current.event_type, "
        "0), (current.status, current.channel), current.event_id)  ->  _rank(event.source, "
        "event.created_at, lifecycle, (status, channel), event.id) >= _rank(event.source, "
        "current.updated_at, _SESSION_LIFECYCLE.get(current.event_type, 0), (current.status, "
        "current.channel), current.event_id)": _SAME_EVENT,
        "_widget_state: incoming > _rank(event.source, widget.updated_at, "
        "_WIDGET_LIFECYCLE.get(widget.state, 0), (widget.close_reason,), widget.event_id or '')"
        "  ->  incoming >= _rank(event.source, widget.updated_at, "
        "_WIDGET_LIFECYCLE.get(widget.state, 0), (widget.close_reason,), widget.event_id or '')": (
            _SAME_EVENT
        ),
        "_ui_event: (event.created_at, screen, event.id) > (widget.screen_updated_at, "
        "widget.last_screen or '', widget.screen_event_id or '')  ->  (event.created_at, screen,"
        " event.id) >= (widget.screen_updated_at, widget.last_screen or '', "
        "widget.screen_event_id or '')": _SAME_EVENT,
        "_ui_event: ''  ->  'X'": "a screen is only compared once one was recorded, with its "
        "name and event id: the fallback is never used",
        "_ui_event: ''  ->  'X'  #2": "a screen is only compared once one was recorded, with "
        "its name and event id: the fallback is never used",
        "_archive_rank: 0  ->  1": _KNOWN_STEP,
        "<module>: table Effect.HISTORY_ONLY: _history_only  ->  no-op": "_history_only does "
        "nothing: a function doing nothing in its place is the same",
        "_invite: 0  ->  1": _KNOWN_STEP,
        "_invite: 0  ->  1  #2": _KNOWN_STEP,
        "_session: 0  ->  1": _KNOWN_STEP,
        "_session: 0  ->  1  #2": _KNOWN_STEP,
        "_widget_state: 0  ->  1": _KNOWN_STEP,
        "_invite: 'unknown'  ->  'unknownX'": "every invite entry of the catalogue has its "
        "status as argument: the fallback is never used",
        "_widget_state: ''  ->  'X'": "the widget has an event id whenever it has a time, and "
        "without a time the comparison is never made",
        "_set_account_status: len(current.providers) < MAX_WIDGET_PROVIDERS  ->  "
        "len(current.providers) <= MAX_WIDGET_PROVIDERS": "at the cap there is no room left "
        "(room = 0): nothing is added either way",
    },
    "catalogue": {},
    "lifecycle": {
        "_reconciled: delete: life.stall_notice_wanted = False": "reached only when the stall "
        "healed (progress and a longer timeout both clear the wish) or its notice's outcome "
        "was reported: the wish is already False",
        "_end: delete: if life.status.is_terminal:     return": "a step returns at once for an "
        "ended onboarding and ends it at most once: the guard is never true",
        "_end: delete: return": "a step returns at once for an ended onboarding and ends it at "
        "most once: the guard is never true",
        "_reconciled: delete: return []": "falling through after Smile's 'no such user' ends "
        "the onboarding changes only wishes that the step then clears for every ended "
        "onboarding, and asks for nothing",
        "step: delete: commands = [c for c in commands if isinstance(c, Publish | Announce)]": (
            "no step that ends the onboarding also asks for work: the stall is an `elif` after "
            "the endings, and a reconciliation that finds no user returns no command"
        ),
    },
}


# --- mutants ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int
    line: int
    scope: str  # the function (or class) it is in; "<module>" at the top level
    change: str  # what was changed, as source: "a > b  ->  a >= b"

    @property
    def key(self) -> str:
        return f"{self.scope}: {self.change}"

    @property
    def label(self) -> str:
        return f"{self.module}:{self.index}"


_COMPARE_SWAPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Lt: (ast.LtE, ast.Gt),
    ast.Gt: (ast.GtE, ast.Lt),
    ast.LtE: (ast.Lt, ast.Gt),
    ast.GtE: (ast.Gt, ast.Lt),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}
_NAME_SWAPS = {"min": "max", "max": "min", "any": "all", "all": "any"}
_NO_OP = "(lambda *_args, **_kwargs: None)"
# Calls that build catalogue entries: (name, source, effect, arg, summary) minus the source.
_SPEC_BUILDERS = frozenset({"_webhook", "_widget", "_reconcile"})


def _src(node: ast.AST) -> str:
    return ast.unparse(node).replace("\n", " ")


class _Mutator(ast.NodeTransformer):
    """Walks a module in a fixed order, numbering every place a mutant can be made; applies
    the one numbered ``target`` (None: applies none, only lists them)."""

    def __init__(self, module: str, target: int | None) -> None:
        self.module = module
        self.target = target
        self.found: list[Mutant] = []
        self._scope: list[str] = []
        self._functions: set[str] = set()
        self._in_function = 0

    # -- bookkeeping

    def _site(self, node: ast.AST, change: str) -> bool:
        mutant = Mutant(
            self.module,
            len(self.found),
            getattr(node, "lineno", 0),
            ".".join(self._scope) or "<module>",
            change,
        )
        self.found.append(mutant)
        return mutant.index == self.target

    def visit_Module(self, node: ast.Module) -> ast.AST:
        self._functions = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        docstring, body = _without_docstring(node.body)
        node.body = docstring + [self.visit(s) for s in body]
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        bases = {_src(b) for b in node.bases}
        if bases & {"StrEnum", "Enum"}:
            return node  # member values are names: nothing reads them but by identity
        self._scope.append(node.name)
        docstring, body = _without_docstring(node.body)
        node.body = docstring + [self.visit(s) for s in body]
        self._scope.pop()
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self._scope.append(node.name)
        self._in_function += 1
        docstring, body = _without_docstring(node.body)
        node.body = docstring + self._statements(body)
        if not node.body:
            node.body = [ast.Pass()]
        self._in_function -= 1
        self._scope.pop()
        return node  # annotations, defaults and decorators are left alone

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def _statements(self, body: list[ast.stmt]) -> list[ast.stmt]:
        """Each statement deleted in turn (a ``pass`` in its place), then mutated inside."""
        out: list[ast.stmt] = []
        for statement in body:
            if not isinstance(statement, ast.Pass | ast.FunctionDef) and self._site(
                statement, f"delete: {_src(statement).split(chr(10))[0][:80]}"
            ):
                out.append(ast.copy_location(ast.Pass(), statement))
                continue
            out.append(self.visit(statement))
        return out

    def generic_visit(self, node: ast.AST) -> ast.AST:
        # Nested blocks (if/for/while/with/try/match bodies) get statement deletion too.
        if self._in_function:
            for name in ("body", "orelse", "finalbody"):
                block = getattr(node, name, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    visited = self._statements(block)
                    setattr(node, name, visited)
            for name, value in ast.iter_fields(node):
                if name in ("body", "orelse", "finalbody") and isinstance(value, list):
                    continue
                self._visit_field(node, name, value)
            return node
        return super().generic_visit(node)

    def _visit_field(self, node: ast.AST, name: str, value: object) -> None:
        if isinstance(value, list):
            new: list[object] = []
            for item in value:
                new.append(self.visit(item) if isinstance(item, ast.AST) else item)
            setattr(node, name, new)
        elif isinstance(value, ast.AST):
            setattr(node, name, self.visit(value))

    # -- the operators

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for i, op in enumerate(list(node.ops)):
            for swap in _COMPARE_SWAPS.get(type(op), ()):
                before = _src(node)
                mutated = copy.deepcopy(node)
                mutated.ops[i] = swap()
                if self._site(node, f"{before}  ->  {_src(mutated)}"):
                    return mutated
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        swapped = ast.BoolOp(op=ast.Or() if isinstance(node.op, ast.And) else ast.And(),
                             values=node.values)  # fmt: skip
        if self._site(node, f"{_src(node)}  ->  {_src(swapped)}"):
            return ast.copy_location(swapped, node)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._site(node, f"{_src(node)}  ->  drop not"):
            return node.operand
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        swap = {ast.Add: ast.Sub, ast.Sub: ast.Add}.get(type(node.op))
        if swap is not None:
            mutated = ast.BinOp(left=node.left, op=swap(), right=node.right)
            if self._site(node, f"{_src(node)}  ->  {_src(mutated)}"):
                return ast.copy_location(mutated, node)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        swap = {ast.Add: ast.Sub, ast.Sub: ast.Add}.get(type(node.op))
        if swap is not None:
            mutated = ast.AugAssign(target=node.target, op=swap(), value=node.value)
            if self._site(node, f"{_src(node)}  ->  {_src(mutated)}"):
                return ast.copy_location(mutated, node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Name) and func.id in _NAME_SWAPS:
            swap = _NAME_SWAPS[func.id]
            if self._site(node, f"{func.id}(...)  ->  {swap}(...)"):
                node.func = ast.copy_location(ast.Name(id=swap, ctx=ast.Load()), func)
                return node
        for i, keyword in enumerate(list(node.keywords)):
            if keyword.arg is not None and self._site(
                node, f"{_src(func)}(...): drop {keyword.arg}={_src(keyword.value)}"
            ):
                node.keywords = node.keywords[:i] + node.keywords[i + 1 :]
                return node
        if isinstance(func, ast.Name) and func.id in _SPEC_BUILDERS and len(node.args) >= 3:
            name = _src(node.args[0])
            effect = node.args[1]
            if _src(effect) != "Effect.HISTORY_ONLY" and self._site(
                node, f"{func.id}({name}, {_src(effect)})  ->  Effect.HISTORY_ONLY (no-op)"
            ):
                node.args[1] = ast.copy_location(
                    ast.Attribute(ast.Name("Effect", ast.Load()), "HISTORY_ONLY", ast.Load()),
                    effect,
                )
                return node
            arg = node.args[2]
            if not (isinstance(arg, ast.Constant) and arg.value is None) and self._site(
                node, f"{func.id}({name}, arg={_src(arg)})  ->  arg=None"
            ):
                node.args[2] = ast.copy_location(ast.Constant(None), arg)
                return node
        return node

    def visit_Dict(self, node: ast.Dict) -> ast.AST:
        self.generic_visit(node)
        for i, value in enumerate(list(node.values)):
            # A dispatch table's entry pointed at a function that does nothing.
            if isinstance(value, ast.Name) and value.id in self._functions:
                entry = node.keys[i]
                key = "**" if entry is None else _src(entry)
                if self._site(value, f"table {key}: {value.id}  ->  no-op"):
                    node.values[i] = ast.copy_location(ast.parse(_NO_OP, mode="eval").body, value)
                    return node
        return node

    def visit_Tuple(self, node: ast.Tuple) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load) and len(node.elts) >= 2:
            for i, element in enumerate(list(node.elts)):
                if self._site(node, f"{_src(node)[:70]}: drop {_src(element)[:40]}"):
                    node.elts = node.elts[:i] + node.elts[i + 1 :]
                    return node
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        # Type expressions (``tuple[bool, datetime]``) hold no behaviour; an index might.
        node.value = self.visit(node.value)
        if not isinstance(node.slice, ast.Tuple):
            node.slice = self.visit(node.slice)
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node  # an f-string's text is prose; its parts are left alone too

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        mutated: object
        if isinstance(value, bool):
            mutated = not value
        elif isinstance(value, int):
            mutated = value + 1
        elif isinstance(value, str) and " " not in value:
            mutated = value + "X"  # a name or a status; prose (messages, summaries) is skipped
        else:
            return node
        if self._site(node, f"{value!r}  ->  {mutated!r}"):
            return ast.copy_location(ast.Constant(mutated), node)
        return node


def _without_docstring(body: list[ast.stmt]) -> tuple[list[ast.stmt], list[ast.stmt]]:
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[:1], body[1:]
    return [], body


def module_path(module: str) -> Path:
    return ROOT / "onboarding" / "core" / f"{module}.py"


def _tree(module: str) -> ast.Module:
    return ast.parse(module_path(module).read_text(), filename=str(module_path(module)))


def mutants(module: str) -> list[Mutant]:
    """Every mutant of ``module``, numbered in a fixed order."""
    mutator = _Mutator(module, None)
    mutator.visit(_tree(module))
    keys: dict[str, int] = {}
    unique = []
    for m in mutator.found:
        # Two identical changes in one function: number the later ones so keys stay distinct.
        keys[m.key] = keys.get(m.key, 0) + 1
        change = m.change if keys[m.key] == 1 else f"{m.change}  #{keys[m.key]}"
        unique.append(Mutant(m.module, m.index, m.line, m.scope, change))
    return unique


def mutated_source(module: str, index: int) -> str:
    """The source of ``module`` with mutant ``index`` applied (as ``ast.unparse`` writes it)."""
    mutator = _Mutator(module, index)
    tree = ast.fix_missing_locations(mutator.visit(_tree(module)))
    if index >= len(mutator.found):
        raise IndexError(f"{module} has {len(mutator.found)} mutants, not {index + 1}")
    return ast.unparse(tree)


def diff(module: str, index: int) -> str:
    original = ast.unparse(_tree(module)).splitlines()
    mutated = mutated_source(module, index).splitlines()
    return "\n".join(
        difflib.unified_diff(original, mutated, "original", "mutant", n=1, lineterm="")
    )


# --- running ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    mutant: Mutant | None  # None: the unmutated baseline
    status: str  # killed, timeout, survived
    seconds: float


@dataclass
class Report:
    module: str
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def survivors(self) -> list[Mutant]:
        return sorted(
            (o.mutant for o in self.outcomes if o.status == "survived" and o.mutant),
            key=lambda m: m.index,
        )

    def equivalents(self) -> list[Mutant]:
        known = EQUIVALENT.get(self.module, {})
        return [m for m in self.survivors() if m.key in known]

    def scores(self) -> tuple[float, float]:
        total = len(self.outcomes)
        detected = self.count("killed") + self.count("timeout")
        real = total - len(self.equivalents())
        return 100.0 * detected / max(total, 1), 100.0 * detected / max(real, 1)


def _hypothesis_profile(examples: int) -> None:
    from hypothesis import Phase, settings

    if examples:  # cap what each test asks for: fewer examples can only let more mutants live
        asked = settings.__init__

        def capped(self: settings, parent: settings | None = None, **kwargs: Any) -> None:
            if isinstance(kwargs.get("max_examples"), int):
                kwargs["max_examples"] = min(kwargs["max_examples"], examples)
            asked(self, parent, **kwargs)

        settings.__init__ = capped  # type: ignore[method-assign]

    # No shrinking: a mutant is killed by the first failing example, however large.
    settings.register_profile(
        "mutation",
        database=None,
        derandomize=True,
        print_blob=False,
        phases=[Phase.explicit, Phase.generate],
        report_multiple_bugs=False,
        max_examples=examples or 100,  # 100: hypothesis's own default
    )
    settings.load_profile("mutation")


# Hypothesis examples per test in the children (0: as each test asks); set by --examples.
EXAMPLES = [100]


def _child(module: str, source: str | None, tests: Sequence[str], timeout: int) -> int:
    """In the forked child: load the (mutated) module, then run the tests; the exit code."""
    signal.alarm(timeout)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        _hypothesis_profile(EXAMPLES[0])
        if source is not None:
            name = f"{PACKAGE}.{module}"
            loaded = types.ModuleType(name)
            loaded.__file__ = str(module_path(module))
            sys.modules[name] = loaded
            exec(compile(source, str(module_path(module)), "exec"), loaded.__dict__)  # noqa: S102
            setattr(importlib.import_module(PACKAGE), module, loaded)
        import pytest

        # Plugins found by entry point (schemathesis, playwright, asyncio...) cost more than
        # most mutants' tests: the core's tests need none of them.
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        args = ["-x", "-q", "-p", "no:cacheprovider", "--noconftest", *tests]
        return int(pytest.main(args))
    except BaseException:  # the mutant does not even import: a test would fail
        return 1


def _fork(module: str, source: str | None, tests: Sequence[str], timeout: int) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = _child(module, source, tests, timeout)
        finally:
            os._exit(code)
    return pid


def _status(wait_status: int) -> str:
    if os.WIFSIGNALED(wait_status):
        return "timeout" if os.WTERMSIG(wait_status) == signal.SIGALRM else "killed"
    code = os.WEXITSTATUS(wait_status)
    if code == 0:
        return "survived"
    if code == 5:
        raise RuntimeError("no tests were collected: check MODULES")
    return "killed"


def run_all(
    jobs: Sequence[tuple[str, Mutant | None]],
    tests_for: Callable[[str], Sequence[str]],
    timeout_for: Callable[[str], int],
    workers: int,
    progress: Callable[[Outcome], None],
) -> list[Outcome]:
    """Run each (module, mutant) in a forked child, ``workers`` at a time."""
    pending = list(reversed(jobs))
    running: dict[int, tuple[Mutant | None, float]] = {}
    done: list[Outcome] = []
    while pending or running:
        while pending and len(running) < workers:
            module, mutant = pending.pop()
            source = mutated_source(module, mutant.index) if mutant else None
            pid = _fork(module, source, tests_for(module), timeout_for(module))
            running[pid] = (mutant, time.monotonic())
        pid, wait_status = os.wait()
        mutant, started = running.pop(pid)
        outcome = Outcome(mutant, _status(wait_status), time.monotonic() - started)
        done.append(outcome)
        progress(outcome)
    return done


def _preload() -> None:
    sys.path.insert(0, str(ROOT))
    for name in _PRELOAD:
        importlib.import_module(name)


def baseline(module: str, tests: Callable[[str], Sequence[str]]) -> float:
    """Run the module's tests unmutated: they must pass; returns how long they took."""
    started = time.monotonic()
    (outcome,) = run_all([(module, None)], tests, lambda m: 600, 1, lambda o: None)
    if outcome.status != "survived":
        raise SystemExit(f"the tests of {module} fail without any mutant: fix them first")
    return time.monotonic() - started


def _print_report(report: Report, seconds: float, full: bool = True) -> None:
    raw, real = report.scores()
    survivors = report.survivors()
    equivalent = EQUIVALENT.get(report.module, {})
    print(
        f"\n{report.module}: {len(report.outcomes)} mutants, {report.count('killed')} killed, "
        f"{report.count('timeout')} timeouts, {len(survivors)} survived "
        f"({len(report.equivalents())} equivalent): score {raw:.1f}% raw, "
        f"{real:.1f}% without equivalents  [{seconds:.0f} s]"
    )
    for m in survivors:
        tag = "equivalent" if m.key in equivalent else "SURVIVED  "
        print(f"  {tag} {m.module}.py:{m.line} #{m.index} {m.key}")
    stale = set(equivalent) - {m.key for m in survivors} if full else set()
    for key in sorted(stale):
        print(f"  (listed as equivalent but killed or gone: {key})")


def run_module(
    module: str,
    workers: int,
    only: Sequence[int] = (),
    tests: Callable[[str], Sequence[str]] = tests_for,
) -> tuple[Report, float]:
    """Every mutant of ``module`` (or those numbered ``only``) against its tests; the report
    and how long it took."""
    took = baseline(module, tests)
    timeout = int(3 * took + 10)
    listed = [m for m in mutants(module) if not only or m.index in only]
    print(f"{module}: {len(listed)} mutants; tests pass unmutated in {took:.1f} s; "
          f"timeout {timeout} s", flush=True)  # fmt: skip
    started = time.monotonic()
    finished = [0]

    def progress(outcome: Outcome) -> None:
        finished[0] += 1
        if outcome.status == "survived" and outcome.mutant is not None:
            print(f"  survived: #{outcome.mutant.index} {outcome.mutant.key}", flush=True)
        if finished[0] % 50 == 0:
            print(f"  {finished[0]}/{len(listed)}", flush=True)

    report = Report(module)
    report.outcomes = run_all(
        [(module, m) for m in listed], tests, lambda m: timeout, workers, progress
    )
    return report, time.monotonic() - started


def _figures(report: Report, seconds: float) -> dict[str, object]:
    raw, real = report.scores()
    return {
        "mutants": len(report.outcomes),
        "killed": report.count("killed"),
        "timeouts": report.count("timeout"),
        "survived": len(report.survivors()),
        "equivalent": len(report.equivalents()),
        "score_raw": round(raw, 1),
        "score_without_equivalents": round(real, 1),
        "survivors": [f"{m.module}.py:{m.line} {m.key}" for m in report.survivors()],
        "seconds": round(seconds),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)} (default: all)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--show", metavar="MODULE:INDEX", help="print one mutant as a diff")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--only", metavar="N,N", help="run only the mutants numbered so")
    parser.add_argument("--tests", nargs="+", metavar="PATH", help="run these tests instead")
    parser.add_argument(
        "--examples",
        type=int,
        default=EXAMPLES[0],
        help=f"hypothesis examples per test at most (default {EXAMPLES[0]}; 0: as written)",
    )
    args = parser.parse_args(argv)
    modules: list[str] = args.modules or list(MODULES)
    unknown = set(modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown modules {sorted(unknown)}; choose from {', '.join(MODULES)}")
    os.chdir(ROOT)  # the test paths are relative to the repository
    if args.show:
        module, _, index = args.show.partition(":")
        print(diff(module, int(index)))
        return 0
    if args.list:
        for module in modules:
            for m in mutants(module):
                print(f"{m.label:>20}  line {m.line:<4} {m.key}")
        return 0
    _preload()
    figures: dict[str, object] = {}
    EXAMPLES[0] = args.examples
    only = [int(n) for n in args.only.split(",")] if args.only else []
    chosen: list[str] = args.tests or []
    tests = (lambda m: chosen) if chosen else tests_for
    for module in modules:
        report, seconds = run_module(module, args.jobs, only, tests)
        _print_report(report, seconds, full=not only)
        figures[module] = _figures(report, seconds)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
