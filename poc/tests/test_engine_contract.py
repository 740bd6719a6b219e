"""The engine interface for engine authors: what is checked, and when."""

from __future__ import annotations

import re
from typing import Any

import pytest

from durable_workflow import InMemoryEngine, use_engine
from durable_workflow.engine import OPERATIONS, EngineBase, EngineDefinitionError, check_engine


def test_an_engine_class_missing_operations_fails_where_it_is_defined_naming_them() -> None:
    with pytest.raises(EngineDefinitionError) as info:

        class Half(EngineBase):
            async def execute(self, *args: Any, **kwargs: Any) -> None: ...

    message = str(info.value)
    assert "Half" in message
    for missing in ("poll", "sleep", "concurrently", "activity_execute"):
        assert f"{missing} is missing" in message
    assert not re.search(r"\bexecute is missing", message)


def test_a_waiting_operation_defined_without_async_is_refused() -> None:
    namespace: dict[str, Any] = {name: (lambda self, *a, **k: None) for name in OPERATIONS}
    with pytest.raises(EngineDefinitionError) as info:
        type("Sync", (EngineBase,), namespace)
    assert "sleep must be an `async def`" in str(info.value)


def test_an_intermediate_base_class_can_opt_out_with_abstract() -> None:
    class Base(EngineBase, abstract=True):
        pass

    assert issubclass(Base, EngineBase)


def test_use_engine_refuses_an_object_that_is_not_a_whole_engine() -> None:
    class Stranger:
        async def execute(self) -> None: ...

    with pytest.raises(EngineDefinitionError) as info, use_engine(Stranger()):  # type: ignore[arg-type]
        pass
    assert "Stranger is not a complete WorkflowEngine" in str(info.value)
    check_engine(InMemoryEngine())  # the in-memory engine is complete
