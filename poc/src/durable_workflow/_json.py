"""The JSON value type shared by the codec and the engines."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["Json", "JsonObject"]

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"
"""A value that is valid JSON once serialized: what engines store and transport."""

JsonObject: TypeAlias = "dict[str, Json]"
"""A JSON object: the shape of every encoded exit, poll and journal entry."""
