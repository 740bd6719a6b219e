"""Deferred tokens: the string that names one deferred of one execution.

A token is base64url (no padding) of the JSON array ``[workflow, execution id, deferred name]``,
the layout of @effect/workflow's tokens, so a token can be built and read in any language.
Decoding tolerates what copying a token around does to it: surrounding whitespace and restored
``=`` padding.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, cast

from ._errors import MalformedToken

__all__ = ["encode_token", "decode_token"]


def encode_token(workflow: str, execution_id: str, deferred: str) -> str:
    """The token naming one deferred of one execution: base64url of a JSON array of the three.

    The same layout as @effect/workflow's tokens (``[workflow, execution id, deferred]``),
    without padding.
    """
    raw = json.dumps([workflow, execution_id, deferred], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, str, str]:
    """Split a token into (workflow, execution id, deferred name).

    Surrounding whitespace and ``=`` padding are accepted.

    Raises:
        MalformedToken: not base64url, not JSON, or not three non-empty strings.
    """
    if not isinstance(token, str) or not token.strip():  # pyright: ignore[reportUnnecessaryIsInstance]
        raise MalformedToken(str(token), "empty or not a string")
    text = token.strip().rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        parts: Any = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise MalformedToken(
            token, "not a token: expected the base64url text that token_for() returns"
        ) from None
    if (
        not isinstance(parts, list)
        or len(parts) != 3  # pyright: ignore[reportUnknownArgumentType]
        or not all(isinstance(p, str) and p for p in parts)  # pyright: ignore[reportUnknownVariableType]
    ):
        raise MalformedToken(token, "expected [workflow, execution id, deferred name]")
    workflow, execution_id, name = cast(list[str], parts)
    return workflow, execution_id, name
