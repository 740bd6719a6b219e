"""Encoded exits <-> restate-sdk's TerminalError, and the markers this layer leaves in Restate."""

from __future__ import annotations

import json
from typing import cast

from restate.exceptions import RetryableError, TerminalError

from ..engine import EncodedExit, exit_tag

__all__ = [
    "DW_EXIT",
    "PARK_MARKER",
    "terminal_error",
    "exit_of",
    "is_cancellation",
    "ParkFailure",
    "parse_park_failure",
]

DW_EXIT = "dw.exit"
"""TerminalError metadata key holding the encoded exit of a failed step or workflow."""

PARK_MARKER = "dw.park:"
"""Prefix of the message Restate records when an execution parks on a failure."""

_STATUS = {"Failure": 422, "Defect": 500, "Interrupted": 409}


def _summary(exit: EncodedExit) -> str:
    tag = exit_tag(exit)
    if tag == "Failure":
        error = exit.get("error")
        if isinstance(error, dict):
            fields = ", ".join(f"{k}={v!r}" for k, v in error.items() if k != "_tag")
            return f"{error.get('_tag')}({fields})"
    if tag == "Defect":
        return f"{exit.get('type')}: {exit.get('message')}"
    if tag == "Interrupted":
        return "interrupted"
    return tag


def terminal_error(exit: EncodedExit) -> TerminalError:
    """The TerminalError that journals a failed exit: readable message, exit in metadata."""
    return TerminalError(
        _summary(exit),
        _STATUS.get(exit_tag(exit), 500),
        metadata={DW_EXIT: json.dumps(exit, separators=(",", ":"))},
    )


def exit_of(error: TerminalError) -> EncodedExit | None:
    """The encoded exit a TerminalError carries, or ``None`` if this layer did not make it."""
    raw = (error.metadata or {}).get(DW_EXIT)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return cast(EncodedExit, value) if isinstance(value, dict) else None


def is_cancellation(error: TerminalError) -> bool:
    """Whether a TerminalError is Restate's cancellation signal (not a failure we journaled)."""
    return error.status_code == 409 and exit_of(error) is None


class ParkFailure(RetryableError):
    """Raised out of a handler (or a ``ctx.run``) to park the execution on Restate.

    A `RetryableError` (the SDK's public way to fail an attempt with a message of one's own):
    Restate retries the invocation under the workflow's retry policy and pauses it when the
    attempts run out, and records the message as the invocation's last failure, so it carries
    the encoded cause for `poll`.
    """

    def __init__(self, cause: EncodedExit) -> None:
        self.cause = cause
        super().__init__(PARK_MARKER + json.dumps(cause, separators=(",", ":")), 500)


def parse_park_failure(message: str) -> EncodedExit | None:
    """The cause recorded by a `ParkFailure`, from Restate's last-failure message."""
    at = message.find(PARK_MARKER)
    if at < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(message[at + len(PARK_MARKER) :])
    except ValueError:
        return None
    return cast(EncodedExit, value) if isinstance(value, dict) else None
