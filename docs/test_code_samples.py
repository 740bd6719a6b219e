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
    return [p for p in _pages() if extract_samples(p.read_text(encoding="utf-8"), p)]


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


def test_a_marker_without_a_reason_is_refused() -> None:
    text = "<!-- sample: skip -->\n```python\npass\n```\n"
    with pytest.raises(ValueError, match="malformed sample marker"):
        extract_samples(text, Path("page.md"))


def test_a_sample_whose_output_differs_from_the_page_fails() -> None:
    text = '```python\nprint("hello")\n```\n\n<!-- sample: output -->\n```text\nbye\n```\n'
    samples = extract_samples(text, ROOT / "page.md")
    with pytest.raises(AssertionError, match="the page shows"):
        _run_page(samples)
