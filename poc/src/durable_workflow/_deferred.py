"""`DurableDeferred`: a named slot a workflow awaits, completed from outside with a token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from ._codec import Codec
from ._context import RunState, run_state
from ._engine import WorkflowEngine, current_engine
from ._errors import PayloadInvalid, UnknownToken, WorkflowDefinitionError
from ._exit import EncodedExit, decode_exit, failure_json, success_json
from ._step import Step
from ._tokens import decode_token, encode_token
from ._typed_error import TypedError

if TYPE_CHECKING:
    from ._workflow import Workflow

__all__ = ["DurableDeferred", "DeferredWait", "encode_token", "decode_token"]

T = TypeVar("T")


class DeferredWait(Step[T]):
    """Waiting for a deferred: a `Step` that completes with the deferred's value."""

    kind: ClassVar[str] = "deferred"
    scoped_name: ClassVar[bool] = False  # the slot is named for the whole execution

    def __init__(self, deferred: DurableDeferred[T]) -> None:
        super().__init__(deferred.name)
        self.deferred = deferred

    def claim(self, state: RunState) -> str:
        # A deferred is a slot, not a step: waiting for it twice returns the same outcome.
        return self.name

    async def run_encoded(self, state: RunState, name: str) -> EncodedExit:
        trace = state.trace
        if trace is not None:
            trace.mark(f"deferred:{self.name}")
        exit = await state.engine.deferred_result(state.execution, self.name)
        if trace is not None:
            trace.emit(
                f"deferred {self.name}",
                {"deferred.name": self.name},
                step=f"deferred:{self.name}",
                exit=exit,
                replayed=state.engine.is_replaying(state.execution),
            )
        return exit

    def decode(self, exit: EncodedExit) -> T:
        return decode_exit(exit, self.deferred.codec, self.deferred.errors).result()


class DurableDeferred(Generic[T]):
    """A named slot a workflow body waits for, completed from anywhere with its token.

    The first completion wins; later ones are ignored. A completion that arrives before the
    body reaches its wait is kept.

    Args:
        name: The deferred's name, unique within its workflow.
        success: The value type (default: no value).
        errors: `TypedError` classes a completion may fail with.

    Example:
        ```python
        confirmed = DurableDeferred("warehouse-confirmed", success=Confirmation)

        # in the body
        confirmation = await confirmed.wait()

        # anywhere else, with the token
        await confirmed.succeed(token, Confirmation(slot="A7"))
        ```
    """

    @overload
    def __init__(
        self: DurableDeferred[None],
        name: str,
        *,
        errors: Sequence[type[TypedError]] = (),
    ) -> None: ...
    @overload
    def __init__(
        self,
        name: str,
        *,
        success: type[T],
        errors: Sequence[type[TypedError]] = (),
    ) -> None: ...
    def __init__(
        self,
        name: str,
        *,
        success: Any = None,
        errors: Sequence[type[TypedError]] = (),
    ) -> None:
        if not name:
            raise WorkflowDefinitionError("a DurableDeferred needs a non-empty name")
        self.name = name
        self.codec: Codec[T] = Codec(
            type(None) if success is None else success, f"value of deferred {name!r}"
        )
        self.errors: tuple[type[TypedError], ...] = tuple(errors)
        for err in self.errors:
            err.fields_model()

    def wait(self) -> DeferredWait[T]:
        """In a body: a step that waits for the deferred's completion."""
        return DeferredWait(self)

    def token(self) -> str:
        """In a body: the token that completes this deferred for the current execution."""
        state = run_state("DurableDeferred.token()")
        return encode_token(state.execution.workflow_name, state.execution.execution_id, self.name)

    def token_for(self, workflow: Workflow[Any, Any] | str, execution_id: str) -> str:
        """The token for this deferred in the given execution of ``workflow``."""
        name = workflow if isinstance(workflow, str) else workflow.name
        return encode_token(name, execution_id, self.name)

    def token_from_payload(self, workflow: Workflow[Any, Any], payload: Any) -> str:
        """The token for this deferred in the execution ``workflow`` runs for ``payload``."""
        return encode_token(workflow.name, workflow.execution_id(payload), self.name)

    def _target(self, token: str, engine: WorkflowEngine) -> tuple[str, str]:
        workflow, execution_id, name = decode_token(token)
        if name != self.name:
            raise UnknownToken(token, f"it names deferred {name!r}, not {self.name!r}")
        if not engine.is_registered(workflow):
            raise UnknownToken(token, f"workflow {workflow!r} is not registered with this engine")
        return workflow, execution_id

    async def succeed(self, token: str, value: T, *, engine: WorkflowEngine | None = None) -> bool:
        """Complete the deferred with a value.

        Returns:
            ``True`` if this completion was recorded; ``False`` if an earlier one had won
            (the first completion wins, later ones change nothing).

        Raises:
            MalformedToken: the token cannot be decoded.
            UnknownToken: it names another deferred or an unregistered workflow.
            PayloadInvalid: the value does not match ``success``.
        """
        engine = engine or current_engine()
        workflow, execution_id = self._target(token, engine)
        return await _complete(
            engine, token, workflow, execution_id, self.name, success_json(self.codec.encode(value))
        )

    async def fail(
        self, token: str, error: TypedError, *, engine: WorkflowEngine | None = None
    ) -> bool:
        """Complete the deferred with one of its declared errors (raised in the waiting body).

        Returns:
            ``True`` if this completion was recorded; ``False`` if an earlier one had won.

        Raises:
            MalformedToken: the token cannot be decoded.
            UnknownToken: it names another deferred or an unregistered workflow.
            PayloadInvalid: the error is not one of the declared ``errors``.
        """
        if not any(isinstance(error, cls) for cls in self.errors):
            declared = ", ".join(c.__name__ for c in self.errors) or "none"
            raise PayloadInvalid(
                f"failure of deferred {self.name!r}",
                [
                    {
                        "loc": ("error",),
                        "msg": f"{type(error).__name__} is not declared in errors= "
                        f"(declared: {declared})",
                    }
                ],
            )
        engine = engine or current_engine()
        workflow, execution_id = self._target(token, engine)
        return await _complete(
            engine, token, workflow, execution_id, self.name, failure_json(error)
        )

    def __repr__(self) -> str:
        return f"<DurableDeferred {self.name!r}>"


async def _complete(
    engine: WorkflowEngine,
    token: str,
    workflow: str,
    execution_id: str,
    name: str,
    exit: EncodedExit,
) -> bool:
    try:
        return await engine.deferred_done(workflow, execution_id, name, exit)
    except UnknownToken as exc:
        if exc.token is None:  # quote the token the caller sent, not one rebuilt from parts
            raise UnknownToken(token, exc.reason) from None
        raise
