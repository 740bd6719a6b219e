"""mkdocs hook: publish the repository's design folders and evidence files next to docs/.

Why a hook and not symlinks: the design documents live at the top of the repository (`vrs/`,
`spike/`) so that a reviewer reads and comments on them in the repository, and they link to the
tests that back their claims by plain relative paths (`../poc/tests/test_check.py`). For those
same links to resolve on the site, the site must mirror the repository layout for everything a
page can link to. mkdocs lets each `File` name its own source directory, so this hook adds

- every file under `vrs/` and `spike/` (Markdown becomes pages, the rest is copied), and
- the evidence a page may link to, copied as plain text files: the sources and tests under
  `poc/`, `harness/`, `bench/` and `docs/` (the site's own tests), `noxfile.py` and
  `pyproject.toml`,

under their repository paths. `mkdocs build --strict` then validates every such link, and
`mkdocs serve` watches those folders too. Symlinks (docs/vrs -> ../vrs) would publish the pages
but not the code they link to, and are fragile on checkouts without symlink support.

Link rule: pages in vrs/ and spike/ use repository-relative links everywhere, including to
docs/ pages (`../docs/benchmarks.md`); the hook maps those to the site page, so the same link
works in the repository. Pages in docs/ are site pages and link to `vrs/...` and `spike/...`
as site paths.

Decision records get their front matter (status, date, supersedes, superseded_by) checked and
shown at the top of the page; a record without a valid status fails the strict build.

Review links: with `repo_url` set in mkdocs.yml, every page gets an edit link to its file in
the repository (`edit_uri` there points at docs/ on the default branch; this hook points the
pages it publishes from vrs/ and spike/ at their own folders), and each decision record a
"Comment on this proposal" link that opens a new issue titled with the record's number and
title. Without `repo_url`, `edit_uri` is dropped, so the site shows neither and the strict
build does not warn about an edit URL without a repository.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.repo_pages")

DESIGN_DIRS = ("vrs", "spike")
"""Published whole: Markdown files become pages."""

EVIDENCE_DIRS = ("poc", "harness", "bench", "docs")
EVIDENCE_FILES = ("noxfile.py", "pyproject.toml")
EVIDENCE_SUFFIXES = frozenset({".py", ".toml", ".json", ".txt", ".yml", ".yaml", ".cfg", ".sh"})
"""Copied as plain files so that links to tests and sources resolve on the site."""

SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site", "build", "dist"})

DECISION_STATUSES = ("proposed", "accepted", "superseded")
DECISION_FIELDS = ("status", "date", "supersedes", "superseded_by")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _skipped(part: str) -> bool:
    return part.startswith(".") or part in SKIPPED_DIRS or part.endswith(".egg-info")


def _walk(base: Path) -> list[Path]:
    found: list[Path] = []
    for path in sorted(base.rglob("*")):
        rel_parts = path.relative_to(base).parts
        if any(_skipped(part) for part in rel_parts):
            continue
        if path.is_file():
            found.append(path)
    return found


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    if not config.repo_url:
        # No repository to edit in: no edit links (and no "edit_uri is not a valid URL").
        config.edit_uri = None
        config.edit_uri_template = None
    return config


def on_files(files: Files, /, *, config: MkDocsConfig) -> Files:
    root = _root(config)
    docs_dir = Path(config.docs_dir).resolve().relative_to(root).as_posix()
    wanted: list[Path] = []
    for name in DESIGN_DIRS:
        if (root / name).is_dir():
            wanted.extend(_walk(root / name))
    for name in EVIDENCE_DIRS:
        if (root / name).is_dir():
            wanted.extend(p for p in _walk(root / name) if p.suffix in EVIDENCE_SUFFIXES)
    wanted.extend(root / name for name in EVIDENCE_FILES if (root / name).is_file())
    for path in wanted:
        src_uri = path.relative_to(root).as_posix()
        if files.get_file_from_path(src_uri) is not None:
            raise PluginError(f"{src_uri} exists both in docs/ and at the repository top level")
        file = File(
            src_uri,
            src_dir=str(root),
            dest_dir=config.site_dir,
            use_directory_urls=config.use_directory_urls,
        )
        # edit_uri is relative to docs/ in the repository; this file is not under docs/.
        file.edit_uri = posixpath.relpath(src_uri, docs_dir)
        files.append(file)
    return files


def on_serve(server: Any, /, *, config: MkDocsConfig, builder: Any) -> Any:
    root = _root(config)
    for name in (*DESIGN_DIRS, *EVIDENCE_DIRS):
        if (root / name).is_dir():
            server.watch(str(root / name))
    return server


_DECISION = re.compile(r"^vrs/decisions/(\d{4})-[a-z0-9-]+\.md$")
_LINK = re.compile(r"(\]\()([^)\s]+)")


def _map_links_into_docs(markdown: str, page: Page, files: Files) -> str:
    """In a page from vrs/ or spike/, point repository links to docs/ pages at the site page.

    A design page links to `../docs/benchmarks.md` (right in the repository); on the site that
    page is `benchmarks.md` at the root. Links to other files under docs/ (the site's tests)
    stay as they are: the hook publishes those under docs/.
    """
    base = posixpath.dirname(page.file.src_uri)

    def replace(match: re.Match[str]) -> str:
        target = match.group(2)
        path, hash_, anchor = target.partition("#")
        if not path or ":" in path or path.startswith("/"):
            return match.group(0)
        resolved = posixpath.normpath(posixpath.join(base, path))
        if not resolved.startswith("docs/"):
            return match.group(0)
        site_uri = resolved.removeprefix("docs/")
        file = files.get_file_from_path(site_uri)
        if file is None or not file.is_documentation_page():
            return match.group(0)
        return match.group(1) + posixpath.relpath(site_uri, base or ".") + hash_ + anchor

    return _LINK.sub(replace, markdown)


def new_issue_url(repo_url: str, title: str, body: str) -> str:
    """The address of a new issue in `repo_url`, prefilled with `title` and `body`.

    GitLab takes `issue[title]` under `/-/issues/new`; GitHub, Gitea and Forgejo take `title`
    and `body` under `/issues/new`.
    """
    base = repo_url.rstrip("/")
    if "gitlab" in urlsplit(base).netloc:
        query = urlencode({"issue[title]": title, "issue[description]": body}, quote_via=quote)
        return f"{base}/-/issues/new?{query}"
    return f"{base}/issues/new?{urlencode({'title': title, 'body': body}, quote_via=quote)}"


def _comment_link(repo_url: str, number: str, heading: str, page: Page, status: object) -> str:
    claim = heading.removeprefix("# ").removeprefix(number).strip()
    body = (
        f"On decision record {number} (`{page.file.src_uri}`, status: {status}).\n\n"
        "The sentence I dispute:\n\n> \n\nWhat evidence would settle it:\n"
    )
    return f"[Comment on this proposal]({new_issue_url(repo_url, f'{number}: {claim}', body)})"


def on_page_markdown(markdown: str, /, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri.split("/", 1)[0] in DESIGN_DIRS:
        markdown = _map_links_into_docs(markdown, page, files)
    decision = _DECISION.match(page.file.src_uri)
    if not decision:
        return markdown
    meta = page.meta
    missing = [f for f in DECISION_FIELDS if f not in meta]
    if missing:
        log.warning("%s: front matter lacks %s", page.file.src_uri, ", ".join(missing))
    status = meta.get("status")
    if status not in DECISION_STATUSES:
        log.warning("%s: status %r is not one of %s", page.file.src_uri, status, DECISION_STATUSES)
    line = f"**Status:** {status} · **Date:** {meta.get('date')}"
    for field in ("supersedes", "superseded_by"):
        value = meta.get(field)
        if value:
            line += f" · **{field.replace('_', ' ').capitalize()}:** {value}"
    # Put the status line (and the comment link, if there is a repository) under the title.
    lines = markdown.splitlines()
    heading = next((i for i, text in enumerate(lines) if text.startswith("# ")), None)
    if config.repo_url and heading is not None:
        link = _comment_link(config.repo_url, decision.group(1), lines[heading], page, status)
        line += f" · {link}"
    if heading is not None:
        lines.insert(heading + 1, "\n" + line + "\n")
    else:
        lines.insert(0, line + "\n")
    return "\n".join(lines)
