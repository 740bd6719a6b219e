"""Secret fields: encrypted before they reach any journal, decrypted when read back.

A field typed ``pydantic.SecretStr`` (or ``SecretBytes``) is a secret. pydantic already masks
it in ``repr``/``str`` (so it stays out of logs, error messages and span attributes); this
module keeps it out of the journal: when a value is encoded to JSON, every secret becomes
``{"$dw_secret": "v1:<key id>:<ciphertext>"}``, encrypted with a key the application supplies.

The cipher is AES-SIV (deterministic authenticated encryption): the same plaintext under the
same key gives the same ciphertext. That keeps encoded payloads stable, which the execution id
(derived from the payload) and Restate's replay checks (a child's payload is compared on
replay) both need. The cost: equal secrets are visibly equal in the journal.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets as _secrets
from collections.abc import Generator
from contextvars import ContextVar
from typing import Any, cast

from pydantic import SecretBytes, SecretStr

from ._errors import WorkflowError
from ._json import Json

__all__ = [
    "SECRET_TAG",
    "SECRET_KEYS_ENV",
    "SecretKeyError",
    "SecretKeyMissing",
    "SecretKeyInvalid",
    "use_secret_keys",
    "generate_secret_key",
    "seal",
    "unseal",
    "has_sealed",
]

SECRET_TAG = "$dw_secret"
"""The key of the JSON object that replaces a secret in encoded values."""

SECRET_KEYS_ENV = "DW_SECRET_KEYS"
"""Environment variable with comma-separated keys (the first encrypts, all decrypt)."""

_ASSOCIATED = b"durable_workflow secret v1"


class SecretKeyError(WorkflowError):
    """A secret could not be encrypted or decrypted with the configured keys."""


class SecretKeyMissing(SecretKeyError):
    """A value has secret fields but no key is configured."""


class SecretKeyInvalid(SecretKeyError):
    """A secret was encrypted with a key that is not configured, or it was tampered with."""


class _Key:
    def __init__(self, raw: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESSIV

        if len(raw) not in (32, 48, 64):
            raise SecretKeyInvalid("a secret key must be 32, 48 or 64 bytes (base64url-encoded)")
        self.id = hashlib.sha256(raw).hexdigest()[:8]
        self._cipher = AESSIV(raw)

    def encrypt(self, plaintext: bytes) -> str:
        token = self._cipher.encrypt(plaintext, [_ASSOCIATED])
        return f"v1:{self.id}:{base64.urlsafe_b64encode(token).decode().rstrip('=')}"

    def decrypt(self, token: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        body = token.split(":", 2)[2]
        try:
            return self._cipher.decrypt(
                base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), [_ASSOCIATED]
            )
        except (InvalidTag, ValueError) as exc:
            raise SecretKeyInvalid(f"secret with key id {self.id} failed to decrypt") from exc


_CONFIGURED: ContextVar[list[_Key] | None] = ContextVar(
    "durable_workflow_secret_keys", default=None
)


def _parse(key: str | bytes) -> _Key:
    if isinstance(key, bytes):
        return _Key(key)
    try:
        return _Key(base64.urlsafe_b64decode(key.strip() + "=" * (-len(key.strip()) % 4)))
    except (ValueError, TypeError) as exc:
        raise SecretKeyInvalid(f"a secret key must be base64url-encoded bytes: {exc}") from None


@contextlib.contextmanager
def use_secret_keys(*keys: str | bytes) -> Generator[None]:
    """Use these keys for secret fields in this context (the first one encrypts), like
    `use_engine` chooses the engine: what runs inside the ``with`` block, and the tasks it
    starts, see them.

    Keys are 32, 48 or 64 random bytes, base64url-encoded (see `generate_secret_key`). Every
    process that encodes or decodes the values needs them: the client (payloads, deferred
    values) and the worker (bodies, activities). Outside such a block, ``DW_SECRET_KEYS``
    (comma-separated keys, the first encrypts) is read; ``use_secret_keys()`` with no key
    means "no key here", whatever the environment says.

    Raises:
        SecretKeyInvalid: a key is not base64url or not 32, 48 or 64 bytes long.

    Example:
        ```python
        with use_secret_keys(os.environ["PAYMENTS_KEY"]), use_engine(engine):
            await payments.execute(payment)
        ```
    """
    token = _CONFIGURED.set([_parse(k) for k in keys])
    try:
        yield
    finally:
        _CONFIGURED.reset(token)


def generate_secret_key() -> str:
    """A new random 64-byte key, base64url-encoded."""
    return base64.urlsafe_b64encode(_secrets.token_bytes(64)).decode().rstrip("=")


def _keys() -> list[_Key]:
    configured = _CONFIGURED.get()
    if configured is not None:
        return configured
    raw = os.environ.get(SECRET_KEYS_ENV, "")
    return [_parse(k) for k in raw.split(",") if k.strip()]


def _encrypt(plaintext: bytes) -> str:
    keys = _keys()
    if not keys:
        raise SecretKeyMissing(
            "a value has secret fields (SecretStr/SecretBytes) but no key is configured: wrap the "
            f"call in `with durable_workflow.use_secret_keys(key):` or set {SECRET_KEYS_ENV}"
        )
    return keys[0].encrypt(plaintext)


def _decrypt(token: str) -> bytes:
    keys = _keys()
    if not keys:
        raise SecretKeyMissing(
            f"the journal holds an encrypted secret but no key is configured: wrap the "
            f"call in `with durable_workflow.use_secret_keys(key):` or set {SECRET_KEYS_ENV}"
        )
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != "v1":
        raise SecretKeyInvalid("malformed encrypted secret")
    for key in keys:
        if key.id == parts[1]:
            return key.decrypt(token)
    raise SecretKeyInvalid(
        f"the secret was encrypted with key id {parts[1]}, which is not configured "
        f"(configured: {', '.join(k.id for k in keys)})"
    )


def seal(json_value: Json, python_value: Any) -> Json:
    """Replace every secret in ``json_value`` (pydantic's JSON dump, where secrets are masked)
    with its encrypted form, taking the plaintext from ``python_value`` (the Python dump)."""
    if isinstance(python_value, SecretStr):
        return {SECRET_TAG: _encrypt(python_value.get_secret_value().encode())}
    if isinstance(python_value, SecretBytes):
        return {SECRET_TAG: _encrypt(python_value.get_secret_value()), "bytes": True}
    if isinstance(json_value, dict) and isinstance(python_value, dict):
        py = cast(dict[str, Any], python_value)
        return {k: seal(v, py.get(k)) for k, v in json_value.items()}
    if isinstance(json_value, list) and isinstance(python_value, list | tuple):
        py_items = list(cast(list[Any], python_value))
        if len(py_items) == len(json_value):
            return [seal(v, p) for v, p in zip(json_value, py_items, strict=True)]
    return json_value


def unseal(value: Json) -> Any:
    """Decrypt every sealed secret in an encoded value (before pydantic validates it)."""
    if isinstance(value, dict):
        token = value.get(SECRET_TAG)
        if isinstance(token, str):
            plaintext = _decrypt(token)
            return plaintext if value.get("bytes") else plaintext.decode()
        return {k: unseal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unseal(v) for v in value]
    return value


def has_sealed(value: Json) -> bool:
    """Whether an encoded value contains a sealed secret."""
    if isinstance(value, dict):
        return SECRET_TAG in value or any(has_sealed(v) for v in value.values())
    if isinstance(value, list):
        return any(has_sealed(v) for v in value)
    return False
