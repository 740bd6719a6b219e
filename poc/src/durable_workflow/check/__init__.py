"""A static checker for workflow bodies: ``python -m durable_workflow.check PATHS``.

A workflow body is replayed: it must make the same decisions every time it runs. The checker
finds the calls that break that (wall-clock time, randomness, uuids, real sleeps, unjournaled
concurrency) inside functions attached with ``@<workflow>.body`` (and ``<workflow>.body(fn)``),
including functions nested in them (compensations, finalizers), and names the durable
alternative. Add ``# dw: ignore`` to a line to accept it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Finding", "check_source", "check_paths", "RULES"]

# qualified call -> (rule code, what to use instead)
RULES: dict[str, tuple[str, str]] = {}
for _name in (
    "datetime.datetime.now",
    "datetime.datetime.utcnow",
    "datetime.datetime.today",
    "datetime.date.today",
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.perf_counter",
    "time.perf_counter_ns",
    "time.localtime",
    "time.gmtime",
):
    RULES[_name] = ("DW001", "use `await durable_workflow.now()` (journaled time)")
for _name in ("random", "secrets", "os.urandom", "numpy.random"):
    RULES[_name] = ("DW002", "use `durable_workflow.random()` (seeded per execution)")
for _name in ("uuid.uuid1", "uuid.uuid4"):
    RULES[_name] = ("DW003", "use `durable_workflow.uuid4()` (deterministic per execution)")
for _name in ("asyncio.sleep", "time.sleep", "anyio.sleep", "trio.sleep"):
    RULES[_name] = ("DW004", 'use `await DurableClock.sleep("name", duration)` (durable timer)')
for _name in (
    "asyncio.gather",
    "asyncio.create_task",
    "asyncio.ensure_future",
    "asyncio.wait",
    "asyncio.wait_for",
    "asyncio.as_completed",
    "asyncio.TaskGroup",
    "asyncio.timeout",
):
    RULES[_name] = (
        "DW005",
        "use `all_of(name, steps)` to wait for all (or `all_settled` for every outcome), "
        "`race_all(name, steps)` for the first (concurrency in a body must be journaled by "
        "the engine)",
    )


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: where, which rule, what was called and what to use instead."""

    path: str
    line: int
    col: int
    code: str
    call: str
    body: str
    advice: str

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}:{self.col}: {self.code} {self.call}() in workflow body "
            f"{self.body!r}: {self.advice}"
        )


def _rule_for(qualified: str) -> tuple[str, str] | None:
    parts = qualified.split(".")
    for end in range(len(parts), 0, -1):
        rule = RULES.get(".".join(parts[:end]))
        if rule is not None:
            return rule
    return None


class _Imports(ast.NodeVisitor):
    """Maps local names to the qualified names they were imported as."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            local = alias.asname or alias.name.split(".")[0]
            self.aliases[local] = alias.name if alias.asname else alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        # A relative import names a project module, never one of the flagged ones.
        module = ("." * node.level) + (node.module or "")
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _is_body_decorator(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "body"


def _body_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    functions = {
        n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    bodies: list[ast.FunctionDef | ast.AsyncFunctionDef] = [
        f for f in functions.values() if any(_is_body_decorator(d) for d in f.decorator_list)
    ]
    for node in ast.walk(tree):  # workflow.body(fn)
        if (
            isinstance(node, ast.Call)
            and _is_body_decorator(node.func)
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in functions
        ):
            bodies.append(functions[node.args[0].id])
    return bodies


def check_source(source: str, path: str = "<string>") -> list[Finding]:
    """Check one module's source; return its findings in line order."""
    tree = ast.parse(source, filename=path)
    imports = _Imports()
    imports.visit(tree)
    lines = source.splitlines()
    findings: list[Finding] = []
    for body in _body_functions(tree):
        for node in ast.walk(body):
            if not isinstance(node, ast.Call):
                continue
            dotted = _dotted(node.func)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            qualified = imports.aliases.get(head, head) + (f".{rest}" if rest else "")
            rule = _rule_for(qualified)
            if rule is None:
                continue
            line_text = lines[node.lineno - 1] if node.lineno <= len(lines) else ""
            if "dw: ignore" in line_text:
                continue
            findings.append(
                Finding(path, node.lineno, node.col_offset + 1, rule[0], dotted, body.name, rule[1])
            )
    return sorted(findings, key=lambda f: (f.line, f.col))


def check_paths(paths: list[str]) -> list[Finding]:
    """Check ``.py`` files and directories (recursively)."""
    findings: list[Finding] = []
    for raw in paths:
        root = Path(raw)
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for file in files:
            findings.extend(check_source(file.read_text(encoding="utf-8"), str(file)))
    return findings
