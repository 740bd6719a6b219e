"""mkdocs hook: the home page's "Where things stand" table, generated from its sources.

A status table written by hand goes stale (it once said the benchmarks were "not started" long
after they ran). So docs/index.md holds a placeholder line, `<!-- status:table ... -->`, and
this hook replaces it at build time with a table read from

- the decision records' front matter (`vrs/decisions/NNNN-*.md`): each record under its status;
- the test modules that subclass `ConformanceSuite`: the setups the one suite runs on;
- noxfile.py: every session with the first paragraph of its docstring, and whether plain `nox`
  runs it;
- docs/benchmarks/results.json (written by `nox -s bench`): how many ours-vs-raw rows meet
  their target, which do not, and the commit measured.

The prose around the table stays hand-written. The strict build fails if the placeholder is
missing. This module imports nothing from mkdocs, so that docs/test_site.py can check the
table against the same sources in the test lane, which has no mkdocs.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.site_status")

PLACEHOLDER = re.compile(r"^<!-- status:table\b.*?-->[ \t]*$", re.MULTILINE | re.DOTALL)
"""The comment in docs/index.md, on lines of its own, that the table replaces."""

STATUS_ORDER = ("proposed", "accepted", "superseded")
"""Open records first: they are what a reviewer is looking for."""

_RECORD = re.compile(r"^(\d{4})-[a-z0-9-]+\.md$")
_SKIPPED = frozenset({"__pycache__", "node_modules", "site", "build", "dist"})
_TEST_MODULE = re.compile(r"^test_\w*\.py$")


@dataclass(frozen=True)
class Record:
    number: str
    path: str  # repository path, e.g. vrs/decisions/0001-....md
    status: str | None
    title: str  # the heading without the number


@dataclass(frozen=True)
class Session:
    name: str
    summary: str
    in_plain_nox: bool


@dataclass(frozen=True)
class Setup:
    name: str  # the test class
    module: str  # repository path of its module


def decision_records(root: Path) -> list[Record]:
    """Every decision record with the status in its front matter and the claim in its title."""
    records = []
    for path in sorted((root / "vrs" / "decisions").glob("*.md")):
        number = _RECORD.match(path.name)
        if not number:
            continue
        text = path.read_text(encoding="utf-8")
        heading = next((line for line in text.splitlines() if line.startswith("# ")), "# ")
        title = heading.removeprefix("# ").removeprefix(number.group(1)).strip()
        status = _front_matter(text).get("status")
        records.append(Record(number.group(1), path.relative_to(root).as_posix(), status, title))
    return records


def _front_matter(text: str) -> dict[str, str | None]:
    """Flat `key: value` front matter (what the records use; the test lane has no YAML)."""
    if not text.startswith("---\n") or "\n---\n" not in text[3:]:
        return {}
    meta: dict[str, str | None] = {}
    for line in text[4 : text.index("\n---\n", 3)].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            value = value.split("#", 1)[0].strip().strip("\"'")
            meta[key.strip()] = None if value in ("", "null", "~") else value
    return meta


def nox_sessions(root: Path) -> list[Session]:
    """The sessions noxfile.py defines, read with `ast` (the docs build has no nox)."""
    tree = ast.parse((root / "noxfile.py").read_text(encoding="utf-8"))
    default: set[str] | None = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            ast.unparse(target) == "nox.options.sessions" for target in node.targets
        ):
            default = set(ast.literal_eval(node.value))
    sessions = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            if ast.unparse(call.func if call else decorator) != "nox.session":
                continue
            keywords = {k.arg: k.value for k in call.keywords} if call else {}
            name_node = keywords.get("name")
            name = ast.literal_eval(name_node) if name_node else node.name
            if default is not None:
                in_plain_nox = name in default
            else:
                flag = keywords.get("default")
                in_plain_nox = flag is None or bool(ast.literal_eval(flag))
            doc = (ast.get_docstring(node) or "").split("\n\n", 1)[0]
            summary = " ".join(doc.split()).replace("``", "`")
            sessions.append(Session(name, summary, in_plain_nox))
    return sessions


def conformance_setups(root: Path) -> list[Setup]:
    """Every test class that is a `ConformanceSuite`, directly or through a class beside it."""
    setups = []
    for path in _test_modules(root):
        text = path.read_text(encoding="utf-8")
        if "ConformanceSuite" not in text:
            continue
        classes = [node for node in ast.parse(text).body if isinstance(node, ast.ClassDef)]
        suites = {"ConformanceSuite"}
        for node in classes:  # in source order, so a base is known before its subclasses
            if any(ast.unparse(base).rsplit(".", 1)[-1] in suites for base in node.bases):
                suites.add(node.name)
                setups.append(Setup(node.name, path.relative_to(root).as_posix()))
    return setups


def _test_modules(root: Path) -> list[Path]:
    """Every `test_*.py` of the tree, not descending into hidden folders (virtualenvs, caches)
    or build output (the built site holds copies of the tests)."""
    found = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(
            d for d in subdirectories if not d.startswith(".") and d not in _SKIPPED
        )
        found += [Path(directory, n) for n in sorted(names) if _TEST_MODULE.match(n)]
    return found


def benchmark_headline(root: Path) -> str:
    """How many ours-vs-raw rows meet their target, which do not, and what was measured."""
    path = root / "docs" / "benchmarks" / "results.json"
    try:
        results: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no results yet: `nox -s bench` writes them"
    targeted = [row for row in results.get("rows", []) if row.get("target") is not None]
    over = [row for row in targeted if row.get("over_target")]
    near = [row for row in targeted if row.get("verdict") == "within_spread"]
    machine = results.get("machine", {})
    text = (
        f"{len(targeted) - len(over) - len(near)} of {len(targeted)} rows of ours vs raw "
        f"restate-sdk within their target of {results.get('target_ratio', 0):.2f}"
    )
    if near:
        text += f", {len(near)} more above it by less than their 95% interval"
    text += "."
    if over:
        text += " Over it: " + "; ".join(f"{row['name']} ({row['ratio']:.3f})" for row in over)
        text += "."
    text += f" Measured with `{results.get('command', 'nox -s bench')}`"
    if machine.get("commit"):
        text += f" at commit `{machine['commit']}`"
    if machine.get("cores"):
        text += f" on {machine['cores']} cores"
    if machine.get("quick"):
        text += " (a `--quick` smoke run: not a measurement)"
    return text + " ([results](benchmarks.md))"


def status_table(root: Path) -> str:
    """The Markdown table that replaces the placeholder on docs/index.md (a page at the root)."""
    rows = [("part", "state"), ("---", "---")]
    records = decision_records(root)
    groups = []
    others = sorted({r.status for r in records if r.status not in STATUS_ORDER}, key=str)
    for status in (*STATUS_ORDER, *others):  # an unknown status is shown (the build warns)
        chosen = [r for r in records if r.status == status]
        if not chosen:
            continue
        links = ", ".join(f'[{r.number}]({r.path} "{_attr(r.title)}")' for r in chosen)
        groups.append(f"{status or 'no status'} ({len(chosen)}): {links}")
    rows.append(("Decision records", "; ".join(groups) or "none yet"))
    by_module: dict[str, list[str]] = {}
    for setup in conformance_setups(root):
        by_module.setdefault(setup.module, []).append(f"`{setup.name}`")
    setups = [
        f"{', '.join(names)} ([`{Path(module).name}`]({module}))"
        for module, names in by_module.items()
    ]
    count = sum(len(names) for names in by_module.values())
    suite = (f"one suite, unchanged, in {count} setups: " + "; ".join(setups)) if setups else "none"
    rows.append(("Conformance suite", suite))
    for session in nox_sessions(root):
        summary = session.summary.rstrip(".")
        where = "" if session.in_plain_nox else "; not run by plain `nox`"
        rows.append((f"`nox -s {session.name}`", f"{summary}{where}."))
    rows.append(("Benchmarks", benchmark_headline(root)))
    return "\n".join(f"| {_cell(a)} | {_cell(b)} |" for a, b in rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _attr(text: str) -> str:
    return text.replace('"', "'")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_page_markdown(markdown: str, /, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != "index.md":
        return markdown
    if len(PLACEHOLDER.findall(markdown)) != 1:
        log.warning(
            "docs/index.md must hold the status placeholder `<!-- status:table -->` once, on "
            "lines of its own; the status table is generated there"
        )
        return markdown
    return PLACEHOLDER.sub(lambda _: status_table(_root(config)), markdown)
