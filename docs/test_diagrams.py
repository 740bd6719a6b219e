"""Every ```mermaid diagram on the site parses with the mermaid the site ships.

A diagram is drawn in the reader's browser, so one that mermaid cannot parse builds fine and
shows an error instead of a picture (a `;` inside a sequence-diagram message did that: mermaid
11 reads it as the end of a statement). This test parses every ```mermaid block of the pages
(`docs/`, `vrs/`, `spike/`) with `mermaid.parse()`, in node, loading the very bundle the build
ships (docs/hooks/bundled_mermaid.py: the same pinned version, from the same cache). mermaid
needs a DOM even to parse (its sanitiser does), so the bundle runs inside jsdom.

jsdom comes from the npm registry with the npm client, pinned, installed once into
`.cache/jsdom/<version>/` (gitignored); npm checks every tarball against the integrity the
registry publishes. So this test needs node and npm, as the harness does. One node process
parses every diagram, in about a second once the downloads are cached.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE_DIRS = ("docs", "vrs", "spike")

JSDOM_VERSION = "26.1.0"
"""The newest jsdom that still runs on node 18 and 20."""

JSDOM_CACHE = ROOT / ".cache" / "jsdom" / JSDOM_VERSION

_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")

# argv: jsdom's directory, mermaid.min.js; stdin: a JSON list of diagram sources; stdout: one
# {ok, type | error} per source.
_PARSE_JS = r"""
const fs = require("fs");
const [jsdomDir, bundle] = process.argv.slice(1);
const { JSDOM, VirtualConsole } = require(jsdomDir);
const errors = [];
const virtualConsole = new VirtualConsole();
virtualConsole.on("jsdomError", (e) => errors.push(String(e.message)));
const { window } = new JSDOM("<!doctype html><body></body>", {
  runScripts: "dangerously", pretendToBeVisual: true, virtualConsole,
});
// Browser globals that jsdom lacks and some of mermaid's parsers use.
Object.assign(window, { TextEncoder, TextDecoder, structuredClone });
const script = window.document.createElement("script");
script.textContent = fs.readFileSync(bundle, "utf8");
window.document.head.appendChild(script);
if (!window.mermaid) {
  console.error("the bundle defined no `mermaid`: " + errors.join("; "));
  process.exit(2);
}
window.mermaid.initialize({ startOnLoad: false });
const sources = JSON.parse(fs.readFileSync(0, "utf8"));
(async () => {
  const results = [];
  for (const source of sources) {
    try {
      const parsed = await window.mermaid.parse(source);
      results.push(parsed ? { ok: true, type: parsed.diagramType } : { ok: false, error: "false" });
    } catch (e) {
      results.push({ ok: false, error: String((e && e.message) || e) });
    }
  }
  process.stdout.write(JSON.stringify(results));
})();
"""


@dataclass(frozen=True)
class Diagram:
    """One ```mermaid block: its page, the line of its opening fence, its source."""

    page: str
    line: int
    source: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def _diagrams() -> list[Diagram]:
    """Every ```mermaid block of the pages; fences inside other fences are not diagrams."""
    found = []
    for name in PAGE_DIRS:
        for path in sorted((ROOT / name).rglob("*.md")):
            lines = path.read_text(encoding="utf-8").splitlines()
            i = 0
            while i < len(lines):
                opened = _FENCE.match(lines[i])
                if opened is None:
                    i += 1
                    continue
                fence = opened["fence"]
                closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
                end = next(
                    (j for j in range(i + 1, len(lines)) if closing.match(lines[j])), len(lines)
                )
                if opened["info"].split()[:1] == ["mermaid"]:
                    source = textwrap.dedent("\n".join(lines[i + 1 : end]))
                    found.append(Diagram(path.relative_to(ROOT).as_posix(), i + 1, source))
                i = end + 1
    return found


DIAGRAMS = _diagrams()

# What broke the replay page's sequence diagram: the check must reject it.
SEMICOLON_IN_A_MESSAGE = "sequenceDiagram\n    A->>B: re-invoke; replay from the journal\n"


def _bundled_mermaid() -> ModuleType:
    path = ROOT / "docs" / "hooks" / "bundled_mermaid.py"
    spec = importlib.util.spec_from_file_location("bundled_mermaid", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bundled_mermaid"] = module
    spec.loader.exec_module(module)
    return module


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "the diagrams are parsed with node, and jsdom is installed with npm, which is not on "
            "PATH: install Node.js (it ships npm)"
        )
    return npm


def _jsdom() -> Path:
    """jsdom's package directory, installed with npm into the cache on first use."""
    package = JSDOM_CACHE / "node_modules" / "jsdom"
    try:
        if json.loads((package / "package.json").read_text())["version"] == JSDOM_VERSION:
            return package
    except (OSError, ValueError, KeyError):
        pass
    npm = _npm()
    JSDOM_CACHE.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".install-", dir=JSDOM_CACHE.parent))
    try:
        command = [npm, "install", "--prefix", str(staging), f"jsdom@{JSDOM_VERSION}"]
        command += ["--no-save", "--no-package-lock", "--ignore-scripts", "--no-audit", "--no-fund"]
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            pytest.fail(f"`npm install jsdom@{JSDOM_VERSION}` failed: {proc.stderr[-1500:]}")
        shutil.rmtree(JSDOM_CACHE, ignore_errors=True)
        staging.rename(JSDOM_CACHE)  # the cache only ever holds a complete install
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return package


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[str, Any]]:
    """mermaid.parse()'s verdict on every diagram and on the known-bad sample, by source."""
    hook = _bundled_mermaid()
    try:
        bundle = hook.ensure_mermaid(ROOT) / "mermaid.min.js"
    except hook.MermaidUnavailable as exc:
        pytest.fail(str(exc))
    node = shutil.which("node")
    if node is None:
        pytest.fail("the diagrams are parsed with node, which is not on PATH: install Node.js")
    sources = sorted({d.source for d in DIAGRAMS} | {SEMICOLON_IN_A_MESSAGE})
    proc = subprocess.run(
        [node, "-e", _PARSE_JS, str(_jsdom()), str(bundle)],
        input=json.dumps(sources),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(zip(sources, json.loads(proc.stdout), strict=True))


@pytest.mark.parametrize("diagram", DIAGRAMS, ids=str)
def test_a_diagram_parses_with_the_shipped_mermaid(
    diagram: Diagram, parsed: dict[str, dict[str, Any]]
) -> None:
    result = parsed[diagram.source]
    assert result["ok"], f"{diagram}: {result.get('error')}"


def test_the_check_rejects_a_semicolon_inside_a_sequence_message(
    parsed: dict[str, dict[str, Any]],
) -> None:
    result = parsed[SEMICOLON_IN_A_MESSAGE]
    assert not result["ok"]
    assert "Parse error on line 2" in result["error"]
