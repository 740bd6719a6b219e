"""mkdocs hook: ship a pinned mermaid with the site instead of letting readers fetch it.

mkdocs-material renders ```mermaid blocks with the global `mermaid` object when a page has
one, and loads `mermaid@11` from a CDN only if no such global exists. So a reader offline, or
behind a proxy that blocks the CDN, saw raw diagram source. This hook makes the global exist:
it puts mermaid's browser bundle (`dist/mermaid.min.js`, one self-contained script) into the
site under `assets/vendor/mermaid-<version>/`, next to mermaid's licence, and adds the script to
`extra_javascript`, which is how mkdocs-material expects a self-hosted mermaid.

The bundle comes from the npm registry, as the harness fetches restate-server: on the first
build, `npm pack mermaid@<version>` with the `npm` client (so the user's registry, proxy and
auth settings apply), checked against the sha512 that `npm view mermaid@<version>
dist.integrity` publishes, and extracted into `.cache/mermaid/<version>/` at the repository
top (gitignored: mermaid's code is never committed). Later builds check the cached files
against the sha256 recorded next to them and never call npm, so they work offline. A build
that needs the download fails with a clear message if npm is missing or the registry cannot
be reached.

This module imports nothing from mkdocs at import time: the docs tests, which run without
mkdocs, use `ensure_mermaid` to parse every diagram with this same bundle
(docs/test_diagrams.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

MERMAID_VERSION: Final = "11.17.2"
"""The mermaid release the site ships; mkdocs-material 9.x's own default is `mermaid@11`."""

PACKAGE: Final = "mermaid"
SHIPPED: Final = {"package/dist/mermaid.min.js": "mermaid.min.js", "package/LICENSE": "LICENSE"}
"""Members of the npm tarball that the site ships, and their names in the cache and site."""

SITE_DIR: Final = f"assets/vendor/mermaid-{MERMAID_VERSION}"
"""Where the bundle and its licence go in the built site (the version busts browser caches)."""

CACHE_DIR: Final = Path(".cache") / "mermaid"
"""The cache, relative to the repository top; gitignored."""

_MANIFEST: Final = "manifest.json"
_NPM_VIEW_TIMEOUT: Final = 60.0
_NPM_PACK_TIMEOUT: Final = 300.0


class MermaidUnavailable(Exception):
    """The pinned mermaid is not cached and cannot be downloaded (no npm, registry error)."""


def ensure_mermaid(root: Path, version: str = MERMAID_VERSION) -> Path:
    """The cache directory holding `mermaid.min.js` and `LICENSE` of `version`, fetched if needed.

    Raises:
        MermaidUnavailable: A download is needed and npm is missing or fails, or the tarball
            does not match the integrity the registry publishes.
    """
    target = root / CACHE_DIR / version
    if _cache_problem(target, version) is None:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise MermaidUnavailable(
            f"the site ships mermaid {version}, downloaded once with npm into {CACHE_DIR}/, "
            "and `npm` is not on PATH. Install Node.js (it ships npm), e.g. with your OS "
            "package manager, and build again."
        )
    spec = f"{PACKAGE}@{version}"
    integrity = _npm_stdout(npm, ["view", spec, "dist.integrity", "--json"], _NPM_VIEW_TIMEOUT)
    try:
        integrity = json.loads(integrity)
    except ValueError:
        integrity = integrity.strip()
    if not isinstance(integrity, str) or not integrity:
        raise MermaidUnavailable(f"the npm registry publishes no integrity hash for {spec}")
    target.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        args = ["pack", spec, "--pack-destination", str(workdir), "--json"]
        _npm_stdout(npm, args, _NPM_PACK_TIMEOUT)
        tarballs = list(workdir.glob("*.tgz"))
        if len(tarballs) != 1:
            raise MermaidUnavailable(f"`npm pack {spec}` left no tarball in {workdir}")
        _verify_sha512(tarballs[0], integrity)
        staged = workdir / "staged"
        staged.mkdir()
        recorded = _extract(tarballs[0], staged)
        manifest = {"package": PACKAGE, "version": version, "integrity": integrity}
        (staged / _MANIFEST).write_text(json.dumps({**manifest, "sha256": recorded}, indent=2))
        if target.exists():
            shutil.rmtree(target)  # a damaged copy (its problem was found above)
        try:
            staged.rename(target)  # atomic: the cache never holds a half-written copy
        except OSError:
            if _cache_problem(target, version) is not None:
                raise
            # Another build cached the same version meanwhile.
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return target


def _cache_problem(target: Path, version: str) -> str | None:
    """Why the cached copy cannot be used, or None if it can."""
    try:
        manifest = json.loads((target / _MANIFEST).read_text())
    except (OSError, ValueError):
        return "not cached"
    if not isinstance(manifest, dict) or manifest.get("version") != version:
        return "the manifest names another version"
    recorded = manifest.get("sha256")
    if not isinstance(recorded, dict):
        return "the manifest records no sha256"
    for name in SHIPPED.values():
        path = target / name
        if not path.is_file() or _sha256(path) != recorded.get(name):
            return f"{name} is missing or changed"
    return None


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _npm_stdout(npm: str, args: list[str], timeout: float) -> str:
    env = dict(os.environ)
    for key in ("update_notifier", "fund", "audit"):
        env.setdefault(f"npm_config_{key}", "false")
    command = f"npm {' '.join(args)}"
    try:
        proc = subprocess.run(
            [npm, *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise MermaidUnavailable(
            f"`{command}` did not finish in {timeout:.0f} s. Is the npm registry reachable? "
            "Check `npm config get registry` and your proxy settings."
        ) from None
    except OSError as exc:
        raise MermaidUnavailable(f"cannot run {npm}: {exc}") from None
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-800:]
        raise MermaidUnavailable(
            f"`{command}` failed (exit {proc.returncode}): {output}. Check your network and "
            "npm registry settings (`npm config get registry`)."
        )
    return proc.stdout


def _verify_sha512(tarball: Path, integrity: str) -> None:
    """Check the tarball against a Subresource-Integrity string carrying a sha512."""
    expected = []
    for token in integrity.split():
        algorithm, _, value = token.partition("-")
        if algorithm == "sha512":
            expected.append(base64.b64decode(value.split("?", 1)[0]))
    if not expected:
        raise MermaidUnavailable(f"the registry's integrity {integrity!r} carries no sha512")
    with tarball.open("rb") as f:
        actual = hashlib.file_digest(f, "sha512").digest()
    if actual not in expected:
        raise MermaidUnavailable(
            f"{tarball.name} has sha512-{base64.b64encode(actual).decode()} but the registry "
            f"publishes {integrity}: the download is corrupt or was tampered with. Nothing was "
            "cached; build again, and if it persists check your npm registry or proxy."
        )


def _extract(tarball: Path, into: Path) -> dict[str, str]:
    """Copy the shipped members out of the tarball; their sha256 by cache name."""
    recorded: dict[str, str] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member, name in SHIPPED.items():
            try:
                source = archive.extractfile(member)
            except KeyError:
                source = None
            if source is None:
                raise MermaidUnavailable(f"{tarball.name} has no {member}")
            with source, (into / name).open("wb") as out:
                shutil.copyfileobj(source, out)
            recorded[name] = _sha256(into / name)
    return recorded


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    from mkdocs.exceptions import PluginError

    try:
        ensure_mermaid(_root(config))
    except MermaidUnavailable as exc:
        raise PluginError(f"bundled_mermaid: {exc}") from None
    # A plain script before the theme's components mount: mkdocs-material then finds the
    # global `mermaid` and does not load its CDN copy.
    script = f"{SITE_DIR}/mermaid.min.js"
    if script not in [str(s) for s in config.extra_javascript]:
        config.extra_javascript.append(script)
    return config


def on_files(files: Files, /, *, config: MkDocsConfig) -> Files:
    from mkdocs.structure.files import File

    cached = _root(config) / CACHE_DIR / MERMAID_VERSION
    for name in SHIPPED.values():
        files.append(File.generated(config, f"{SITE_DIR}/{name}", abs_src_path=str(cached / name)))
    return files
