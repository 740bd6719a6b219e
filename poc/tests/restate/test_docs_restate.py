"""docs/restate.md, followed the way a reader follows it, against a real restate-server.

The page ("Running on Restate") is a walkthrough: files to save, console commands to type, and
what the worker's terminal shows. Its samples cannot run in the docs lane, so the page says
(``<!-- samples: run by ... -->``) that this test runs them, and docs/test_code_samples.py
reports it so. Here every fence of the page runs, in order:

- a ```python block starting with ``# <name>.py`` is saved under that name in a fresh
  directory, the reader's project;
- a ```console block is a sequence of ``$ `` commands (with ``\\`` continuation lines), each
  followed by what it prints. The commands run in bash in that directory, with this Python's
  ``bin`` first on ``PATH`` (so ``python`` is the interpreter running the tests), and what each
  one prints on stdout is compared with the page, line by line, where ``...`` stands for any
  text and a line of only ``...`` for any number of lines. curl's answers end without a newline,
  so each command's output is taken on its own. Stderr (hypercorn's log, curl's progress meter,
  the CLI's timing line) is not compared: the page leaves it out;
- a ```text block marked ``<!-- sample: worker output -->`` is what the worker's terminal
  shows: its lines must appear, in that order, in what the worker printed so far;
- ```mermaid blocks are diagrams, parsed by docs/test_diagrams.py.

The page's addresses (ingress 8080, admin 9070, worker 9080) are moved to free ports of the
server this test starts with the harness's ``restate_server_factory``. Commands that do not
return are handled by what they are: ``python -m restate_harness up`` runs in a test of its
own (its output compared, then stopped with Ctrl-C, SIGINT); ``python -m durable_workflow.restate
serve`` is started, compared once it says ``ready``, kept running for the rest of the page and
stopped with SIGTERM at the end. Two install commands are not run as written:
``pip install -e '.[restate]'`` is checked against this environment (the extra exists in
pyproject.toml and every one of its requirements is installed), and ``npm install --global
@restatedev/restate@<version>`` runs with ``--prefix .cache/restate-cli/<version>`` instead of
``--global`` and without install scripts, once (the Restate CLI is cached there, gitignored,
like the docs' other npm downloads).

Every process started here is stopped by its PID before the test ends.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement

from restate_harness import RESTATE_SERVER_VERSION, RestateServer
from restate_harness.pytest_plugin import RestateServerFactory

ROOT = Path(__file__).resolve().parents[3]
PAGE_PATH = "docs/restate.md"
PAGE = ROOT / PAGE_PATH

PAGE_PORTS = {"ingress": "8080", "admin": "9070", "worker": "9080"}
"""The ports the page uses, by what listens there."""

_PORT = re.compile(r"(127\.0\.0\.1:|--ingress-port |--admin-port )(8080|9070|9080)\b")
_FILE = re.compile(r"^# (?P<name>[\w-]+\.py)$")
_SEPARATOR = "<<end of a docs command>>"
_WORKER_OUTPUT = "<!-- sample: worker output -->"
CLI_CACHE = ROOT / ".cache" / "restate-cli"
STARTUP_TIMEOUT = 60.0


def _load_sample_helpers() -> ModuleType:
    """docs/test_code_samples.py, for its fence extractor (docs/ is not a package)."""
    name = "docs_test_code_samples"
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "test_code_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


SAMPLES = _load_sample_helpers()


# -- the page, as steps -----------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One ``$`` command of a console block and the lines the page shows it printing."""

    line: int
    text: str
    shown: list[str]

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text.replace("\\\n", " "))

    @property
    def kind(self) -> str:
        argv = self.argv
        if argv[:3] == ["pip", "install", "-e"]:
            return "pip install"
        if argv[:2] == ["npm", "install"] and "--global" in argv:
            return "npm install"
        if argv[:3] == ["python", "-m", "restate_harness"] and argv[3:4] == ["up"]:
            return "dev server"
        if argv[:3] == ["python", "-m", "durable_workflow.restate"] and argv[3:4] == ["serve"]:
            return "worker"
        return "shell"


@dataclass(frozen=True)
class Step:
    """One fence of the page: a file to save, commands to run, or the worker's output."""

    line: int
    kind: str  # "file", "commands", "worker output"
    name: str = ""
    code: str = ""
    commands: list[Command] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)


def _commands(code: str, first_line: int) -> list[Command]:
    commands: list[Command] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            raise ValueError(f"{PAGE_PATH}:{first_line + i}: expected a '$ ' command, got {line!r}")
        start = i
        text = [line[2:]]
        while text[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            text.append(lines[i])
        i += 1
        shown: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        commands.append(Command(first_line + start, "\n".join(text), shown))
    return commands


def page_steps(text: str) -> list[Step]:
    """The page's fences as steps, in order; a fence this test cannot run is an error."""
    steps: list[Step] = []
    for fence in SAMPLES.extract_fences(text, PAGE):
        where = f"{PAGE_PATH}:{fence.line}"
        if fence.lang == "mermaid":
            continue
        if fence.lang == "python":
            named = _FILE.match(fence.code.splitlines()[0] if fence.code else "")
            if named is None:
                raise ValueError(f"{where}: a python sample here starts with '# <file>.py'")
            steps.append(Step(fence.line, "file", name=named["name"], code=fence.code + "\n"))
        elif fence.lang == "console":
            steps.append(Step(fence.line, "commands", commands=_commands(fence.code, fence.line)))
        elif fence.lang == "text" and fence.marker == _WORKER_OUTPUT:
            steps.append(Step(fence.line, "worker output", shown=fence.code.splitlines()))
        else:
            raise ValueError(f"{where}: a ```{fence.lang} block this test does not know how to run")
    return steps


# -- comparing what was printed with what the page shows ----------------------------------------


def _line_matches(shown: str, got: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in shown.rstrip().split("..."))
    return re.fullmatch(pattern, got.rstrip()) is not None


def lines_match(shown: Sequence[str], got: Sequence[str]) -> bool:
    """Whether printed lines are what the page shows (``...``: any text, or any lines)."""
    if not shown:
        return not got
    if shown[0].strip() == "...":
        return any(lines_match(shown[1:], got[i:]) for i in range(len(got) + 1))
    return bool(got) and _line_matches(shown[0], got[0]) and lines_match(shown[1:], got[1:])


def _printed(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _in_order(shown: Sequence[str], got: Sequence[str]) -> bool:
    at = 0
    for line in shown:
        while at < len(got) and not _line_matches(line, got[at]):
            at += 1
        if at == len(got):
            return False
        at += 1
    return True


def test_the_output_comparison_takes_dots_for_any_text_or_any_lines() -> None:
    assert lines_match(["pid ...", "...", "end"], ["pid 42", "a", "b", "end"])
    assert lines_match(["...", "end"], ["end"])
    assert not lines_match(["pid ...", "end"], ["pid 42", "extra", "end"])
    assert not lines_match(['{"accepted":true}'], ['{"accepted":false}'])
    assert _in_order(
        ["[b-3] hold ...", "[b-3] release"], ["x", "[b-3] hold 1", "y", "[b-3] release"]
    )
    assert not _in_order(["b", "a"], ["a", "b"])


# -- the reader's machine ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_of(url: str) -> str:
    return url.rsplit(":", 1)[1].rstrip("/")


def localized(text: str, ports: dict[str, str]) -> str:
    """The page's text with its ports replaced by this run's (those ``ports`` names)."""
    by_page_port = {PAGE_PORTS[what]: port for what, port in ports.items()}
    return _PORT.sub(lambda m: m[1] + by_page_port.get(m[2], m[2]), text)


def _environment(path_first: Sequence[Path]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RESTATE_", "DW_")) and k != "PYTHONPATH"
    }
    env["PATH"] = os.pathsep.join([*map(str, path_first), env.get("PATH", "")])
    env["DO_NOT_TRACK"] = "1"  # the Restate CLI's telemetry switch
    return env


def _stop(proc: subprocess.Popen[Any], sig: signal.Signals, timeout: float = 30.0) -> int:
    """Stop a process this test started, by its PID: ``sig``, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
    return proc.returncode


class Printed:
    """The stdout of a long-running process, line by line, read in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.ended = False
        """The process closed its stdout (it exited)."""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip())
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def wait_for(self, done: Callable[[list[str]], bool], timeout: float) -> list[str]:
        """Wait until ``done(lines)`` holds, the output ends or the timeout passes; return the
        lines so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(self.lines) and not self.ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.2))
            return list(self.lines)


def _start(command: Command, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """Start a command that keeps running; its stderr goes to ``log``."""
    with log.open("w") as stderr:
        # exec: the PID is the command's own, so that signals reach it.
        return subprocess.Popen(
            ["bash", "-c", "exec " + command.text],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
        )


def _run_shell(commands: Sequence[Command], cwd: Path, env: dict[str, str]) -> None:
    """Run the commands in one bash and compare what each prints with the page."""
    script = "".join(f"{c.text}\nprintf '\\n%s %d\\n' '{_SEPARATOR}' $?\n" for c in commands)
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its group: bash and what it started
        proc.communicate()
        raise
    pieces = out.split(_SEPARATOR)
    assert len(pieces) == len(commands) + 1, f"bash stopped early: {out}\n{err}"
    for i, command in enumerate(commands):
        printed = _printed(pieces[i])
        if i > 0:  # this piece starts with the previous command's exit status
            status, printed = printed[0].strip(), printed[1:]
            assert status == "0", f"{PAGE_PATH}:{commands[i - 1].line} failed: {err}"
        assert lines_match(command.shown, printed), (
            f"{PAGE_PATH}:{command.line}: `{command.text}` printed {printed!r}, "
            f"the page shows {command.shown!r}\nstderr: {err}"
        )
    status = _printed(pieces[-1])[0].strip()
    assert status == "0", f"{PAGE_PATH}:{commands[-1].line} failed: {err}"


def _check_pip_install(command: Command) -> None:
    """``pip install -e '.[extra]'``: the extra exists, and this environment has it all."""
    target = command.argv[3]
    extra = re.fullmatch(r"\.\[(?P<extra>[\w-]+)\]", target)
    assert extra is not None, f"{PAGE_PATH}:{command.line}: expected .[<extra>], got {target!r}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    name = pyproject["project"]["name"]
    extras = pyproject["project"]["optional-dependencies"]
    assert extra["extra"] in extras, f"{PAGE_PATH}:{command.line}: no extra {extra['extra']!r}"
    required = [
        Requirement(r)
        for r in importlib.metadata.requires(name) or []
        if Requirement(r).marker is not None
        and Requirement(r).marker.evaluate({"extra": extra["extra"]})
    ]
    assert required, f"the installed {name} declares nothing for [{extra['extra']}]"
    for requirement in required:
        version = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)


def _restate_cli(command: Command, cwd: Path, env: dict[str, str]) -> Path:
    """The page's ``npm install --global @restatedev/restate@<version>``, into the cache."""
    argv = command.argv
    package = argv[-1]
    assert package == f"@restatedev/restate@{RESTATE_SERVER_VERSION}", (
        f"{PAGE_PATH}:{command.line}: the CLI should match the server the harness runs "
        f"(restate-server {RESTATE_SERVER_VERSION}), not {package}"
    )
    prefix = CLI_CACHE / RESTATE_SERVER_VERSION
    binary = prefix / "node_modules" / ".bin" / "restate"
    if not binary.exists():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed (as for the harness) to install the Restate CLI"
        CLI_CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".install-", dir=CLI_CACHE))
        try:
            local = [a if a != "--global" else f"--prefix={staging}" for a in argv[1:]]
            subprocess.run(
                [npm, *local, "--ignore-scripts", "--no-audit", "--no-fund"],
                cwd=cwd,
                env=env,
                check=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=600,
            )
            shutil.rmtree(prefix, ignore_errors=True)
            staging.rename(prefix)  # the cache only ever holds a complete install
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    version = subprocess.run(
        [str(binary), "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert RESTATE_SERVER_VERSION in version.stdout, version
    return binary.parent


@dataclass
class Reader:
    """The reader's project directory, terminal environment and running worker."""

    project: Path
    ports: dict[str, str]
    env: dict[str, str]
    worker: subprocess.Popen[str] | None = None
    worker_printed: Printed | None = None
    cli_dir: Path | None = None
    ran: list[str] = field(default_factory=list)

    def follow(self, steps: Sequence[Step]) -> None:
        for step in steps:
            if step.kind == "file":
                (self.project / step.name).write_text(localized(step.code, self.ports))
                self.ran.append(f"{step.line}: saved {step.name}")
            elif step.kind == "worker output":
                self.check_worker_output(step)
            else:
                self.run(step.commands)

    def run(self, commands: Sequence[Command]) -> None:
        batch: list[Command] = []
        for original in commands:
            command = Command(
                original.line,
                localized(original.text, self.ports),
                [localized(line, self.ports) for line in original.shown],
            )
            if command.kind == "shell":
                batch.append(command)
                continue
            self.flush(batch)
            batch = []
            if command.kind == "pip install":
                _check_pip_install(command)
            elif command.kind == "npm install":
                self.cli_dir = _restate_cli(command, self.project, self.env)
                self.env["PATH"] = os.pathsep.join([str(self.cli_dir), self.env["PATH"]])
            elif command.kind == "worker":
                self.start_worker(command)
            elif command.kind == "dev server":
                pass  # the server of this test stands in; the command has a test of its own
            self.ran.append(f"{command.line}: {command.kind}")
        self.flush(batch)

    def flush(self, batch: Sequence[Command]) -> None:
        if batch:
            _run_shell(batch, self.project, self.env)
            self.ran.extend(f"{c.line}: {c.argv[0]}" for c in batch)

    def start_worker(self, command: Command) -> None:
        assert self.worker is None, "the page starts one worker"
        self.worker = _start(command, self.project, self.env, self.project / "worker.log")
        self.worker_printed = Printed(self.worker)
        last = command.shown[-1]
        got = self.worker_printed.wait_for(
            lambda lines: any(_line_matches(last, x) for x in lines), STARTUP_TIMEOUT
        )
        assert lines_match(command.shown, got), (
            f"{PAGE_PATH}:{command.line}: the worker printed {got!r}, the page shows "
            f"{command.shown!r}\nits log: {(self.project / 'worker.log').read_text()}"
        )

    def check_worker_output(self, step: Step) -> None:
        assert self.worker_printed is not None, f"{PAGE_PATH}:{step.line}: no worker yet"
        got = self.worker_printed.wait_for(lambda lines: _in_order(step.shown, lines), 10.0)
        assert _in_order(step.shown, got), (
            f"{PAGE_PATH}:{step.line}: the worker printed {got!r}, the page shows {step.shown!r}"
        )
        self.ran.append(f"{step.line}: worker output")

    def stop_worker(self) -> None:
        if self.worker is None:
            return
        status = _stop(self.worker, signal.SIGTERM)
        assert self.worker_printed is not None
        printed = self.worker_printed.wait_for(lambda lines: False, 10.0)  # to its end
        assert status == 0, f"the worker exited with {status}: {printed}"
        assert "durable_workflow.restate: stopped (SIGTERM)" in printed, printed


@pytest.fixture
def server(restate_server_factory: RestateServerFactory) -> RestateServer:
    """A restate-server of this test's own, with the harness's defaults."""
    return restate_server_factory()


@pytest.fixture
def reader(server: RestateServer, tmp_path: Path) -> Iterator[Reader]:
    project = tmp_path / "project"
    project.mkdir()
    ports = {
        "ingress": _port_of(server.ingress_url),
        "admin": _port_of(server.admin_url),
        "worker": str(_free_port()),
    }
    reader = Reader(project, ports, _environment([Path(sys.executable).parent]))
    try:
        yield reader
    finally:
        if reader.worker is not None and reader.worker.poll() is None:
            _stop(reader.worker, signal.SIGKILL)


def test_every_sample_of_the_page_is_one_this_test_runs() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert SAMPLES.samples_run_by(text)[0] == "poc/tests/restate/test_docs_restate.py"

    steps = page_steps(text)

    kinds = [c.kind for s in steps for c in s.commands]
    assert kinds.count("worker") == 1
    assert kinds.count("dev server") == 1
    assert any(s.kind == "worker output" for s in steps)
    moved = {"ingress": "1", "admin": "2", "worker": "3"}
    for step in steps:
        for line, code in [(step.line, step.code), *((c.line, c.text) for c in step.commands)]:
            for port in re.findall(r"127\.0\.0\.1:(\d+)", localized(code, moved)):
                assert port in moved.values(), (
                    f"{PAGE_PATH}:{line}: port {port} is not one of the page's three, which "
                    "this test moves to free ones"
                )


def test_the_dev_server_command_prints_what_the_page_shows(tmp_path: Path) -> None:
    (command,) = [
        c
        for s in page_steps(PAGE.read_text(encoding="utf-8"))
        for c in s.commands
        if c.kind == "dev server"
    ]
    ports = {"ingress": str(_free_port()), "admin": str(_free_port())}
    text = localized(command.text, ports)
    shown = [localized(line, ports) for line in command.shown]
    env = _environment([Path(sys.executable).parent])
    proc = _start(Command(command.line, text, shown), tmp_path, env, tmp_path / "up.log")
    try:
        printed = Printed(proc)
        got = printed.wait_for(
            lambda lines: any(_line_matches(shown[-1], x) for x in lines), STARTUP_TIMEOUT
        )
        assert lines_match(shown, got), (
            f"{PAGE_PATH}:{command.line}: `{text}` printed {got!r}, the page shows {shown!r}"
        )
        ui = httpx.get(f"http://127.0.0.1:{ports['admin']}/ui/", timeout=10)
        assert ui.status_code == 200 and ui.headers["content-type"].startswith("text/html")
    finally:
        status = _stop(proc, signal.SIGINT)  # Ctrl-C
    assert status == 0, (tmp_path / "up.log").read_text()


def test_the_walkthrough_runs_as_the_page_shows(reader: Reader, server: RestateServer) -> None:
    steps = page_steps(PAGE.read_text(encoding="utf-8"))

    reader.follow(steps)

    # What the page sends the reader to look at in a browser: the UI on the admin port.
    ui = httpx.get(f"{server.admin_url}/ui/", timeout=10)
    assert ui.status_code == 200 and ui.headers["content-type"].startswith("text/html")
    reader.stop_worker()
    ran = {entry.split(": ", 1)[0] for entry in reader.ran}
    expected = {str(s.line) for s in steps if s.kind != "commands"} | {
        str(c.line) for s in steps for c in s.commands
    }
    assert ran == expected, f"not run: {sorted(expected - ran)}"
