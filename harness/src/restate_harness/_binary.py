"""Getting restate-server (and restatectl): from an env variable, the per-user cache, or npm.

Restate publishes its native binaries as per-platform npm packages. The first use downloads
the pinned version with the `npm` client (so the user's registry, proxy and auth settings
apply), checks its sha512 against the integrity the registry publishes, and extracts the
binary into a per-user cache keyed by version. Later uses only check the cached file against
the sha256 recorded next to it and never call npm. A file lock serialises concurrent
downloads, and the binary only appears in the cache through an atomic rename.

restatectl (the cluster administration tool, used to read partition leadership, which the
admin API does not expose) comes the same way, from `@restatedev/restatectl-<platform>`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

from ._errors import (
    IntegrityError,
    InvalidBinaryError,
    NpmError,
    NpmNotFoundError,
    PackageNotFoundError,
    UnsupportedPlatformError,
)

__all__ = [
    "RESTATE_SERVER_VERSION",
    "SERVER_BIN_ENV",
    "RESTATECTL_BIN_ENV",
    "CACHE_ENV",
    "BinarySource",
    "ServerBinary",
    "RestatectlBinary",
    "server_package",
    "default_cache_dir",
    "ensure_server_binary",
    "ensure_restatectl",
    "size_on_disk",
]

RESTATE_SERVER_VERSION: Final = "1.7.12"
"""The restate-server version the harness downloads unless told otherwise."""

SERVER_BIN_ENV: Final = "RESTATE_SERVER_BIN"
"""Environment variable naming an existing restate-server binary to use instead of the cache."""

RESTATECTL_BIN_ENV: Final = "RESTATECTL_BIN"
"""Environment variable naming an existing restatectl binary to use instead of the cache."""

CACHE_ENV: Final = "RESTATE_HARNESS_CACHE"
"""Environment variable overriding the cache root (default `$XDG_CACHE_HOME/restate-harness`)."""

BinarySource = Literal["env", "cache", "download"]
"""Where a `ServerBinary` came from: RESTATE_SERVER_BIN, the cache, or a fresh download."""

_NPM_VIEW_TIMEOUT: Final = 120.0
_NPM_PACK_TIMEOUT: Final = 900.0
_VERSION_TIMEOUT: Final = 30.0
_CHUNK: Final = 1 << 20

_PLATFORMS: Final[dict[tuple[str, str], str]] = {
    ("linux", "x86_64"): "linux-x64",
    ("linux", "amd64"): "linux-x64",
    ("linux", "aarch64"): "linux-arm64",
    ("linux", "arm64"): "linux-arm64",
    ("darwin", "arm64"): "darwin-arm64",
    ("darwin", "aarch64"): "darwin-arm64",
    ("darwin", "x86_64"): "darwin-x64",
}

_log = logging.getLogger("restate_harness")
_PROGRESS_INTERVAL: Final = 2.0  # seconds between two "downloaded so far" lines


@dataclass(frozen=True)
class _Tool:
    """One of the Restate executables published on npm."""

    name: str  # the executable, also the first word of its `--version` answer
    package_prefix: str  # the npm package, without the `-<platform>` suffix
    env: str  # the variable that names an existing binary instead

    @property
    def tarball_member(self) -> str:
        return f"package/bin/{self.name}"

    @property
    def metadata_name(self) -> str:
        return f"{self.name}.json"


_SERVER: Final = _Tool("restate-server", "@restatedev/restate-server", SERVER_BIN_ENV)
_RESTATECTL: Final = _Tool("restatectl", "@restatedev/restatectl", RESTATECTL_BIN_ENV)


@dataclass(frozen=True)
class ServerBinary:
    """A restate-server executable that answered `--version`.

    Attributes:
        path: Absolute path of the executable.
        version: The version it reports, e.g. `"1.7.12"`.
        source: Where it came from: `"env"` (RESTATE_SERVER_BIN), `"cache"` or `"download"`.
    """

    path: Path
    version: str
    source: BinarySource


@dataclass(frozen=True)
class RestatectlBinary:
    """A restatectl executable (the cluster administration tool) that answered `--version`.

    Attributes:
        path: Absolute path of the executable.
        version: The version it reports, e.g. `"1.7.12"`.
        source: Where it came from: `"env"` (RESTATECTL_BIN), `"cache"` or `"download"`.
    """

    path: Path
    version: str
    source: BinarySource


def server_package(system: str | None = None, machine: str | None = None) -> str:
    """The npm package holding restate-server for a platform.

    Args:
        system: An OS name as `platform.system()` reports it; default: this machine's.
        machine: A CPU name as `platform.machine()` reports it; default: this machine's.

    Returns:
        The package name, e.g. `"@restatedev/restate-server-linux-x64"`.

    Raises:
        UnsupportedPlatformError: Restate publishes no binary for that platform.
    """
    return _package(_SERVER, system, machine)


def _package(tool: _Tool, system: str | None = None, machine: str | None = None) -> str:
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    suffix = _PLATFORMS.get((system, machine))
    if suffix is None:
        raise UnsupportedPlatformError(
            f"{tool.name} is not published for {system}/{machine}; the harness supports "
            f"Linux x64/arm64 and macOS arm64/x64. Build {tool.name} from source and set "
            f"{tool.env} to its path."
        )
    return f"{tool.package_prefix}-{suffix}"


def default_cache_dir() -> Path:
    """The cache root: `$RESTATE_HARNESS_CACHE`, else `$XDG_CACHE_HOME/restate-harness`.

    Falls back to `~/.cache/restate-harness` when XDG_CACHE_HOME is unset. Binaries live in
    `<root>/<version>/restate-server`.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "restate-harness"


def ensure_server_binary(
    *,
    version: str = RESTATE_SERVER_VERSION,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> ServerBinary:
    """Return a usable restate-server, downloading and caching it on first use.

    Resolution order: `$RESTATE_SERVER_BIN` if set (validated, never downloaded over);
    otherwise the cached binary for `version` if its recorded sha256 still matches; otherwise
    a download with `npm pack`, verified against `npm view <pkg>@<version> dist.integrity`. A
    cached binary that fails its check is downloaded again. A valid cache means no npm call.

    Args:
        version: The restate-server version to use.
        cache_dir: The cache root; default `default_cache_dir()`.
        force: Download again even if the cached binary is valid.

    Returns:
        The binary, with where it came from.

    Raises:
        InvalidBinaryError: RESTATE_SERVER_BIN is wrong, or a download does not run.
        UnsupportedPlatformError: No binary is published for this platform.
        NpmNotFoundError: A download is needed and `npm` is not on PATH.
        PackageNotFoundError: The registry has no such package or version.
        NpmError: npm failed otherwise (network, registry).
        IntegrityError: The tarball does not match the published sha512.

    Example:
        ```python
        binary = ensure_server_binary()
        binary.path.name
        # 'restate-server'
        ```
    """
    path, reported, source = _ensure(_SERVER, version, cache_dir, force)
    return ServerBinary(path, reported, source)


def ensure_restatectl(
    *,
    version: str = RESTATE_SERVER_VERSION,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> RestatectlBinary:
    """Return a usable restatectl, downloading and caching it on first use (8.6 MB packed).

    The same resolution as `ensure_server_binary`, with `$RESTATECTL_BIN` and the npm package
    `@restatedev/restatectl-<platform>`, cached next to restate-server.

    Raises:
        BinaryError: The subclasses `ensure_server_binary` raises, here about restatectl
            (`InvalidBinaryError` for a wrong RESTATECTL_BIN, `NpmNotFoundError`, ...).

    Example:
        ```python
        ensure_restatectl().path.name
        # 'restatectl'
        ```
    """
    path, reported, source = _ensure(_RESTATECTL, version, cache_dir, force)
    return RestatectlBinary(path, reported, source)


def size_on_disk(path: str | os.PathLike[str]) -> int:
    """The bytes a file occupies on disk (its allocated blocks, as `du` counts them)."""
    stat = os.stat(path)
    blocks = getattr(stat, "st_blocks", None)
    return blocks * 512 if isinstance(blocks, int) else stat.st_size


def _ensure(
    tool: _Tool, version: str, cache_dir: str | os.PathLike[str] | None, force: bool
) -> tuple[Path, str, BinarySource]:
    env_value = os.environ.get(tool.env)
    if env_value:
        path, reported = _binary_from_env(tool, env_value)
        return path, reported, "env"

    package = _package(tool)
    root = Path(cache_dir).expanduser().absolute() if cache_dir else default_cache_dir()
    version_dir = root / version
    binary = version_dir / tool.name

    if not force and _cached_problem(tool, binary, package, version) is None:
        return binary, version, "cache"

    version_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(version_dir / ".lock"):
        if not force:
            # Another process may have completed the download while this one waited.
            problem = _cached_problem(tool, binary, package, version)
            if problem is None:
                return binary, version, "cache"
            if binary.exists():
                _log.warning("cached %s is unusable (%s); downloading it again", binary, problem)
        _download(tool, package, version, version_dir)
    return binary, version, "download"


def _binary_from_env(tool: _Tool, value: str) -> tuple[Path, str]:
    path = Path(value).expanduser().absolute()
    hint = (
        f"Point {tool.env} at a {tool.name} executable, or unset it to let the harness "
        f"download {tool.name} {RESTATE_SERVER_VERSION} with npm."
    )
    if not path.exists():
        raise InvalidBinaryError(f"{tool.env}={value!r} does not exist. {hint}")
    if path.is_dir():
        raise InvalidBinaryError(f"{tool.env}={value!r} is a directory. {hint}")
    if not os.access(path, os.X_OK):
        raise InvalidBinaryError(f"{tool.env}={value!r} is not executable (chmod +x it?). {hint}")
    try:
        reported = _probe_version(tool, path)
    except _ProbeFailedError as exc:
        raise InvalidBinaryError(f"{tool.env}={value!r}: {exc}. {hint}") from None
    if reported != RESTATE_SERVER_VERSION:
        _log.info(
            "%s is %s %s (the harness pins %s)",
            tool.env,
            tool.name,
            reported,
            RESTATE_SERVER_VERSION,
        )
    return path, reported


class _ProbeFailedError(Exception):
    pass


def _probe_version(tool: _Tool, path: Path) -> str:
    """Run `path --version` and return the version it reports."""
    try:
        proc = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_VERSION_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise _ProbeFailedError(f"`--version` did not answer in {_VERSION_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise _ProbeFailedError(f"cannot run it ({exc.strerror or exc})") from None
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise _ProbeFailedError(
            f"`--version` exited with status {proc.returncode}: {output[-500:]!r}"
        )
    words = output.split()
    if len(words) < 2 or words[0] != tool.name:
        raise _ProbeFailedError(
            f"`--version` printed {output[:200]!r}, which is not {tool.name}'s answer"
        )
    return words[1]


def _cached_problem(tool: _Tool, binary: Path, package: str, version: str) -> str | None:
    """Why the cached binary cannot be used, or None if it can."""
    if not binary.exists():
        return "not cached"
    try:
        metadata = json.loads((binary.parent / tool.metadata_name).read_text())
    except (OSError, ValueError):
        return "its metadata file is missing or unreadable"
    if not isinstance(metadata, dict):
        return "its metadata file is malformed"
    recorded = cast("dict[str, object]", metadata)
    if recorded.get("package") != package or recorded.get("version") != version:
        return f"it was recorded as {recorded.get('package')}@{recorded.get('version')}"
    if not os.access(binary, os.X_OK):
        return "it is not executable"
    with binary.open("rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual != recorded.get("sha256"):
        return f"its sha256 {actual} differs from the recorded {recorded.get('sha256')}"
    try:
        reported = _probe_version(tool, binary)
    except _ProbeFailedError as exc:
        return str(exc)
    if reported != version:
        return f"it reports version {reported}"
    return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Generator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log.info("waiting for another process downloading into %s", path.parent)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _find_npm(tool: _Tool) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise NpmNotFoundError(
            f"{tool.name} is downloaded with npm, and `npm` is not on PATH. Install Node.js "
            "(it ships npm), e.g. with your OS package manager, or set "
            f"{tool.env} to the path of a {tool.name} binary."
        )
    return npm


def _run_npm(
    tool: _Tool, npm: str, args: list[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    command = [npm, *args]
    env = dict(os.environ)
    env.setdefault("npm_config_update_notifier", "false")
    env.setdefault("npm_config_fund", "false")
    env.setdefault("npm_config_audit", "false")
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise NpmError(
            f"`npm {' '.join(args)}` did not finish in {timeout:.0f} s. Is the registry "
            "reachable? Check `npm config get registry` and your proxy settings, or set "
            f"{tool.env} to an existing {tool.name} binary.",
            command=command,
            returncode=None,
            output=_text(exc.stderr)[-2000:],
        ) from None
    except OSError as exc:
        raise NpmError(
            f"cannot run {npm}: {exc}",
            command=command,
            returncode=None,
            output="",
        ) from None


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _published_integrity(tool: _Tool, npm: str, spec: str) -> str:
    args = ["view", spec, "dist.integrity", "--json"]
    proc = _run_npm(tool, npm, args, _NPM_VIEW_TIMEOUT)
    if proc.returncode != 0:
        error_code, summary = _npm_json_error(proc.stdout)
        output = (proc.stdout + proc.stderr)[-2000:]
        if error_code == "E404":
            raise PackageNotFoundError(
                f"the npm registry has no {spec} ({summary}). Check that this {tool.name} "
                "version exists (`npm view "
                f"{spec.rsplit('@', 1)[0]} versions`) and that npm uses a registry that "
                f"mirrors it (`npm config get registry`), or set {tool.env}.",
                command=[npm, *args],
                returncode=proc.returncode,
                output=output,
            )
        raise NpmError(
            f"`npm view {spec}` failed (exit {proc.returncode}): {summary or output[-500:]}. "
            f"Check your network and npm registry settings, or set {tool.env}.",
            command=[npm, *args],
            returncode=proc.returncode,
            output=output,
        )
    try:
        integrity = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        integrity = proc.stdout.strip()
    if not isinstance(integrity, str) or not integrity:
        raise PackageNotFoundError(
            f"the npm registry publishes no integrity hash for {spec} (is the version right?)",
            command=[npm, *args],
            returncode=proc.returncode,
            output=proc.stdout[-2000:],
        )
    return integrity


def _npm_json_error(stdout: str) -> tuple[str | None, str]:
    """The `error.code` and `error.summary` of npm's `--json` error output, if any."""
    try:
        document = json.loads(stdout)
    except ValueError:
        return None, ""
    if not isinstance(document, dict):
        return None, ""
    error = cast("dict[str, object]", document).get("error")
    if not isinstance(error, dict):
        return None, ""
    code = cast("dict[str, object]", error).get("code")
    summary = cast("dict[str, object]", error).get("summary")
    return (
        code if isinstance(code, str) else None,
        summary if isinstance(summary, str) else "",
    )


def sha512_digests(integrity: str) -> list[bytes]:
    """The sha512 digests in a Subresource-Integrity string (`sha512-<base64> ...`)."""
    digests: list[bytes] = []
    for token in integrity.split():
        algorithm, _, value = token.partition("-")
        if algorithm != "sha512":
            continue
        value = value.split("?", 1)[0]  # SRI allows `?options` after the hash
        try:
            digests.append(base64.b64decode(value, validate=True))
        except ValueError:
            continue
    return digests


def verify_integrity(tarball: Path, integrity: str) -> None:
    """Check a file against a Subresource-Integrity string carrying a sha512.

    Raises:
        IntegrityError: No sha512 in `integrity`, or the file's sha512 differs.
    """
    expected = sha512_digests(integrity)
    if not expected:
        raise IntegrityError(f"the registry's integrity {integrity!r} carries no sha512 hash")
    with tarball.open("rb") as f:
        actual = hashlib.file_digest(f, "sha512").digest()
    if actual not in expected:
        raise IntegrityError(
            f"{tarball.name} has sha512-{base64.b64encode(actual).decode()} but the registry "
            f"publishes {integrity}: the download is corrupt or was tampered with. Nothing "
            "was cached; retry, and if it persists check your npm registry or proxy."
        )


def _download(tool: _Tool, package: str, version: str, version_dir: Path) -> None:
    """Download, verify and install `package@version` into `version_dir` (lock held)."""
    npm = _find_npm(tool)
    spec = f"{package}@{version}"
    _log.info("downloading %s with npm", spec)
    integrity = _published_integrity(tool, npm, spec)
    workdir = Path(tempfile.mkdtemp(prefix=".download-", dir=version_dir))
    try:
        # A private npm cache: the only way to watch the download grow (npm prints no
        # progress when its output is not a terminal). Registry, proxy and auth settings
        # still come from the user's npm configuration.
        npm_cache = workdir / "npm-cache"
        args = ["pack", spec, "--pack-destination", str(workdir), "--cache", str(npm_cache)]
        with _DownloadProgress(spec, npm_cache):
            proc = _run_npm(tool, npm, [*args, "--json"], _NPM_PACK_TIMEOUT)
        tarballs = sorted(workdir.glob("*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            error_code, summary = _npm_json_error(proc.stdout)
            output = (proc.stdout + proc.stderr)[-2000:]
            error_type = PackageNotFoundError if error_code == "E404" else NpmError
            raise error_type(
                f"`npm pack {spec}` failed (exit {proc.returncode}): "
                f"{summary or output[-500:]}. Check your network and npm registry settings, "
                f"or set {tool.env}.",
                command=[npm, *args],
                returncode=proc.returncode,
                output=output,
            )
        _log.info("downloaded %s (%s); verifying its sha512", tarballs[0].name, _mb(tarballs[0]))
        verify_integrity(tarballs[0], integrity)
        staged = workdir / tool.name
        sha256 = _extract_binary(tool, tarballs[0], staged)
        try:
            reported = _probe_version(tool, staged)
        except _ProbeFailedError as exc:
            raise InvalidBinaryError(
                f"the {tool.name} from {spec} does not run on this machine: {exc}"
            ) from None
        if reported != version:
            raise InvalidBinaryError(f"{spec} holds {tool.name} {reported}, not {version}")
        metadata = {
            "package": package,
            "version": version,
            "integrity": integrity,
            "sha256": sha256,
        }
        staged_metadata = workdir / tool.metadata_name
        staged_metadata.write_text(json.dumps(metadata, indent=2) + "\n")
        # Binary first: a reader racing past the lock sees either the old pair, or a new binary
        # with old metadata (a mismatch, which sends it to wait on the lock), never a torn file.
        os.replace(staged, version_dir / tool.name)
        os.replace(staged_metadata, version_dir / tool.metadata_name)
        _log.info(
            "installed %s (%s on disk)", version_dir / tool.name, _mb(version_dir / tool.name)
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _mb(path: Path) -> str:
    return f"{size_on_disk(path) / 2**20:.1f} MiB"


def _tree_size(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(directory, name)).st_size
            except OSError:
                continue  # npm moves its temp files while we count
    return total


class _DownloadProgress:
    """Logs how much npm has downloaded so far, every couple of seconds, while it runs."""

    def __init__(self, spec: str, directory: Path) -> None:
        self._spec = spec
        self._directory = directory
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="npm-progress", daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        reported = 0
        while not self._done.wait(_PROGRESS_INTERVAL):
            size = _tree_size(self._directory)
            if size > reported:
                reported = size
                _log.info(
                    "downloading %s: %.1f MiB so far (%.0f s)",
                    self._spec,
                    size / 2**20,
                    time.monotonic() - started,
                )

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()


def _extract_binary(tool: _Tool, tarball: Path, destination: Path) -> str:
    """Write the tarball's executable to `destination` (mode 755); return its sha256."""
    member_name = tool.tarball_member
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            try:
                member = tar.getmember(member_name)
            except KeyError:
                raise InvalidBinaryError(f"{tarball.name} has no {member_name}") from None
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise InvalidBinaryError(f"{member_name} in {tarball.name} is not a file")
            _log.info("extracting %s (%.0f MiB)", tool.name, member.size / 2**20)
            digest = hashlib.sha256()
            fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
            with source, os.fdopen(fd, "wb") as out:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidBinaryError(f"cannot extract {tarball.name}: {exc}") from None
    os.chmod(destination, 0o755)  # the umask may have dropped bits at creation
    return digest.hexdigest()
