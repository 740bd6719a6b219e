"""The conformance suite: every engine must pass it unchanged."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

import pytest

from .. import (
    Defect,
    Done,
    DuplicateStepName,
    ExecutionNotFound,
    Interrupted,
    MalformedToken,
    NondeterminismError,
    PayloadInvalid,
    Pending,
    UnknownToken,
    Workflow,
    WorkflowEngine,
    WorkflowNotRegistered,
)
from .._exit import success_json
from ._effects import SideEffects, eventually, poll_until
from .workflows import (
    FAIL_FAST_QUICK,
    SLEEP,
    Address,
    Approval,
    FanProbe,
    OutOfStock,
    Probe,
    Rejected,
    Shipment,
    TypesProbe,
    approval,
    children_wf,
    deadline_wf,
    defect_wf,
    deferred_wf,
    determinism_wf,
    drift_wf,
    duplicate_wf,
    fail_fast_wf,
    fan_wf,
    finalizer_wf,
    gate,
    gate_wf,
    greet_wf,
    interrupted_fan_wf,
    nested_wf,
    parent_wf,
    park_wf,
    parked_saga_wf,
    patch_wf,
    race_wf,
    raced_wf,
    replayed_fan_wf,
    retry_wf,
    saga_wf,
    self_cancel_wf,
    shipment_deferred,
    sleep_wf,
    types_wf,
)

__all__ = ["ConformanceEnv", "ConformanceSuite"]


class ConformanceEnv(Protocol):
    """What an engine's test setup provides to the suite (as the ``env`` fixture).

    The engine must have every workflow of `durable_workflow.testing.workflows.ALL_WORKFLOWS`
    registered and runnable, with ``DW_SIDE_EFFECTS_DIR`` pointing at ``effects.directory`` in
    the process that runs the bodies.
    """

    @property
    def engine(self) -> WorkflowEngine:
        """The engine under test."""
        ...

    @property
    def effects(self) -> SideEffects:
        """Where the conformance workflows record their side effects."""
        ...

    @property
    def live_events(self) -> bool:
        """Whether an event (a deferred's completion) reaches a run of the body while one of
        its activities is still running. Restate in request/response mode (HTTP/1.1) or with
        its inactivity timeout at 0 delivers it only once the running activity's attempt has
        ended; the outcome is the same, later."""
        ...

    async def advance(self, delta: timedelta) -> None:
        """Let ``delta`` of workflow time pass (virtual on a test clock, real otherwise)."""
        ...

    async def force_replay(self) -> None:
        """Make in-flight executions replay their bodies from the journal.

        An engine that replays at every wait anyway may do nothing; Restate restarts the
        service process, so the invocation is retried and replays.
        """
        ...

    async def deploy_patched_bodies(self) -> None:
        """Deploy the next version of the conformance workflows: the patched bodies
        (`durable_workflow.testing.workflows.use_patched_bodies`).

        Afterwards, executions in flight continue (their next replay may run the patched
        code, as an in-place deploy does), and executions started from now on start on the
        patched code. The memory engine swaps the bodies in place; Restate serves the patched
        version as a deployment of its own and registers it (the old one keeps serving what
        started there); Temporal restarts its worker with the patched bodies. Calling it again
        changes nothing.
        """
        ...


def _probe(**kwargs: Any) -> Probe:
    return Probe(run=f"r{uuid.uuid4().hex[:12]}", **kwargs)


async def _poll_done(env: ConformanceEnv, wf: Workflow[Any, Any], execution_id: str) -> Done[Any]:
    state = await poll_until(
        wf, execution_id, lambda s: isinstance(s, Done), engine=env.engine, what="to finish"
    )
    assert isinstance(state, Done)
    return state


async def _poll_parked(env: ConformanceEnv, wf: Workflow[Any, Any], execution_id: str) -> Pending:
    state = await poll_until(
        wf, execution_id, _is_parked, engine=env.engine, what=f"{wf.name} to park"
    )
    assert isinstance(state, Pending)
    return state


def _is_parked(state: Pending | Done[Any]) -> bool:
    return isinstance(state, Pending) and state.status == "parked"


class ConformanceSuite:
    """The scenarios of the workflow contract. Subclass it and provide an ``env`` fixture.

    Example:
        ```python
        class TestInMemory(ConformanceSuite):
            @pytest.fixture
            def env(self, tmp_path): ...
        ```

    Attributes:
        known_gaps: Scenarios this engine does not meet yet, by test name, each with the
            finding that says why (and where it is recorded). They are skipped with that
            reason, so a run lists every gap; the suite itself stays unchanged.
    """

    known_gaps: ClassVar[Mapping[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _skip_known_gaps(self, request: pytest.FixtureRequest) -> None:
        reason = self.known_gaps.get(request.node.originalname)  # pyright: ignore[reportUnknownMemberType, reportAttributeAccessIssue]
        if reason is not None:
            pytest.skip(f"known gap: {reason}")

    # -- execute, poll, ids --------------------------------------------------------------------

    async def test_execute_returns_the_result_and_poll_reports_it(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        assert await greet_wf.execute(p, engine=env.engine) == f"hello {p.run}"
        state = await greet_wf.poll(greet_wf.execution_id(p), engine=env.engine)
        assert isinstance(state, Done)
        assert state.result() == f"hello {p.run}"

    async def test_start_returns_the_deterministic_execution_id(self, env: ConformanceEnv) -> None:
        p = _probe()
        execution_id = await greet_wf.start(p, engine=env.engine)
        assert execution_id == greet_wf.execution_id(p)
        assert execution_id == greet_wf.execution_id(p.model_dump())
        assert len(execution_id) == 32
        done = await _poll_done(env, greet_wf, execution_id)
        assert done.result() == f"hello {p.run}"

    async def test_executing_a_payload_twice_runs_its_activity_once(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        first = await greet_wf.execute(p, engine=env.engine)
        second = await greet_wf.execute(p, engine=env.engine)
        assert first == second
        assert env.effects.count(f"{p.run}-greet") == 1

    async def test_concurrent_executes_of_one_payload_are_one_execution(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        results = await asyncio.gather(
            *(sleep_wf.execute(p, engine=env.engine) for _ in range(20)),
            _advance_when_waiting(env, f"{p.run}-sleep-body"),
        )
        assert results[:20] == [f"hello {p.run}"] * 20
        assert env.effects.count(f"{p.run}-greet") == 1

    async def test_poll_of_an_unknown_execution_raises_execution_not_found(
        self, env: ConformanceEnv
    ) -> None:
        with pytest.raises(ExecutionNotFound) as info:
            await greet_wf.poll("0" * 32, engine=env.engine)
        assert "0" * 32 in str(info.value)

    async def test_unregistered_workflow_is_refused(self, env: ConformanceEnv) -> None:
        stranger = Workflow("CfNeverRegistered", payload=Probe, success=str)
        with pytest.raises(WorkflowNotRegistered) as info:
            await stranger.execute(_probe(), engine=env.engine)
        assert "CfNeverRegistered" in str(info.value)

    async def test_invalid_payload_is_refused_before_anything_is_submitted(
        self, env: ConformanceEnv
    ) -> None:
        with pytest.raises(PayloadInvalid) as info:
            await greet_wf.execute({"run": 42, "fail_until": "many"}, engine=env.engine)
        message = str(info.value)
        assert "run" in message and "fail_until" in message
        assert env.effects.count("42-greet") == 0

    # -- clocks and children --------------------------------------------------------------------

    async def test_a_durable_sleep_completes(self, env: ConformanceEnv) -> None:
        p = _probe()
        execution_id = await sleep_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{p.run}-sleep-body") >= 1)
        assert env.effects.count(f"{p.run}-greet") == 0
        await env.advance(SLEEP)
        done = await _poll_done(env, sleep_wf, execution_id)
        assert done.result() == f"hello {p.run}"
        assert env.effects.count(f"{p.run}-greet") == 1

    async def test_a_parent_completes_after_its_sleeping_child(self, env: ConformanceEnv) -> None:
        p = _probe()
        execution_id = await parent_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{p.run}-child-sleep-body") >= 1)
        assert env.effects.count(f"{p.run}-parent-after-child") == 0
        await env.advance(SLEEP)
        done = await _poll_done(env, parent_wf, execution_id)
        assert done.result() == f"parent of hello {p.run}-child"
        child = await sleep_wf.poll(
            sleep_wf.execution_id(Probe(run=f"{p.run}-child")), engine=env.engine
        )
        assert isinstance(child, Done)
        assert env.effects.count(f"{p.run}-parent-after-child") == 1

    # -- activities -----------------------------------------------------------------------------

    async def test_retries_see_attempts_1_to_5_and_replay_reruns_none(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe(fail_until=5)
        execution_id = await retry_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{p.run}-flaky") >= 5)
        await env.force_replay()
        await env.advance(SLEEP)
        done = await _poll_done(env, retry_wf, execution_id)
        assert done.result() == 5
        assert env.effects.lines(f"{p.run}-flaky") == ["1", "2", "3", "4", "5"]

    async def test_an_activity_named_twice_fails_the_workflow_with_duplicate_step_name(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        with pytest.raises(DuplicateStepName) as info:
            await duplicate_wf.execute(p, engine=env.engine)
        assert info.value.kind == "activity" and info.value.name == "greet"
        assert ".named(" in str(info.value)
        assert env.effects.count(f"{p.run}-greet") == 1

    # -- deferreds ------------------------------------------------------------------------------

    async def test_a_deferred_completed_by_token_resumes_the_workflow(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        execution_id = await deferred_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{p.run}-before-wait") >= 1)
        token = approval.token_for(deferred_wf, execution_id)
        when = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
        await approval.succeed(token, Approval(by="ops", at=when), engine=env.engine)
        await approval.succeed(token, Approval(by="late", at=when), engine=env.engine)
        done = await _poll_done(env, deferred_wf, execution_id)
        assert done.result() == Approval(by="ops", at=when)

    async def test_a_completion_sent_before_the_wait_is_kept(self, env: ConformanceEnv) -> None:
        p = _probe()
        token = approval.token_from_payload(deferred_wf, p)
        when = datetime(2026, 5, 2, tzinfo=UTC)
        await approval.succeed(token, Approval(by="early", at=when), engine=env.engine)
        assert await deferred_wf.execute(p, engine=env.engine) == Approval(by="early", at=when)

    async def test_a_completion_racing_the_suspension_is_not_lost(
        self, env: ConformanceEnv
    ) -> None:
        probes = [_probe() for _ in range(5)]
        when = datetime(2026, 5, 3, tzinfo=UTC)
        for p in probes:
            await deferred_wf.start(p, engine=env.engine)
            token = approval.token_from_payload(deferred_wf, p)
            await approval.succeed(token, Approval(by=p.run, at=when), engine=env.engine)
        for p in probes:
            done = await _poll_done(env, deferred_wf, deferred_wf.execution_id(p))
            assert done.result().by == p.run

    async def test_a_deferred_failure_reaches_the_body_as_its_typed_error(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        token = approval.token_from_payload(deferred_wf, p)
        await deferred_wf.start(p, engine=env.engine)
        await approval.fail(token, Rejected(reason="no budget"), engine=env.engine)
        with pytest.raises(Rejected) as info:
            await deferred_wf.execute(p, engine=env.engine)
        assert info.value == Rejected(reason="no budget")

    async def test_malformed_and_unknown_tokens_are_refused(self, env: ConformanceEnv) -> None:
        when = datetime(2026, 5, 4, tzinfo=UTC)
        value = Approval(by="x", at=when)
        for bad in ["", "not a token!", "W10", "WyJhIiwiYiJd"]:
            with pytest.raises(MalformedToken):
                await approval.succeed(bad, value, engine=env.engine)
        stranger = approval.token_for("CfNoSuchWorkflow", "0" * 32)
        with pytest.raises(UnknownToken) as info:
            await approval.succeed(stranger, value, engine=env.engine)
        assert "CfNoSuchWorkflow" in str(info.value)
        other = shipment_deferred.token_for(deferred_wf, "0" * 32)
        with pytest.raises(UnknownToken):
            await approval.succeed(other, value, engine=env.engine)
        with pytest.raises(PayloadInvalid):
            await approval.succeed(
                approval.token_for(deferred_wf, "0" * 32),
                {"by": 1},  # type: ignore[arg-type]
                engine=env.engine,
            )

    async def test_a_completion_the_declared_deferreds_rule_out_is_refused(
        self, env: ConformanceEnv
    ) -> None:
        execution_id = deferred_wf.execution_id(_probe())
        engine = env.engine
        with pytest.raises(UnknownToken) as info:
            await engine.deferred_done(
                deferred_wf.name, execution_id, "DurableClock/nap", success_json(None)
            )
        assert "approval" in str(info.value)
        with pytest.raises(PayloadInvalid) as wrong:
            await engine.deferred_done(
                deferred_wf.name, execution_id, "approval", success_json({"by": 5})
            )
        assert "by" in str(wrong.value)
        with pytest.raises(PayloadInvalid):
            await engine.deferred_done(
                deferred_wf.name,
                execution_id,
                "approval",
                {"_tag": "Failure", "error": {"_tag": "NotDeclared"}},
            )

    # -- interrupts, compensation, finalizers --------------------------------------------------

    async def test_interrupt_runs_compensations_newest_first_and_finalizers(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        execution_id = await saga_wf.start(p, engine=env.engine)
        await eventually(lambda: "ship" in env.effects.lines(f"{p.run}-steps"))
        await saga_wf.interrupt(execution_id, engine=env.engine)
        done = await _poll_done(env, saga_wf, execution_id)
        with pytest.raises(Interrupted):
            done.result()
        assert env.effects.lines(f"{p.run}-steps") == [
            "reserve",
            "charge",
            "ship",
            "undo-charge",
            "undo-reserve",
            "finalize",
        ]
        assert env.effects.lines(f"{p.run}-outcome") == ["Interrupted"]
        assert env.effects.count(f"{p.run}-body-except") == 0
        assert env.effects.count(f"{p.run}-body-finally") >= 1

    async def test_an_interrupt_during_a_running_activity_lets_it_finish_and_compensates_it(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe(slow_s=1.0)
        execution_id = await saga_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.lines(f"{p.run}-started") == ["charge"])
        await saga_wf.interrupt(execution_id, engine=env.engine)
        done = await _poll_done(env, saga_wf, execution_id)
        with pytest.raises(Interrupted):
            done.result()
        # the charge ran to its end and was journaled, so it is compensated; ship never ran
        assert env.effects.lines(f"{p.run}-steps") == [
            "reserve",
            "charge",
            "undo-charge",
            "undo-reserve",
            "finalize",
        ]
        assert env.effects.lines(f"{p.run}-outcome") == ["Interrupted"]

    async def test_a_failure_after_compensated_steps_compensates_and_surfaces_the_typed_error(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe(fail=True)
        with pytest.raises(OutOfStock) as info:
            await saga_wf.execute(p, engine=env.engine)
        assert info.value == OutOfStock(sku="sku-1", requested=3)
        assert env.effects.lines(f"{p.run}-steps") == [
            "reserve",
            "charge",
            "ship",
            "undo-charge",
            "undo-reserve",
            "finalize",
        ]
        assert env.effects.lines(f"{p.run}-outcome") == ["OutOfStock"]
        assert set(env.effects.lines(f"{p.run}-body-except")) == {"OutOfStock"}

    async def test_finalizers_see_success_and_compensations_do_not_run(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        execution_id = await saga_wf.start(p, engine=env.engine)
        await eventually(lambda: "ship" in env.effects.lines(f"{p.run}-steps"))
        token = approval.token_for(saga_wf, execution_id)
        await approval.succeed(
            token, Approval(by="ok", at=datetime(2026, 1, 1, tzinfo=UTC)), engine=env.engine
        )
        done = await _poll_done(env, saga_wf, execution_id)
        assert done.result() == "shipped"
        assert env.effects.lines(f"{p.run}-steps") == ["reserve", "charge", "ship", "finalize"]
        assert env.effects.lines(f"{p.run}-outcome") == ["success"]

    async def test_interrupting_a_parent_interrupts_its_unfinished_child(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        execution_id = await parent_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{p.run}-child-sleep-body") >= 1)
        await parent_wf.interrupt(execution_id, engine=env.engine)
        done = await _poll_done(env, parent_wf, execution_id)
        with pytest.raises(Interrupted):
            done.result()
        child_id = sleep_wf.execution_id(Probe(run=f"{p.run}-child"))
        child = await _poll_done(env, sleep_wf, child_id)
        with pytest.raises(Interrupted):
            child.result()
        assert env.effects.count(f"{p.run}-child-greet") == 0

    # -- defects and parking --------------------------------------------------------------------

    async def test_an_unexpected_exception_is_captured_as_a_defect(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        with pytest.raises(Defect) as info:
            await defect_wf.execute(p, engine=env.engine)
        assert info.value.type_name == "ValueError"
        assert info.value.message == f"boom {p.run}"
        state = await defect_wf.poll(defect_wf.execution_id(p), engine=env.engine)
        assert isinstance(state, Done)

    async def test_suspend_on_failure_parks_and_resume_continues(self, env: ConformanceEnv) -> None:
        p = _probe()
        env.effects.set_flag(f"park-{p.run}")
        execution_id = await park_wf.start(p, engine=env.engine)
        parked = await _poll_parked(env, park_wf, execution_id)
        assert isinstance(parked.cause, Defect)
        assert "dependency down" in parked.cause.message
        env.effects.set_flag(f"park-{p.run}", on=False)
        await park_wf.resume(execution_id, engine=env.engine)
        done = await _poll_done(env, park_wf, execution_id)
        assert done.result() == "recovered"
        assert env.effects.count(f"{p.run}-greet") == 1
        assert env.effects.count(f"{p.run}-parkable") >= 2

    async def test_list_shows_each_execution_in_its_state_with_a_parked_ones_cause(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        env.effects.set_flag(f"park-{p.run}")
        parked_id = await park_wf.start(p, engine=env.engine)
        await _poll_parked(env, park_wf, parked_id)
        q = _probe()
        done_id = await greet_wf.start(q, engine=env.engine)
        await _poll_done(env, greet_wf, done_id)

        async def both_listed() -> bool:
            parked = {
                s.execution_id: s for s in await park_wf.list(status="parked", engine=env.engine)
            }
            done = {s.execution_id for s in await greet_wf.list(status="done", engine=env.engine)}
            return parked_id in parked and done_id in done

        await eventually(both_listed, what="the parked and the finished execution to be listed")
        (summary,) = [
            s for s in await park_wf.list(engine=env.engine) if s.execution_id == parked_id
        ]
        assert summary.status == "parked"
        assert isinstance(summary.cause, Defect) and "dependency down" in summary.cause.message
        assert summary.created_at is not None
        running = await greet_wf.list(status=["running", "suspended", "parked"], engine=env.engine)
        assert done_id not in {s.execution_id for s in running}
        env.effects.set_flag(f"park-{p.run}", on=False)
        await park_wf.resume(parked_id, engine=env.engine)
        await _poll_done(env, park_wf, parked_id)

    async def test_interrupting_a_parked_execution_compensates_and_ends_it_interrupted(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        env.effects.set_flag(f"park-{p.run}")
        execution_id = await parked_saga_wf.start(p, engine=env.engine)
        await _poll_parked(env, parked_saga_wf, execution_id)
        attempts = env.effects.count(f"{p.run}-parkable")
        await parked_saga_wf.interrupt(execution_id, engine=env.engine)
        done = await _poll_done(env, parked_saga_wf, execution_id)
        with pytest.raises(Interrupted):
            done.result()
        assert env.effects.lines(f"{p.run}-fan-steps") == [f"undo-hello {p.run}"]
        assert env.effects.lines(f"{p.run}-outcome") == ["Interrupted"]
        assert env.effects.count(f"{p.run}-greet") == 1
        assert env.effects.count(f"{p.run}-parkable") == attempts, "no attempt after the interrupt"

    # -- races ----------------------------------------------------------------------------------

    async def test_a_race_of_three_activities_is_won_by_the_fastest_and_replays_the_same(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        execution_id = await race_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{p.run}-race-winner") >= 1)
        await env.force_replay()
        await env.advance(SLEEP)
        done = await _poll_done(env, race_wf, execution_id)
        assert done.result() == "fast"
        # The race may have run again if the replay was forced before its outcome was
        # journaled (activities are at-least-once), so each branch started once or more; the
        # losers never finished either time.
        assert set(env.effects.lines(f"{p.run}-race-winner")) == {"fast"}
        assert set(env.effects.lines(f"{p.run}-race-start")) == {"fast", "medium", "slow"}
        await asyncio.sleep(3.2)  # longer than the slowest loser would take
        assert set(env.effects.lines(f"{p.run}-race-finish")) == {"fast"}

    async def test_a_race_of_a_deferred_against_a_clock(self, env: ConformanceEnv) -> None:
        timed_out, approved = _probe(), _probe()
        first = await deadline_wf.start(timed_out, engine=env.engine)
        second = await deadline_wf.start(approved, engine=env.engine)
        token = approval.token_for(deadline_wf, second)
        await approval.succeed(
            token, Approval(by="ops", at=datetime(2026, 1, 1, tzinfo=UTC)), engine=env.engine
        )
        assert (await _poll_done(env, deadline_wf, second)).result() == "approved by ops"
        await env.advance(SLEEP)
        assert (await _poll_done(env, deadline_wf, first)).result() == "deadline"

    # -- values and determinism -----------------------------------------------------------------

    async def test_typed_values_survive_the_journal(self, env: ConformanceEnv) -> None:
        shipment = Shipment(
            id="s1",
            at=datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC),
            to=Address(city="Lisbon", lines=["Rua A 1", "2º"]),
            weight_kg=1.25,
            tags={"fragile": 1},
        )
        p = TypesProbe(run=f"r{uuid.uuid4().hex[:12]}", shipment=shipment)
        execution_id = await types_wf.start(p, engine=env.engine)
        outside = shipment.model_copy(update={"id": "s2", "note": "from outside"})
        await shipment_deferred.succeed(
            shipment_deferred.token_for(types_wf, execution_id), outside, engine=env.engine
        )
        done = await _poll_done(env, types_wf, execution_id)
        original, stamped, received = done.result()
        assert original == shipment
        assert stamped.at == shipment.at + timedelta(days=1)
        assert stamped.tags == {"fragile": 1, "stamped": 1}
        assert stamped.to == shipment.to
        assert received == outside

    async def test_determinism_helpers_return_the_same_values_on_replay(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        execution_id = await determinism_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{p.run}-values") >= 1)
        await env.force_replay()
        await env.advance(SLEEP)
        done = await _poll_done(env, determinism_wf, execution_id)
        recorded = env.effects.lines(f"{p.run}-values")
        assert len(recorded) >= 2, "the body should have been replayed at least once"
        assert set(recorded) == {done.result()}
        r, u, t = json.loads(done.result())
        assert 0 <= r < 1 and uuid.UUID(u).version == 4 and datetime.fromisoformat(t)
        other = _probe()
        await determinism_wf.start(other, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{other.run}-values") >= 1)
        assert env.effects.lines(f"{other.run}-values")[0] != recorded[0]
        await env.advance(SLEEP)

    async def test_a_body_that_no_longer_matches_its_journal_parks_with_nondeterminism(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        execution_id = await drift_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{p.run}-greet") >= 1)
        env.effects.set_flag(f"drift-{p.run}")
        await env.force_replay()
        await env.advance(SLEEP)
        parked = await _poll_parked(env, drift_wf, execution_id)
        assert isinstance(parked.cause, NondeterminismError)
        assert "step-a" in str(parked.cause) and "step-b" in str(parked.cause)
        env.effects.set_flag(f"drift-{p.run}", on=False)
        await drift_wf.resume(execution_id, engine=env.engine)
        done = await _poll_done(env, drift_wf, execution_id)
        assert done.result() == "step-a"
        # Once, or twice if the replay was forced after greet ran but before its outcome was
        # journaled (activities are at-least-once; seen over HTTP/1.1 next to a CPU hog).
        assert env.effects.count(f"{p.run}-greet") in (1, 2)

    # -- groups: fan-out and fan-in ------------------------------------------------------------

    async def test_a_fan_out_of_100_activities_returns_results_in_order_at_most_10_at_once(
        self, env: ConformanceEnv
    ) -> None:
        p = FanProbe(run=_probe().run, items=100, concurrency=10, work_s=0.02)
        assert await fan_wf.execute(p, engine=env.engine) == [i * i for i in range(100)]
        events = env.effects.lines(f"{p.run}-fan-events")
        assert sorted(events) == sorted(
            [f"+{i}" for i in range(100)] + [f"-{i}" for i in range(100)]
        )
        assert 1 < _max_in_flight(events) <= 10

    async def test_twenty_child_workflows_are_fanned_out_and_joined(
        self, env: ConformanceEnv
    ) -> None:
        p = FanProbe(run=_probe().run, items=20)
        results = await children_wf.execute(p, engine=env.engine)
        assert results == [f"hello {p.run}-c{i}" for i in range(20)]
        for i in range(20):
            assert env.effects.count(f"{p.run}-c{i}-greet") == 1
            child = await greet_wf.poll(
                greet_wf.execution_id(Probe(run=f"{p.run}-c{i}")), engine=env.engine
            )
            assert isinstance(child, Done)

    async def test_a_failing_branch_fails_the_fan_out_interrupts_the_rest_and_compensates(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        with pytest.raises(OutOfStock) as info:
            await fail_fast_wf.execute(p, engine=env.engine)
        assert info.value == OutOfStock(sku="sku-fan", requested=FAIL_FAST_QUICK)
        done = [f"done-{i}" for i in range(FAIL_FAST_QUICK)]
        # finished branches compensated exactly once, newest first; the failing one was last
        assert env.effects.lines(f"{p.run}-fan-steps") == [
            *done,
            "fail",
            *(f"undo-{i}:done-{i}" for i in reversed(range(FAIL_FAST_QUICK))),
        ]
        for i in range(FAIL_FAST_QUICK + 1, 10):  # the branches still running were interrupted
            await eventually(
                lambda i=i: env.effects.lines(f"{p.run}-hang-{i}") == ["start", "cancelled"]
            )

    async def test_an_interrupt_during_a_fan_out_lets_running_activities_finish(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe(slow_s=1.0)
        execution_id = await interrupted_fan_wf.start(p, engine=env.engine)
        steps = f"{p.run}-fan-steps"
        await eventually(lambda: {"done-0", "done-1", "start-2"} <= set(env.effects.lines(steps)))
        await interrupted_fan_wf.interrupt(execution_id, engine=env.engine)
        done = await _poll_done(env, interrupted_fan_wf, execution_id)
        with pytest.raises(Interrupted):
            done.result()
        # the running activity finished and is compensated with the others, once, newest first
        lines = env.effects.lines(steps)
        assert sorted(lines[:3]) == ["done-0", "done-1", "start-2"]
        assert lines[3:] == ["done-2", "undo-done-2", "undo-done-1", "undo-done-0"]
        assert env.effects.lines(f"{p.run}-outcome") == ["Interrupted"]

    async def test_a_replay_in_the_middle_of_a_fan_out_runs_no_journaled_activity_again(
        self, env: ConformanceEnv
    ) -> None:
        p = FanProbe(run=_probe().run, items=30, concurrency=5, work_s=0.1)
        execution_id = await replayed_fan_wf.start(p, engine=env.engine)
        events = f"{p.run}-fan-events"
        await eventually(
            lambda: (
                env.effects.lines(events).count("-0") == 1
                and len([e for e in env.effects.lines(events) if e.startswith("-")]) >= 10
            )
        )
        await env.force_replay()
        await env.advance(SLEEP)
        done = await _poll_done(env, replayed_fan_wf, execution_id)
        assert done.result() == [i * i for i in range(30)]
        lines = env.effects.lines(events)
        ends = [e for e in lines if e.startswith("-")]
        assert sorted(set(ends)) == sorted(f"-{i}" for i in range(30))
        # only work in flight when the replay was forced may have run twice
        assert len(ends) - 30 <= 5

    async def test_a_race_winners_compensation_runs_when_the_workflow_fails(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        with pytest.raises(OutOfStock):
            await raced_wf.execute(p, engine=env.engine)
        assert env.effects.lines(f"{p.run}-fan-steps") == ["a", "undo-a"]

    async def test_a_race_inside_a_fan_out_and_a_fan_out_inside_a_race(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        assert await nested_wf.execute(p, engine=env.engine) == [
            [1, "fast", f"hello {p.run}"],
            [0, ["done-1", "done-2"]],
            ["done-3", "OutOfStock"],
        ]

    async def test_a_deferred_completed_while_another_branch_runs_wins_the_race(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe(slow_s=4.0)  # the busy branch would finish after 4 s
        execution_id = await gate_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.lines(f"{p.run}-hang-0") == ["start"])
        assert await gate.succeed(gate.token_for(gate_wf, execution_id), "open", engine=env.engine)
        done = await _poll_done(env, gate_wf, execution_id)
        assert done.result() == "0:open"
        if env.live_events:  # the completion cut in: the busy branch was interrupted
            await eventually(lambda: env.effects.lines(f"{p.run}-hang-0") == ["start", "cancelled"])

    async def test_an_activity_that_cancels_itself_fails_after_its_retries_instead_of_hanging(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        with pytest.raises(Defect) as info:
            await self_cancel_wf.execute(p, engine=env.engine)
        assert info.value.type_name == "asyncio.CancelledError"
        assert "cancels_itself" in info.value.message
        assert env.effects.lines(f"{p.run}-self-cancel") == ["1", "2", "3"]

    # -- upgrading a body in place ----------------------------------------------------------

    async def test_a_patch_keeps_a_waiting_execution_on_the_old_branch_and_new_ones_take_the_new(
        self, env: ConformanceEnv
    ) -> None:
        old = _probe()
        old_id = await patch_wf.start(old, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{old.run}-patch-waiting") >= 1)
        await env.deploy_patched_bodies()
        await env.force_replay()  # the waiting execution replays (on the patched code, in place)
        new = _probe()
        new_id = await patch_wf.start(new, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{new.run}-patch-waiting") >= 1)
        when = datetime(2026, 12, 2, tzinfo=UTC)
        for p, execution_id in ((old, old_id), (new, new_id)):
            token = approval.token_for(patch_wf, execution_id)
            await approval.succeed(token, Approval(by=p.run, at=when), engine=env.engine)
        assert (await _poll_done(env, patch_wf, old_id)).result() == f"old:{old.run}"
        assert (await _poll_done(env, patch_wf, new_id)).result() == f"new:{new.run}"
        assert env.effects.count(f"{old.run}-fraud-check") == 0
        assert env.effects.count(f"{new.run}-fraud-check") == 1
        assert env.effects.count(f"{old.run}-greet") == 1
        assert env.effects.count(f"{new.run}-greet") == 1

    async def test_a_finalizer_runs_once_however_often_the_body_was_replayed(
        self, env: ConformanceEnv
    ) -> None:
        p = _probe()
        execution_id = await finalizer_wf.start(p, engine=env.engine)
        await eventually(lambda: env.effects.count(f"{p.run}-finalizer-body") >= 1)
        await env.force_replay()
        await env.advance(SLEEP)
        await env.advance(SLEEP)
        done = await _poll_done(env, finalizer_wf, execution_id)
        assert done.result() == "slept twice"
        assert env.effects.lines(f"{p.run}-outcome") == ["success"]


def _max_in_flight(events: list[str]) -> int:
    running = peak = 0
    for event in events:
        running += 1 if event.startswith("+") else -1
        peak = max(peak, running)
    return peak


async def _advance_when_waiting(env: ConformanceEnv, key: str) -> None:
    await eventually(lambda: env.effects.count(key) >= 1)
    await env.advance(SLEEP)
