"""Every ```python sample on the site runs, so the documentation cannot drift from the code.

The pages are the Markdown files the site publishes: ``docs/``, ``vrs/`` and ``spike/``. On a
page, the samples run in order in one namespace and one event loop, the way a reader follows
them: a later sample may use what an earlier one defined, and a sample may ``await`` at top
level. A sample that cannot run here (it needs a live restate-server, or code that has not
landed yet) is marked with an HTML comment on the line right before its fence, which the site
does not show:

    <!-- sample: skip (needs a running restate-server) -->

The reason in parentheses is required; a skipped sample is still compiled, and shows up as a
skipped test with its reason.

A page whose samples only make sense against a live server (a walkthrough with console
commands, worker output and files to save) names the test that runs them all instead, with one
comment anywhere on the page:

    <!-- samples: run by poc/tests/restate/test_docs_restate.py (why, or where) -->

Its samples are then not run here; they are compiled, the named test must exist and name the
page, and the page shows up as a skipped test saying which test runs its samples and in which
lane. That test finds the page's fences with `extract_fences`.

What a sample prints can be shown in the fence that follows it, marked the same way; the test
then compares the sample's standard output with that fence, line by line:

    <!-- sample: output -->
    ```text
    hello world
    ```

Other fences (console, toml, mermaid, ...) are never run.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import re
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE_DIRS = ("docs", "vrs", "spike")

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[A-Za-z0-9_+-]*)[^`]*$")
_SKIP = re.compile(r"^\s*<!--\s*sample:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
_OUTPUT = re.compile(r"^\s*<!--\s*sample:\s*output\s*-->\s*$")
_MARKER = re.compile(r"<!--\s*sample:")
_RUN_BY = re.compile(
    r"^\s*<!--\s*samples:\s*run by\s+(?P<test>[\w./-]+\.py)\s*(?:\((?P<where>[^)]+)\))?\s*-->\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Sample:
    """One fenced python block: where it starts, its code, why it is skipped (if it is), and
    the output it must print (if the page shows it)."""

    path: Path
    line: int  # 1-based line of the first code line
    code: str
    skip: str | None
    output: str | None = None


def _fence_at(lines: list[str], i: int, path: Path) -> tuple[str, int] | None:
    """If a fence opens at line ``i``: its language and the index of its closing line."""
    opened = _FENCE_OPEN.match(lines[i])
    if opened is None:
        return None
    closing = re.compile(rf"^{re.escape(opened['indent'])}```\s*$")
    end = i + 1
    while end < len(lines) and not closing.match(lines[end]):
        end += 1
    if end == len(lines):
        raise ValueError(f"{path}:{i + 1}: unclosed code fence")
    return opened["lang"], end


def _body(lines: list[str], start: int, end: int) -> str:
    return textwrap.dedent("\n".join(lines[start:end]))


@dataclass(frozen=True)
class Fence:
    """One fenced block of any language: where its code starts, its language, its code, and
    the line right before the fence (where markers go; empty for the first line)."""

    path: Path
    line: int  # 1-based line of the first code line
    lang: str
    code: str
    marker: str


def extract_fences(text: str, path: Path) -> list[Fence]:
    """Every fenced block of a Markdown text, in order (fences inside fences are code)."""
    lines = text.splitlines()
    fences: list[Fence] = []
    i = 0
    while i < len(lines):
        fence = _fence_at(lines, i, path)
        if fence is None:
            i += 1
            continue
        lang, end = fence
        marker = lines[i - 1].strip() if i > 0 else ""
        fences.append(Fence(path, i + 2, lang, _body(lines, i + 1, end), marker))
        i = end + 1
    return fences


def samples_run_by(text: str) -> tuple[str, str] | None:
    """The test that runs a page's samples (repository path) and where it runs, if the page
    names one with ``<!-- samples: run by ... -->``."""
    found = _RUN_BY.search(text)
    if found is None:
        return None
    return found["test"], (found["where"] or "").strip()


def extract_samples(text: str, path: Path) -> list[Sample]:
    """The ```python blocks of a Markdown text, in order, with their markers and output."""
    lines = text.splitlines()
    samples: list[Sample] = []
    i = 0
    while i < len(lines):
        fence = _fence_at(lines, i, path)
        if fence is None:
            i += 1
            continue
        lang, end = fence
        if lang == "python":
            marker = lines[i - 1] if i > 0 else ""
            skip = _SKIP.match(marker)
            if skip is None and _MARKER.search(marker):
                raise ValueError(
                    f"{path}:{i}: malformed sample marker {marker.strip()!r}; "
                    "write <!-- sample: skip (reason) -->"
                )
            output = None
            nxt = end + 1
            while nxt < len(lines) and not lines[nxt].strip():
                nxt += 1
            if nxt + 1 < len(lines) and _OUTPUT.match(lines[nxt]):
                shown = _fence_at(lines, nxt + 1, path)
                if shown is None:
                    raise ValueError(f"{path}:{nxt + 1}: an output marker must precede a fence")
                output = _body(lines, nxt + 2, shown[1])
            samples.append(
                Sample(
                    path,
                    i + 2,
                    _body(lines, i + 1, end),
                    skip["reason"].strip() if skip else None,
                    output,
                )
            )
        i = end + 1
    return samples


def _pages() -> list[Path]:
    pages: list[Path] = []
    for name in PAGE_DIRS:
        pages.extend(sorted((ROOT / name).rglob("*.md")))
    return [p for p in pages if not any(part.startswith(".") for part in p.parts)]


def _pages_with_samples() -> list[Path]:
    """Pages whose samples run here (not those that name another test for them)."""
    return [
        p
        for p in _pages()
        if samples_run_by(p.read_text(encoding="utf-8")) is None
        and extract_samples(p.read_text(encoding="utf-8"), p)
    ]


def _pages_run_elsewhere() -> list[Path]:
    return [p for p in _pages() if samples_run_by(p.read_text(encoding="utf-8")) is not None]


def _run_page(samples: list[Sample]) -> None:
    # One module per page, registered in sys.modules so that pydantic and typing can resolve
    # the names a sample defines, and one event loop for the samples that await at top level.
    # A sample may also call asyncio.run() itself: no loop is running between samples.
    module = types.ModuleType("docs_sample_page")
    sys.modules[module.__name__] = module
    loop = asyncio.new_event_loop()
    try:
        for sample in samples:
            # Pad with blank lines so that tracebacks name the Markdown file and its real line.
            source = "\n" * (sample.line - 1) + sample.code
            code = compile(
                source,
                str(sample.path.relative_to(ROOT)),
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                result = eval(code, module.__dict__)
                if inspect.iscoroutine(result):
                    loop.run_until_complete(result)
            if sample.output is not None:
                got = [line.rstrip() for line in printed.getvalue().strip().splitlines()]
                shown = [line.rstrip() for line in sample.output.strip().splitlines()]
                assert got == shown, (
                    f"{sample.path.relative_to(ROOT)}:{sample.line}: the sample printed "
                    f"{got!r}, the page shows {shown!r}"
                )
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        del sys.modules[module.__name__]


@pytest.mark.parametrize("page", _pages_with_samples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_python_samples_of_a_page_run_in_order(
    page: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Samples may write files (the POC's payment ledger, side effects): keep them in tmp_path.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORDER_POC_LEDGER", str(tmp_path / "ledger"))
    samples = extract_samples(page.read_text(encoding="utf-8"), page)
    _run_page([s for s in samples if s.skip is None])


def _skipped_samples() -> list[Sample]:
    return [
        s
        for page in _pages()
        for s in extract_samples(page.read_text(encoding="utf-8"), page)
        if s.skip is not None
    ]


def test_samples_marked_skip_are_reported_with_their_reasons() -> None:
    skipped = _skipped_samples()
    for sample in skipped:  # not run, but they must still be valid Python
        compile(sample.code, f"{sample.path}:{sample.line}", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if skipped:
        pytest.skip("; ".join(f"{s.path.relative_to(ROOT)}:{s.line}: {s.skip}" for s in skipped))


@pytest.mark.parametrize("page", _pages_run_elsewhere(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_page_whose_samples_another_test_runs_names_a_test_that_runs_them(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    named = samples_run_by(text)
    assert named is not None
    runner, where = named
    relative = page.relative_to(ROOT).as_posix()
    test_file = ROOT / runner
    assert test_file.is_file(), f"{relative} says its samples run in {runner}, which is missing"
    assert relative in test_file.read_text(encoding="utf-8"), (
        f"{runner} does not name {relative}: it cannot be the test that runs its samples"
    )
    fences = [f for f in extract_fences(text, page) if f.lang in ("python", "console", "text")]
    for fence in fences:
        if fence.lang == "python":
            compile(fence.code, f"{relative}:{fence.line}", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    kinds = ", ".join(
        f"{sum(f.lang == lang for f in fences)} {lang}"
        for lang in ("python", "console", "text")
        if any(f.lang == lang for f in fences)
    )
    pytest.skip(
        f"{relative}: its samples ({kinds}) run in {runner}" + (f", {where}" if where else "")
    )


def test_the_site_has_samples_to_run() -> None:
    assert _pages_with_samples(), "no ```python samples found: is the extractor broken?"


def test_the_extractor_finds_python_fences_with_their_lines_and_skip_markers() -> None:
    text = textwrap.dedent(
        """\
        # Title

        ```python
        x = 1
        ```

        ```console
        $ nox
        ```

        !!! note
            ```python
            y = x + 1
            ```

        <!-- sample: skip (needs a running restate-server) -->
        ```python
        import restate
        ```

        ```python
        print("hi")
        ```

        <!-- sample: output -->
        ```text
        hi
        ```
        """
    )
    samples = extract_samples(text, Path("page.md"))
    assert [(s.line, s.code, s.skip, s.output) for s in samples] == [
        (4, "x = 1", None, None),
        (13, "y = x + 1", None, None),
        (18, "import restate", "needs a running restate-server", None),
        (22, 'print("hi")', None, "hi"),
    ]


def test_a_page_can_name_the_test_that_runs_its_samples() -> None:
    text = "# Page\n\n<!-- samples: run by poc/tests/test_page.py (integration lane) -->\n"
    assert samples_run_by(text) == ("poc/tests/test_page.py", "integration lane")
    assert samples_run_by("# Page\n\n<!-- sample: skip (reason) -->\n") is None


def test_the_fence_extractor_finds_every_language_with_its_marker() -> None:
    text = "<!-- sample: output -->\n```text\nhi\n```\n\n```console\n$ nox\n```\n"
    fences = extract_fences(text, Path("page.md"))
    assert [(f.line, f.lang, f.code, f.marker) for f in fences] == [
        (3, "text", "hi", "<!-- sample: output -->"),
        (7, "console", "$ nox", ""),
    ]


def test_a_marker_without_a_reason_is_refused() -> None:
    text = "<!-- sample: skip -->\n```python\npass\n```\n"
    with pytest.raises(ValueError, match="malformed sample marker"):
        extract_samples(text, Path("page.md"))


def test_a_sample_whose_output_differs_from_the_page_fails() -> None:
    text = '```python\nprint("hello")\n```\n\n<!-- sample: output -->\n```text\nbye\n```\n'
    samples = extract_samples(text, ROOT / "page.md")
    with pytest.raises(AssertionError, match="the page shows"):
        _run_page(samples)
