"""Sessions for the durable-workflow spike.

Plain ``nox`` runs lint, typecheck, tests, integration and docs. ``nox -s demo`` runs the POC
end to end on a native restate-server; ``nox -s bench`` runs the benchmarks (not in the default
set).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "integration", "docs"]
nox.options.reuse_venv = "yes"

PACKAGES = ["poc/src", "harness/src", "poc/tests/typing"]
"""What pyright checks: the packages, and what it must say to a user of the API."""


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install(".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """pyright in strict mode over the packages."""
    session.install("-e", ".[typecheck]")
    session.run("pyright", *PACKAGES)


@nox.session
def tests(session: nox.Session) -> None:
    """The fast lane: no server, in-memory engine with a virtual clock."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "not integration", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Everything that needs a real restate-server (fetched once through the harness)."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "restate_harness", "fetch", "--restatectl")  # for the clusters
    session.run("pytest", "-m", "integration", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site with mkdocs --strict and check what it generates; ``nox -s docs -- serve``
    serves it locally.

    The first build downloads the pinned mermaid with npm (docs/hooks/bundled_mermaid.py).
    """
    # ruff (the lint extra) lets mkdocstrings format the rendered signatures; the dev extra
    # brings pytest for the site checks that need mkdocs (the test lane has no mkdocs).
    session.install("-e", ".[docs,lint,dev]")
    if session.posargs and session.posargs[0] == "serve":
        session.run("mkdocs", "serve", "--strict", "-a", "127.0.0.1:8000")
    else:
        session.run("mkdocs", "build", "--strict")
        session.run("pytest", "docs/test_site.py", "-p", "no:cacheprovider")


@nox.session
def demo(session: nox.Session) -> None:
    """Run the POC end to end on a native restate-server (``-- --engine memory`` for in-memory)."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "order_poc.demo", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks: the cost of portability against raw restate-sdk, printed as ratios."""
    session.install("-e", ".[dev,bench]")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(default=False)
def soak(session: nox.Session) -> None:
    """Soak run: thousands of workflows, ours and raw over HTTP/2, every slow one explained."""
    session.install("-e", ".[dev,bench]")
    session.run("python", "-m", "bench.soak", *session.posargs)
