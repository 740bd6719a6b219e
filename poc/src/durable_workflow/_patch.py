"""In-place patches: change a body while executions started on the old body are in flight."""

from __future__ import annotations

from ._context import in_branch, run_state
from ._errors import WorkflowDefinitionError

__all__ = ["patched", "deprecate_patch"]


def _check(patch_id: str, what: str) -> None:
    if not isinstance(patch_id, str) or not patch_id:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise WorkflowDefinitionError(f"{what} needs a non-empty patch id, got {patch_id!r}")
    if in_branch():
        # A branch's steps are journaled by name, not by position: whether the old code got
        # past this point in a branch is not something every engine can tell.
        raise WorkflowDefinitionError(
            f"{what} cannot be called inside a branch of a group (race_all, all_of, "
            "all_settled): call it before the group and pass the answer to the branches"
        )


async def patched(patch_id: str) -> bool:
    """Whether this execution takes the new branch of an in-place patch.

    Change a body without breaking the executions that started on the old one: keep the old
    code in the ``else`` branch. An execution that started before the patched body was
    deployed, and whose old body already ran past this point, gets ``False`` on every replay
    (its journal matches the old code); one started on the patched body gets ``True``. An
    execution that started on the old body but reaches this point only after the deploy may
    get either, depending on the engine (see `WorkflowEngine.patched`): both branches must be
    correct for it. The answer for one id is the same for the whole execution.

    Once no execution that started before the patch remains, replace the ``if`` with
    `deprecate_patch` and the new branch; once none started before that remains either, delete
    the call. On Restate, where each worker version is a deployment of its own and an
    execution finishes on the code it started with, the patched code only ever runs
    executions that started on it, and ``patched`` answers ``True`` without journaling
    anything (see "Deploying and upgrading" in the documentation).

    Args:
        patch_id: Names the patch, unique within the workflow, e.g. ``"add-fraud-check"``.

    Raises:
        OutsideWorkflow: called outside a workflow body.
        WorkflowDefinitionError: the id is empty, or the call is inside a branch of a group.

    Example:
        ```python
        @order_workflow.body
        async def run_order(order: Order) -> Receipt:
            if await patched("add-fraud-check"):
                await check_fraud(order)
            charge_id = await charge(order)
            ...
        ```
    """
    state = run_state("patched()")
    _check(patch_id, "patched()")
    return await state.engine.patched(state.execution, patch_id, deprecated=False)


async def deprecate_patch(patch_id: str) -> None:
    """Retire an in-place patch: every execution now takes its new branch.

    The second step of a patch's life, once no execution that started before the patch is in
    flight: ``if await patched(id): new() else: old()`` becomes ``await deprecate_patch(id)``
    followed by ``new()``. Executions started on the ``patched`` code replay unchanged, and
    executions started on this code can still be replayed by the ``patched`` code (a rollback).

    Args:
        patch_id: The id the `patched` call used.

    Raises:
        OutsideWorkflow: called outside a workflow body.
        WorkflowDefinitionError: the id is empty, or the call is inside a branch of a group.
    """
    state = run_state("deprecate_patch()")
    _check(patch_id, "deprecate_patch()")
    await state.engine.patched(state.execution, patch_id, deprecated=True)
