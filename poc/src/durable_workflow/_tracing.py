"""OpenTelemetry spans for workflow executions: one trace per execution, each step once.

Opt in with `enable_tracing` (the library needs only ``opentelemetry-api``; the application
supplies an ``opentelemetry-sdk`` TracerProvider). The model:

- the client's ``execute``/``start`` span is the parent of the execution; its W3C context
  travels with the submission (on Restate, in the invocation's input headers, which Restate
  journals), so it is durable;
- the execution span has a *deterministic* id (derived from the workflow name and execution
  id), so every step span, in any process and after any number of replays or crashes, names
  the same parent; it is emitted once, by the run that produces the final outcome;
- a step span (activity attempt, sleep, deferred wait, child workflow, race) is emitted only
  when the step happens live, never when its result is replayed from the journal;
- a child workflow's execution is parented to the parent's child-call span, whose id is
  deterministic too (the call's headers must be identical on replay).

Deterministic ids need the SDK's id generator hook: the application creates its provider with
``TracerProvider(id_generator=SpanIdGenerator())``, which draws random ids as the SDK's own
generator does, except for these two span kinds. `enable_tracing` checks that it did, and
changes nothing on the provider.
"""

from __future__ import annotations

import contextlib
import hashlib
import random as _random
import time
from collections import OrderedDict
from collections.abc import Generator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from ._errors import WorkflowDefinitionError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.id_generator import IdGenerator as _IdGeneratorBase
    from opentelemetry.trace import Span, Tracer
else:
    try:  # the SDK's base class when the SDK is installed, so TracerProvider accepts it
        from opentelemetry.sdk.trace.id_generator import IdGenerator as _IdGeneratorBase
    except ImportError:  # pragma: no cover - tracing then cannot be enabled anyway
        _IdGeneratorBase = object

__all__ = [
    "SpanIdGenerator",
    "enable_tracing",
    "disable_tracing",
    "tracing_enabled",
    "client_span",
    "ExecutionTrace",
    "START_HEADER",
]

START_HEADER = "x-durable-workflow-start-ns"
"""Header with the submission time, so the execution span's start is durable."""

_TRACER_NAME = "durable_workflow"
_FORCED: ContextVar[int | None] = ContextVar("durable_workflow_forced_span_id", default=None)
_tracer: Tracer | None = None
_MAX_EXECUTIONS = 10_000
_first_seen: OrderedDict[tuple[str, str], dict[str, int]] = OrderedDict()
"""Per execution, when this process first saw each step start, until its span is emitted or
its outcome replayed; an execution's entry goes when it finishes (and the oldest go past
``_MAX_EXECUTIONS``, for executions that finish in another process)."""


class SpanIdGenerator(_IdGeneratorBase):
    """The OpenTelemetry SDK id generator that tracing needs: random ids, as the SDK's own,
    except for the spans the library gives deterministic ids (executions and child calls),
    so every replay and every process names the same parent.

    Example:
        ```python
        provider = TracerProvider(id_generator=SpanIdGenerator())
        provider.add_span_processor(BatchSpanProcessor(exporter))
        enable_tracing(provider)
        ```
    """

    def __init__(self) -> None:
        self._random = _random.Random()

    def generate_span_id(self) -> int:
        """A random 64-bit span id, or the one the library chose for the span being started."""
        forced = _FORCED.get()
        if forced is not None:
            return forced
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        """A random 128-bit trace id."""
        return self._random.getrandbits(128) or 1

    def is_trace_id_random(self) -> bool:
        """Trace ids are random (W3C trace context level 2)."""
        return True


def enable_tracing(tracer_provider: Any = None) -> None:
    """Emit OpenTelemetry spans for executions and their steps, in this process.

    Call it in every process that runs bodies or starts workflows (worker and client).

    Args:
        tracer_provider: An ``opentelemetry.sdk.trace.TracerProvider`` created with
            ``id_generator=SpanIdGenerator()`` (default: the global provider, which must then
            be one).

    Raises:
        ImportError: ``opentelemetry-api`` is not installed.
        WorkflowDefinitionError: the provider does not use `SpanIdGenerator`.
    """
    global _tracer
    from opentelemetry import trace

    provider: Any = tracer_provider or trace.get_tracer_provider()
    generator = getattr(provider, "id_generator", None)
    if not isinstance(generator, SpanIdGenerator):
        raise WorkflowDefinitionError(
            "enable_tracing needs an opentelemetry-sdk TracerProvider created with "
            "TracerProvider(id_generator=durable_workflow.SpanIdGenerator()): it gives "
            "execution spans deterministic ids, so replays and crashes keep one parent per "
            f"execution (got {type(provider).__name__} with {type(generator).__name__})"
        )
    _tracer = provider.get_tracer(_TRACER_NAME)


def disable_tracing() -> None:
    """Stop emitting spans in this process."""
    global _tracer
    _tracer = None


def tracing_enabled() -> bool:
    """Whether `enable_tracing` is in effect."""
    return _tracer is not None


def _id64(text: str) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return value or 1


def _id128(text: str) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")
    return value or 1


def _traceparent(trace_id: int, span_id: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def _parse_traceparent(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    parts = value.split("-")
    if len(parts) != 4:
        return None
    try:
        trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    return (trace_id, span_id) if trace_id and span_id else None


def _context_of(trace_id: int, span_id: int) -> Any:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextlib.contextmanager
def client_span(
    operation: str, workflow: str, execution_id: str
) -> Generator[dict[str, str], None, None]:
    """A client span around ``execute``/``start``; yields the headers to submit with.

    Without tracing it yields an empty dict and does nothing.
    """
    if _tracer is None:
        yield {}
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind, Status, StatusCode

    kind = SpanKind.CLIENT if operation == "execute" else SpanKind.PRODUCER
    with _tracer.start_as_current_span(
        f"workflow.{operation} {workflow}",
        kind=kind,
        attributes={"workflow.name": workflow, "workflow.execution_id": execution_id},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        headers: dict[str, str] = {START_HEADER: str(time.time_ns())}
        propagate.inject(headers)
        try:
            yield headers
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("workflow.outcome", type(exc).__name__)
            raise


def _outcome(exit: Mapping[str, Any]) -> str:
    tag = str(exit.get("_tag"))
    if tag == "Failure":
        error: Any = exit.get("error")
        if isinstance(error, dict):
            return str(cast(dict[str, Any], error).get("_tag"))
        return tag
    if tag == "Defect":
        return f"Defect({exit.get('type')})"
    return tag


class ExecutionTrace:
    """The trace of one run of one execution (created per run; cheap when tracing is off)."""

    def __init__(self, workflow: str, execution_id: str, headers: Mapping[str, str]) -> None:
        self.workflow = workflow
        self.execution_id = execution_id
        parent = _parse_traceparent(headers.get("traceparent"))
        self.parent = parent
        self.trace_id = parent[0] if parent else _id128(f"trace:{workflow}/{execution_id}")
        self.span_id = _id64(f"execution:{workflow}/{execution_id}")
        started = headers.get(START_HEADER)
        key = (workflow, execution_id, "")
        self.start_ns = int(started) if started and started.isdigit() else _seen(key)
        self._context = _context_of(self.trace_id, self.span_id)

    @property
    def attributes(self) -> dict[str, str]:
        """The attributes every span of this execution carries."""
        return {"workflow.name": self.workflow, "workflow.execution_id": self.execution_id}

    def child_headers(self, child_workflow: str, child_id: str) -> dict[str, str]:
        """Deterministic headers for a child call: the child-call span is the child's parent."""
        span_id = self.child_span_id(child_workflow, child_id)
        return {"traceparent": _traceparent(self.trace_id, span_id)}

    def child_span_id(self, child_workflow: str, child_id: str) -> int:
        """The deterministic id of the span for calling a child."""
        return _id64(f"child:{self.workflow}/{self.execution_id}->{child_workflow}/{child_id}")

    def mark(self, step: str) -> None:
        """Remember when this process first saw a step start (the start of its span)."""
        _seen((self.workflow, self.execution_id, step))

    @contextlib.contextmanager
    def step(
        self,
        name: str,
        attributes: Mapping[str, Any],
        *,
        span_id: int | None = None,
        start_ns: int | None = None,
    ) -> Generator[Span | None, None, None]:
        """A live span for a step, as a child of the execution span."""
        if _tracer is None:
            yield None
            return
        token = _FORCED.set(span_id) if span_id is not None else None
        try:
            span = _tracer.start_span(
                name,
                context=self._context,
                attributes={**self.attributes, **attributes},
                start_time=start_ns,
            )
        finally:
            if token is not None:
                _FORCED.reset(token)
        from opentelemetry.trace import use_span

        try:
            with use_span(span, end_on_exit=False, record_exception=False):
                yield span
        finally:
            span.end()

    def emit(
        self,
        name: str,
        attributes: Mapping[str, Any],
        *,
        step: str,
        exit: Mapping[str, Any] | None = None,
        span_id: int | None = None,
        start_ns: int | None = None,
        replayed: bool = False,
    ) -> None:
        """Emit a finished step span (a wait that completed live), from its first sighting
        (or ``start_ns``, if earlier); a step whose outcome was ``replayed`` from the journal
        emits nothing (it was traced when it happened), and its sighting is forgotten."""
        steps = _first_seen.get((self.workflow, self.execution_id))
        start = steps.pop(step, None) if steps is not None else None
        if _tracer is None or replayed:
            return
        if start_ns is not None:
            start = start_ns if start is None else min(start, start_ns)
        with self.step(name, attributes, span_id=span_id, start_ns=start) as span:
            if span is not None and exit is not None:
                _set_outcome(span, exit)

    def finish(self, exit: Mapping[str, Any]) -> None:
        """Emit the execution span (once: by the run that produces the final outcome)."""
        if _tracer is None:
            return
        from opentelemetry.trace import SpanKind

        context = _context_of(*self.parent) if self.parent else None
        token = _FORCED.set(self.span_id)
        try:
            span = _tracer.start_span(
                f"workflow {self.workflow}",
                context=context,
                kind=SpanKind.CONSUMER if self.parent else SpanKind.INTERNAL,
                attributes=self.attributes,
                start_time=self.start_ns,
            )
        finally:
            _FORCED.reset(token)
        _set_outcome(span, exit)
        span.end()
        _forget(self.workflow, self.execution_id)


def _seen(key: tuple[str, str, str]) -> int:
    workflow, execution_id, step = key
    steps = _first_seen.get((workflow, execution_id))
    if steps is None:
        steps = _first_seen[(workflow, execution_id)] = {}
        while len(_first_seen) > _MAX_EXECUTIONS:
            _first_seen.popitem(last=False)
    found = steps.get(step)
    if found is None:
        found = steps[step] = time.time_ns()
    return found


def _forget(workflow: str, execution_id: str) -> None:
    """Drop every sighting of a finished execution's steps."""
    _first_seen.pop((workflow, execution_id), None)


def pending_sightings() -> int:
    """How many step sightings this process holds (for tests: finished executions hold none)."""
    return sum(len(steps) for steps in _first_seen.values())


def _set_outcome(span: Span, exit: Mapping[str, Any]) -> None:
    from opentelemetry.trace import Status, StatusCode

    outcome = _outcome(exit)
    span.set_attribute("workflow.outcome", outcome)
    if exit.get("_tag") != "Success":
        message = exit.get("message") if exit.get("_tag") == "Defect" else outcome
        span.set_status(Status(StatusCode.ERROR, str(message)))
        span.add_event(
            "exception",
            {"exception.type": outcome, "exception.message": str(message)},
        )


def set_outcome(span: Span | None, exit: Mapping[str, Any]) -> None:
    """Record an exit on a span (no-op for ``None``)."""
    if span is not None:
        _set_outcome(span, exit)
