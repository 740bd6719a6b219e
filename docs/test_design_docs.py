"""The design documents stay consistent with themselves and with the code they cite.

`mkdocs build --strict` already fails on broken links and anchors and on decision records with
bad front matter (see docs/hooks/repo_pages.py). These tests cover what a link checker cannot:
the decision index agrees with the records, every test a page names by function exists, and
nothing machine-specific or registry-specific leaks into the published pages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DECISIONS = ROOT / "vrs" / "decisions"
PAGES = sorted(p for name in ("docs", "vrs", "spike") for p in (ROOT / name).rglob("*.md"))
PUBLISHED = [ROOT / "mkdocs.yml", *PAGES]
SOURCES = [p for name in ("poc", "harness", "docs") for p in (ROOT / name).rglob("*.py")]

_RECORD = re.compile(r"^(\d{4})-[a-z0-9]+(?:-[a-z0-9]+)*\.md$")
_INDEX_ROW = re.compile(r"^\| \[(\d{4})\]\(([^)]+)\) \| [^|]+ \| (\w+) \| ([0-9-]+) \|$")


def _front_matter(path: Path) -> dict[str, str | None]:
    """The record's front matter: flat `key: value` lines (the test lane has no YAML parser)."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n"), f"{path.name}: no front matter"
    meta: dict[str, str | None] = {}
    for line in text[4 : text.index("\n---\n", 4)].splitlines():
        key, sep, value = line.partition(":")
        assert sep, f"{path.name}: front matter line {line!r} is not `key: value`"
        value = value.split("#", 1)[0].strip().strip("\"'")
        meta[key.strip()] = None if value in ("", "null", "~") else value
    return meta


def _records() -> list[Path]:
    return sorted(p for p in DECISIONS.glob("*.md") if _RECORD.match(p.name))


def test_every_decision_record_has_complete_front_matter_and_a_claim_title() -> None:
    assert _records(), "no decision records found"
    for path in _records():
        meta = _front_matter(path)
        assert set(meta) >= {"status", "date", "supersedes", "superseded_by"}, path.name
        assert meta["status"] in {"proposed", "accepted", "superseded"}, path.name
        if meta["status"] == "superseded":
            assert meta["superseded_by"], f"{path.name}: superseded by what?"
        title = next(line for line in path.read_text().splitlines() if line.startswith("# "))
        assert title.startswith(f"# {path.name[:4]} "), f"{path.name}: title must start with its id"
        for section in ("## Context", "## Considered options", "## Decision", "## Evidence"):
            assert section in path.read_text(), f"{path.name}: missing {section}"


def test_the_decision_index_lists_every_record_with_its_status_and_date() -> None:
    rows = {}
    for line in (DECISIONS / "README.md").read_text(encoding="utf-8").splitlines():
        row = _INDEX_ROW.match(line)
        if row:
            number, link, status, date = row.groups()
            rows[number] = (link, status, date)
    records = {p.name[:4]: p for p in _records()}
    assert sorted(rows) == sorted(records), "index and records disagree on which records exist"
    for number, path in records.items():
        meta = _front_matter(path)
        link, status, date = rows[number]
        assert link == path.name, f"{number}: index links {link}"
        assert (status, date) == (meta["status"], meta["date"]), (
            f"{number}: index says {status} {date}, the record {meta['status']} {meta['date']}"
        )


def test_supersession_links_point_both_ways() -> None:
    metas = {p.name[:4]: _front_matter(p) for p in _records()}
    for number, meta in metas.items():
        newer = meta.get("superseded_by")
        if newer:
            assert metas[newer].get("supersedes") == number
        older = meta.get("supersedes")
        if older:
            assert metas[older].get("superseded_by") == number


def test_every_test_a_page_names_exists() -> None:
    defined = set()
    for source in SOURCES:
        defined.update(re.findall(r"def (test_\w+)\(", source.read_text(encoding="utf-8")))
    missing = [
        f"{page.relative_to(ROOT)}: {name}"
        for page in PUBLISHED
        for name in re.findall(r"`(test_\w+)`", page.read_text(encoding="utf-8"))
        if name not in defined
    ]
    assert missing == []


# Built from pieces so that this file does not contain what it looks for.
_FORBIDDEN = [
    re.compile(r"(?<![\w.-])/(?:tmp|work|root|home)/"),
    re.compile(re.escape("npmjs" + ".")),
    re.compile(re.escape("pypi" + ".")),
    re.compile(re.escape("python" + "hosted" + ".")),
    re.compile(re.escape("yarnpkg" + ".")),
]


@pytest.mark.parametrize("page", PUBLISHED, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_published_page_names_no_local_path_and_no_registry_host(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    hits = [m.group(0) for pattern in _FORBIDDEN for m in pattern.finditer(text)]
    assert hits == []
