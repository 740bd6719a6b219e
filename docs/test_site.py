"""The parts of the site that the build generates agree with their sources.

- The home page's status table (docs/hooks/site_status.py) against the decision records'
  front matter, noxfile.py, the conformance test modules and docs/benchmarks/results.json,
  each read here independently of the hook.
- The review links (docs/hooks/repo_pages.py): with `repo_url` set, an edit link on every
  page to its own file and a prefilled new-issue link on every decision record; without it,
  neither.
- mermaid shipped with the site (docs/hooks/bundled_mermaid.py), never committed.

The status tests need no mkdocs and run in the test lane. The others run mkdocs' own loading
(config, hooks, files, pages, `on_page_markdown`) without rendering the whole site; they need
the docs extra and are run by `nox -s docs` after the build.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DECISIONS = ROOT / "vrs" / "decisions"
_RECORD = re.compile(r"^(\d{4})-[a-z0-9-]+\.md$")


@functools.cache
def _hook(name: str) -> types.ModuleType:
    """A module of docs/hooks/, loaded as mkdocs loads hooks: from its path."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _table_rows() -> dict[str, str]:
    """The generated status table, as {first cell: second cell}."""
    table = _hook("site_status").status_table(ROOT)
    rows = {}
    for line in table.splitlines():
        first, second = line.strip().removeprefix("| ").removesuffix(" |").split(" | ", 1)
        rows[first] = second
    return rows


def _records() -> dict[str, tuple[str, str, str]]:
    """{number: (repository path, front-matter status, title without the number)}."""
    records = {}
    for path in sorted(DECISIONS.glob("*.md")):
        if not _RECORD.match(path.name):
            continue
        text = path.read_text(encoding="utf-8")
        front = text.split("\n---\n", 1)[0]
        status = re.search(r"^status:\s*[\"']?(\w+)", front, re.MULTILINE)
        heading = re.search(r"^# \d{4} (.+)$", text, re.MULTILINE)
        assert status and heading, path.name
        records[path.name[:4]] = (f"vrs/decisions/{path.name}", status[1], heading[1].strip())
    return records


# The status table ------------------------------------------------------------------------


def test_the_home_page_has_the_status_placeholder_once_and_no_hand_written_status_table() -> None:
    text = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert len(_hook("site_status").PLACEHOLDER.findall(text)) == 1
    section = text.split("## Where things stand", 1)[1].split("\n## ", 1)[0]
    assert [line for line in section.splitlines() if line.startswith("|")] == []


def test_the_status_table_lists_each_decision_record_under_its_front_matter_status() -> None:
    cell = _table_rows()["Decision records"]
    listed = {}
    for group in cell.split("; "):
        status, count, links = re.fullmatch(r"([\w ]+) \((\d+)\): (.+)", group).groups()
        found = re.findall(r'\[(\d{4})\]\(([^ )]+) "([^"]*)"\)', links)
        assert len(found) == int(count), group
        for number, path, title in found:
            listed[number] = (path, status, title)
    assert listed == {n: (p, s, t.replace('"', "'")) for n, (p, s, t) in _records().items()}


def _nox_sessions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, bool]]:
    """(name, docstring, run by plain `nox`) of noxfile.py's sessions, by running it against a
    stand-in `nox` that records them (the hook reads them with `ast` instead)."""
    recorded: list[tuple[str, Callable[..., object], dict[str, Any]]] = []

    def session(func: Callable[..., object] | None = None, **kwargs: Any) -> Any:
        if func is None:
            return lambda f: session(f, **kwargs)
        recorded.append((kwargs.get("name", func.__name__), func, kwargs))
        return func

    nox = types.ModuleType("nox")
    nox.session = session  # type: ignore[attr-defined]
    nox.options = types.SimpleNamespace(sessions=None)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nox", nox)
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    default = nox.options.sessions  # type: ignore[attr-defined]
    sessions = []
    for name, func, kwargs in recorded:
        plain = name in default if default is not None else kwargs.get("default", True)
        sessions.append((name, (func.__doc__ or "").strip(), bool(plain)))
    return sessions


def test_the_status_table_lists_every_nox_session_and_whether_plain_nox_runs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = _table_rows()
    sessions = _nox_sessions(monkeypatch)
    assert sessions
    listed = {key.removeprefix("`nox -s ").removesuffix("`") for key in rows if "nox -s" in key}
    assert listed == {name for name, _, _ in sessions}
    for name, doc, plain in sessions:
        cell = rows[f"`nox -s {name}`"]
        first_words = " ".join(doc.split()[:4]).replace("``", "`")
        assert cell.startswith(first_words), (name, cell)
        assert ("not run by plain `nox`" in cell) == (not plain), (name, cell)


def _conformance_classes(paths: list[Path]) -> Iterator[tuple[str, str]]:
    for path in paths:
        suites = {"ConformanceSuite"}
        for name, base in re.findall(r"^class (\w+)\(([\w.]+)\):", path.read_text(), re.M):
            if base.rsplit(".", 1)[-1] in suites:
                suites.add(name)
                yield name, path.relative_to(ROOT).as_posix()


def test_the_status_table_names_every_conformance_setup() -> None:
    expected = set()
    for directory, subdirectories, names in os.walk(ROOT):
        # Not virtualenvs and caches (hidden), nor the built site's copies of the tests.
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".") and d != "site"]
        paths = [Path(directory, n) for n in names if n.startswith("test_") and n.endswith(".py")]
        expected.update(_conformance_classes(paths))
    assert expected, "no test module subclasses ConformanceSuite"
    cell = _table_rows()["Conformance suite"]
    named = set()
    for names, module in re.findall(r"((?:`\w+`(?:, )?)+) \(\[`[\w.]+`\]\(([^)]+)\)\)", cell):
        named.update((name, module) for name in re.findall(r"`(\w+)`", names))
    assert named == expected
    assert f"in {len(expected)} setups" in cell


def test_the_status_table_states_the_benchmark_results_and_the_commit_measured() -> None:
    results = json.loads((ROOT / "docs" / "benchmarks" / "results.json").read_text())
    targeted = [row for row in results["rows"] if row["target"] is not None]
    over = [row for row in targeted if row["over_target"]]
    near = [row for row in targeted if row["verdict"] == "within_spread"]
    cell = _table_rows()["Benchmarks"]
    assert cell.startswith(f"{len(targeted) - len(over) - len(near)} of {len(targeted)} rows ")
    if near:
        assert f", {len(near)} more above it by less than their 95% interval." in cell
    for row in over:
        assert f"{row['name']} ({row['ratio']:.3f})" in cell
    assert f"at commit `{results['machine']['commit']}`" in cell
    assert "[results](benchmarks.md)" in cell


def test_each_restate_latency_ratio_carries_its_interval_on_the_benchmarks_page() -> None:
    results = json.loads((ROOT / "docs" / "benchmarks" / "results.json").read_text())
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    latency = [
        row
        for row in results["rows"]
        if row["group"] == "restate"
        and row["metric"] in ("latency_median", "latency_p90", "per_step")
    ]
    assert latency
    for row in latency:
        low, high = row["extra"]["ratio_ci95"]
        assert low <= row["ratio"] <= high, row["name"]
        line = next(line for line in page.splitlines() if line.startswith(f"| {row['name']} |"))
        assert f"{row['ratio']:.2f}" in line and f"({low:.2f}-{high:.2f})" in line, line


def test_each_targeted_row_shows_its_verdict_against_the_target_spread_included() -> None:
    results = json.loads((ROOT / "docs" / "benchmarks" / "results.json").read_text())
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    marks = {"within": "✓", "within_spread": "≈", "over": "✗"}
    targeted = [row for row in results["rows"] if row["target"] is not None]
    assert targeted
    for row in targeted:
        target = row["target"]
        interval = row["extra"].get("ratio_ci95")
        if row["ratio"] <= target:
            expected = "within"
        elif interval is not None and interval[0] <= target:
            expected = "within_spread"
        else:
            expected = "over"
        assert row["verdict"] == expected, row["name"]
        assert row["over_target"] == (expected == "over"), row["name"]
        line = next(line for line in page.splitlines() if line.startswith(f"| {row['name']} |"))
        assert f"{row['ratio']:.2f} {marks[expected]}" in line, line


# mkdocs' own loading, for the review links and the shipped mermaid -------------------------

REPO = "https://forge.example/team/durable-workflow-spike"


@pytest.fixture(scope="module", params=[None, REPO], ids=["no repo_url", "repo_url set"])
def site(request: pytest.FixtureRequest) -> tuple[Any, Any, dict[str, Any]]:
    """(config, files, {src_uri: page after every plugin's on_page_markdown})."""
    pytest.importorskip("mkdocs", reason="needs the docs extra (nox -s docs runs this)")
    from mkdocs.config import load_config
    from mkdocs.structure.files import get_files
    from mkdocs.structure.pages import Page

    overrides = {"repo_url": request.param} if request.param else {}
    config = load_config(str(ROOT / "mkdocs.yml"), **overrides)
    config = config.plugins.on_config(config)
    files = config.plugins.on_files(get_files(config), config=config)
    pages = {}
    for file in files.documentation_pages():
        page = Page(None, file, config)
        page.read_source(config)
        page.markdown = config.plugins.on_page_markdown(
            page.markdown, page=page, config=config, files=files
        )
        pages[file.src_uri] = page
    return config, files, pages


def _repository_path(src_uri: str) -> str:
    return src_uri if src_uri.split("/", 1)[0] in ("vrs", "spike") else f"docs/{src_uri}"


def test_every_page_links_to_its_own_file_for_editing_only_once_repo_url_is_set(
    site: tuple[Any, Any, dict[str, Any]],
) -> None:
    config, _, pages = site
    assert "content.action.edit" in config.theme["features"]
    for src_uri, page in pages.items():
        if not config.repo_url:
            assert page.edit_url is None, src_uri
            continue
        path = _repository_path(src_uri)
        assert (ROOT / path).is_file(), f"{src_uri}: the edit link's target {path} is no file"
        assert page.edit_url == f"{REPO}/edit/main/{path}", src_uri


def test_each_decision_record_links_to_a_new_issue_about_it_only_once_repo_url_is_set(
    site: tuple[Any, Any, dict[str, Any]],
) -> None:
    config, _, pages = site
    records = _records()
    assert records
    for number, (path, status, title) in records.items():
        links = re.findall(r"\[Comment on this proposal\]\(([^)]+)\)", pages[path].markdown)
        if not config.repo_url:
            assert links == [], number
            continue
        assert len(links) == 1, number
        url = urlsplit(links[0])
        assert f"{url.scheme}://{url.netloc}{url.path}" == f"{REPO}/issues/new"
        query = parse_qs(url.query)
        assert query["title"] == [f"{number}: {title}"]
        assert f"`{path}`, status: {status}" in query["body"][0]


def test_the_home_page_shows_the_status_table_where_the_placeholder_was(
    site: tuple[Any, Any, dict[str, Any]],
) -> None:
    _, _, pages = site
    markdown = pages["index.md"].markdown
    assert "<!-- status:table" not in markdown
    assert _hook("site_status").status_table(ROOT) in markdown


def test_a_gitlab_repository_gets_gitlab_s_new_issue_form() -> None:
    pytest.importorskip("mkdocs", reason="needs the docs extra (nox -s docs runs this)")
    url = urlsplit(_hook("repo_pages").new_issue_url("https://gitlab.example/g/p/", "0001: x", "b"))
    assert url.path == "/g/p/-/issues/new"
    assert parse_qs(url.query) == {"issue[title]": ["0001: x"], "issue[description]": ["b"]}


def test_the_site_ships_the_pinned_mermaid_and_loads_it_on_every_page(
    site: tuple[Any, Any, dict[str, Any]],
) -> None:
    config, files, _ = site
    hook = _hook("bundled_mermaid")
    script = f"{hook.SITE_DIR}/mermaid.min.js"
    assert script in [str(s) for s in config.extra_javascript]
    shipped = files.get_file_from_path(script)
    assert shipped is not None
    # The browser bundle: it defines the global that mkdocs-material looks for before it
    # would fall back to its CDN copy.
    assert 'globalThis["mermaid"]' in Path(shipped.abs_src_path).read_text(encoding="utf-8")
    assert files.get_file_from_path(f"{hook.SITE_DIR}/LICENSE") is not None


def test_git_ignores_the_mermaid_cache() -> None:
    cached = _hook("bundled_mermaid").CACHE_DIR / "11.0.0" / "mermaid.min.js"
    proc = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", str(cached)], cwd=ROOT, check=False
    )
    assert proc.returncode == 0, f"{cached} is not gitignored"
