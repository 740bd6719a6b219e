"""``python -m durable_workflow.check PATHS``: exit 1 if a workflow body is not deterministic."""

from __future__ import annotations

import argparse
import sys

from . import check_paths


def main(argv: list[str] | None = None) -> int:
    """Run the checker; print one line per finding."""
    parser = argparse.ArgumentParser(
        prog="python -m durable_workflow.check",
        description="Flag wall-clock, random, uuid, sleep and concurrency calls in bodies.",
    )
    parser.add_argument("paths", nargs="+", help="Python files or directories")
    args = parser.parse_args(argv)
    findings = check_paths(args.paths)
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} problem(s) in workflow bodies", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
