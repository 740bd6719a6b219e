"""The determinism checker flags nondeterministic calls in workflow bodies only."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from durable_workflow.check import check_source

SOURCE = textwrap.dedent(
    """
    import asyncio
    import random as rnd
    import time
    import uuid
    from datetime import datetime

    from durable_workflow import Workflow

    wf = Workflow("W", payload=str)

    def helper():
        return datetime.now()  # not a body: fine

    @wf.body
    async def body(p: str) -> None:
        t = datetime.now()
        r = rnd.randint(1, 6)
        u = uuid.uuid4()
        await asyncio.sleep(1)
        time.sleep(1)
        await asyncio.gather(a(), b())
        ok = time.time()  # dw: ignore

        async def compensate() -> None:
            print(time.time())
    """
)


def test_each_nondeterministic_call_in_a_body_is_reported_with_line_and_advice() -> None:
    findings = check_source(SOURCE, "wf.py")
    got = [(f.line, f.code, f.call) for f in findings]
    assert got == [
        (17, "DW001", "datetime.now"),
        (18, "DW002", "rnd.randint"),
        (19, "DW003", "uuid.uuid4"),
        (20, "DW004", "asyncio.sleep"),
        (21, "DW004", "time.sleep"),
        (22, "DW005", "asyncio.gather"),
        (26, "DW001", "time.time"),
    ]
    assert "durable_workflow.now()" in findings[0].advice
    assert "DurableClock.sleep" in findings[3].advice
    assert "all_of(name, steps)" in findings[5].advice and "race_all" in findings[5].advice
    assert str(findings[0]).startswith("wf.py:17:9: DW001 datetime.now() in workflow body 'body'")


def test_the_command_line_exits_1_on_findings_and_0_on_clean_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(SOURCE)
    good = tmp_path / "good.py"
    good.write_text("from x import wf\n@wf.body\nasync def b(p):\n    return p\n")
    run = [sys.executable, "-m", "durable_workflow.check"]
    out = subprocess.run([*run, str(bad)], capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert out.stdout.count("DW00") == 7
    clean = subprocess.run([*run, str(good)], capture_output=True, text=True, check=False)
    assert clean.returncode == 0
    assert clean.stdout == ""


def test_the_poc_and_conformance_workflows_are_clean() -> None:
    root = Path(__file__).resolve().parents[1] / "src"
    from durable_workflow.check import check_paths

    findings = check_paths([str(root / "durable_workflow" / "testing")])
    assert [str(f) for f in findings] == []
