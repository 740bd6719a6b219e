"""`RestateEngine`: the engine contract on Restate, worker side and client side in one object."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, cast

import httpx
import restate
from restate.exceptions import TerminalError

from ..engine import (
    EncodedExit,
    EncodedPoll,
    EngineBase,
    EngineUnavailable,
    Execution,
    ExecutionNotFound,
    ExecutionParked,
    Json,
    RegisteredWorkflow,
    TokenError,
    WorkerUnreachable,
    WorkflowNotRegistered,
    decode_token,
    defect_json,
    nondeterminism_json,
    success_json,
)
from ._exits import DW_EXIT, parse_park_failure
from ._worker import COMPLETE_HANDLER, BodyOperations, build_services, run_body

__all__ = ["RestateEngine"]

_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")

JOURNAL_MISMATCH = "RT0016"
"""Restate's error code for a replay that no longer matches the journal (the SDK's 570)."""

_PARK_CHECK_AFTER = 1.0
"""Seconds an ``execute`` waits before it starts checking whether the execution parked."""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class RestateEngine(EngineBase, BodyOperations):
    """Runs portable workflows durably on Restate.

    One object serves both sides. In the worker process, `register` the workflows and serve
    `app()` (an ASGI app) with hypercorn (HTTP/2) or uvicorn (HTTP/1.1); register that
    deployment with `register_deployment`. In the application, `register` the same definitions
    (bodies optional) and use the workflows' operations; they go through Restate's ingress and
    admin APIs.

    Every execution is an ordinary Restate workflow: the service is the workflow's name, the key
    is the execution id, and the journal holds one entry per activity attempt (``ctx.run``
    named after the activity), clock (a named ``ctx.sleep``), deferred (a workflow promise
    named after the deferred) and group (a ``ctx.run`` named ``group:<name>``).

    Args:
        ingress_url: Restate's ingress, e.g. ``http://127.0.0.1:8080``.
        admin_url: Restate's admin API, e.g. ``http://127.0.0.1:9070``.
        retry_policy: Restate's retry policy for the ``run`` handlers (for retries of what is
            not an activity outcome: crashes, lost connections, a journal mismatch). Workflows
            that suspend on failure always get one attempt, then pause.
        timeout: Seconds to wait for Restate to answer a request (waiting for a result is not
            limited).

    Example:
        ```python
        engine = RestateEngine("http://127.0.0.1:8080", "http://127.0.0.1:9070")
        engine.register(order_workflow)
        app = engine.app()                     # worker: serve this ASGI app
        await engine.register_deployment("http://127.0.0.1:9080")
        with use_engine(engine):               # client
            receipt = await order_workflow.execute(order)
        ```
    """

    def __init__(
        self,
        ingress_url: str = "http://127.0.0.1:8080",
        admin_url: str = "http://127.0.0.1:9070",
        *,
        retry_policy: restate.InvocationRetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.ingress_url = ingress_url.rstrip("/")
        self.admin_url = admin_url.rstrip("/")
        self.retry_policy = retry_policy
        self.timeout = timeout
        self._http: httpx.AsyncClient | None = None

    # -- registration and serving -----------------------------------------------------------

    def _retry_policy(self, workflow: RegisteredWorkflow) -> restate.InvocationRetryPolicy | None:
        if workflow.suspend_on_failure:
            return restate.InvocationRetryPolicy(max_attempts=1, on_max_attempts="pause")
        return self.retry_policy

    def services(self) -> list[restate.Workflow | restate.Service]:
        """The Restate services for the registered workflows (and the token service)."""
        return build_services(
            self.workflows,
            retry_policy=self._retry_policy,
            run_workflow=self._run_workflow,
            complete_token=self._complete_token,
        )

    def app(
        self, *, protocol: Literal["bidi", "request_response"] | None = None
    ) -> Callable[..., Awaitable[None]]:
        """The ASGI app serving every registered workflow that has a body.

        Args:
            protocol: Force Restate's protocol mode; by default it follows the HTTP version
                (HTTP/2 bidirectional streaming, HTTP/1.1 request/response).
        """
        return cast(Callable[..., Awaitable[None]], restate.app(self.services(), protocol=protocol))

    async def _run_workflow(
        self, workflow: RegisteredWorkflow, ctx: restate.WorkflowContext, payload: bytes
    ) -> bytes:
        return await run_body(self, workflow, ctx, payload)

    async def _complete_token(self, ctx: restate.Context, request: bytes) -> bytes:
        try:
            body: Any = json.loads(request)
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            fields = cast(dict[str, Any], body)
            if "token" not in fields:
                raise ValueError("missing field 'token'")
            workflow, execution_id, name = decode_token(fields["token"])
        except (ValueError, TokenError) as exc:
            raise TerminalError(f"invalid deferred completion: {exc}", 400) from None
        if workflow not in self._workflows:
            raise TerminalError(
                f"unknown deferred token: workflow {workflow!r} is not served here", 404
            )
        if "exit" in fields:
            exit = fields["exit"]
        elif "error" in fields:
            exit = {"_tag": "Failure", "error": fields["error"]}
        else:
            exit = success_json(fields.get("value"))
        message = json.dumps({"name": name, "exit": exit}).encode()
        return await ctx.generic_call(workflow, COMPLETE_HANDLER, message, key=execution_id)

    async def register_deployment(self, uri: str, *, http1_1: bool = False) -> None:
        """Register (or re-register) the service at ``uri`` with Restate's admin API.

        Args:
            uri: Where the ASGI app is served, e.g. ``http://127.0.0.1:9080``.
            http1_1: The app is served over HTTP/1.1 (uvicorn): Restate then uses
                request/response mode.

        Raises:
            EngineUnavailable: the admin API is not reachable or refused the deployment.
            WorkerUnreachable: restate-server could not reach the worker at ``uri``.
        """
        response = await self._request(
            "POST",
            self.admin_url,
            "/deployments",
            json={"uri": uri, "use_http_11": http1_1, "force": True},
        )
        if response.status_code >= 300:
            text = response.text[:500]
            if _unreachable_worker(text):
                raise WorkerUnreachable(uri, f"restate-server says: {text}")
            raise EngineUnavailable(
                f"restate admin at {self.admin_url} refused deployment {uri}: "
                f"{response.status_code} {text}"
            )

    # -- HTTP plumbing: where transport errors become ours -----------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(timeout=self.timeout)
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> RestateEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(
        self, method: str, base: str, path: str, *, wait: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """``method`` on ``base + path``; ``base`` is the ingress or the admin URL, named in
        the error when it cannot be reached."""
        if wait:
            kwargs["timeout"] = httpx.Timeout(self.timeout, read=None)
        try:
            return await self._client().request(method, base + path, **kwargs)
        except httpx.TransportError as exc:
            api = "admin API" if base == self.admin_url else "ingress"
            raise EngineUnavailable(
                f"restate-server's {api} at {base} is not reachable ({type(exc).__name__}: {exc})"
            ) from exc

    async def _ingress(
        self,
        workflow: str,
        path: str,
        body: Json,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        wait: bool = False,
    ) -> httpx.Response:
        """POST to the ingress; a 404 means the workflow is not deployed, other refusals are
        `EngineUnavailable` naming ``what``."""
        response = await self._request(
            "POST",
            self.ingress_url,
            path,
            content=json.dumps(body),
            headers={**(headers or {}), "content-type": "application/json"},
            wait=wait,
        )
        if response.status_code == 404:
            raise WorkflowNotRegistered(
                workflow,
                reason=f"is not deployed on restate-server (ingress {self.ingress_url}): serve "
                "a worker that registers it and register that deployment "
                "(RestateEngine.register_deployment, or `python -m durable_workflow.restate "
                "serve ... --register ...`)",
            )
        if response.status_code >= 300:
            raise EngineUnavailable(
                f"restate ingress refused {what}: {response.status_code} {response.text[:500]}"
            )
        return response

    async def query(self, sql: str) -> list[dict[str, Any]]:
        """Run SQL on Restate's system tables (``sys_invocation``, ``sys_journal``, ...)."""
        response = await self._request(
            "POST",
            self.admin_url,
            "/query",
            json={"query": sql},
            headers={"accept": "application/json"},
        )
        if response.status_code != 200:
            raise EngineUnavailable(
                f"restate admin query failed: {response.status_code} {response.text[:500]}"
            )
        return cast(list[dict[str, Any]], response.json().get("rows", []))

    def _path(self, workflow: str, execution_id: str) -> str:
        for value in (workflow, execution_id):
            if not _SAFE.match(value):
                raise ExecutionNotFound(workflow, execution_id)
        return f"{workflow}/{execution_id}"

    # -- client side ------------------------------------------------------------------------

    async def execute(
        self,
        workflow: str,
        execution_id: str,
        payload: Json,
        *,
        discard: bool = False,
        parent: Execution | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> EncodedExit | None:
        """Submit ``run`` for the key (Restate deduplicates), then attach unless ``discard``.

        ``headers`` (trace context) go with the submission; Restate journals them.

        Raises:
            ExecutionParked: the execution parked while this call waited for it.
        """
        if parent is not None:
            return await self._child(parent, workflow, execution_id, payload, discard, headers)
        self._require(workflow)
        path = self._path(workflow, execution_id)
        await self._ingress(
            workflow,
            f"/{path}/run/send",
            payload,
            what=f"the start of {workflow}/{execution_id}",
            headers=headers,
        )
        if discard:
            return None
        attach = asyncio.ensure_future(
            self._request("GET", self.ingress_url, f"/restate/workflow/{path}/attach", wait=True)
        )
        try:
            response = await self._attach_unless_parked(workflow, execution_id, attach)
        finally:
            if not attach.done():
                attach.cancel()
        return self._exit_from_response(workflow, execution_id, response)

    async def _attach_unless_parked(
        self, workflow: str, execution_id: str, attach: asyncio.Future[httpx.Response]
    ) -> httpx.Response:
        """Wait for the attach; while it waits, look now and then whether the execution parked
        (Restate's attach would wait for a paused invocation for ever)."""
        delay = _PARK_CHECK_AFTER
        while True:
            done, _ = await asyncio.wait({attach}, timeout=delay)
            if done:
                return attach.result()
            delay = min(delay * 2, 10.0)
            state = await self.poll(workflow, execution_id)
            if state.get("_tag") == "Pending" and state.get("status") == "parked":
                cause = state.get("cause")
                raise ExecutionParked(
                    workflow,
                    execution_id,
                    encoded_cause=cast(EncodedExit, cause) if isinstance(cause, dict) else None,
                )

    def _exit_from_response(
        self, workflow: str, execution_id: str, response: httpx.Response
    ) -> EncodedExit:
        if response.status_code == 200:
            return success_json(cast(Json, response.json()) if response.content else None)
        if response.status_code == 404:
            raise ExecutionNotFound(workflow, execution_id)
        try:
            body: dict[str, Any] = response.json()
            if not isinstance(body, dict):  # pyright: ignore[reportUnnecessaryIsInstance]
                body = {}
        except ValueError:
            body = {}
        metadata: Any = body.get("metadata")
        raw: Any = (
            cast(dict[str, Any], metadata).get(DW_EXIT) if isinstance(metadata, dict) else None
        )
        if isinstance(raw, str):
            return cast(EncodedExit, json.loads(raw))
        if response.status_code == 409:
            return {"_tag": "Interrupted"}
        message = str(body.get("message") or response.text)
        return defect_json("restate.TerminalError", f"[{response.status_code}] {message}")

    async def _invocation(self, workflow: str, execution_id: str) -> dict[str, Any]:
        self._path(workflow, execution_id)
        rows = await self.query(
            "SELECT * FROM sys_invocation WHERE target_service_name = "
            f"{_quote(workflow)} AND target_service_key = {_quote(execution_id)} "
            "AND target_handler_name = 'run' ORDER BY created_at DESC LIMIT 1"
        )
        if not rows:
            raise ExecutionNotFound(workflow, execution_id)
        return rows[0]

    async def poll(self, workflow: str, execution_id: str) -> EncodedPoll:
        """``Done`` from the ingress output, else ``Pending`` with Restate's invocation status."""
        self._require(workflow)
        path = self._path(workflow, execution_id)
        response = await self._request("GET", self.ingress_url, f"/restate/workflow/{path}/output")
        if response.status_code == 404:
            raise ExecutionNotFound(workflow, execution_id)
        if response.status_code != 470:
            return {
                "_tag": "Done",
                "exit": self._exit_from_response(workflow, execution_id, response),
            }
        row = await self._invocation(workflow, execution_id)
        if row.get("status") == "paused" and not row.get("last_failure"):
            row = {**row, **await self._pause_failure(str(row["id"]))}
        return _pending(workflow, execution_id, row)

    async def _pause_failure(self, invocation_id: str) -> dict[str, Any]:
        """The failure that paused an invocation (kept in its journal's ``Paused`` event)."""
        rows = await self.query(
            "SELECT event_json FROM sys_journal_events WHERE id = "
            f"{_quote(invocation_id)} AND event_type = 'Paused' ORDER BY appended_at DESC LIMIT 1"
        )
        if not rows:
            return {}
        try:
            event: dict[str, Any] = json.loads(str(rows[0].get("event_json")))
            failure: dict[str, Any] = event.get("last_failure") or {}
        except ValueError:
            return {}
        return {
            "last_failure": failure.get("error_message"),
            "last_failure_error_code": failure.get("error_code"),
        }

    async def interrupt(self, workflow: str, execution_id: str) -> None:
        """Cancel the execution's invocation (Restate cancellation, compensations still run)."""
        row = await self._invocation(workflow, execution_id)
        if row.get("status") == "completed":
            return
        await self._admin_patch(f"invocations/{row['id']}/cancel")

    async def resume(self, workflow: str, execution_id: str) -> None:
        """Resume a paused invocation (parked on failure); a no-op otherwise."""
        row = await self._invocation(workflow, execution_id)
        if row.get("status") == "paused":
            await self._admin_patch(f"invocations/{row['id']}/resume")

    async def _admin_patch(self, path: str) -> None:
        response = await self._request("PATCH", self.admin_url, f"/{path}")
        if response.status_code >= 300:
            raise EngineUnavailable(
                f"restate admin refused {path}: {response.status_code} {response.text[:500]}"
            )

    async def deferred_done(
        self, workflow: str, execution_id: str, name: str, exit: EncodedExit
    ) -> bool:
        """Call the workflow's ``complete_deferred`` handler and return its answer.

        Restate accepts the call durably before the handler runs: if the worker is down, the
        completion is delivered when it is back, and this call waits for the answer meanwhile
        (an idempotency key makes the wait safe to retry).

        Raises:
            UnknownToken, PayloadInvalid: the workflow's declared deferreds refuse it.
        """
        self._require(workflow).check_completion(name, exit)
        path = self._path(workflow, execution_id)
        response = await self._ingress(
            workflow,
            f"/{path}/{COMPLETE_HANDLER}",
            {"name": name, "exit": exit},
            what=f"the completion of {name!r}",
            headers={"idempotency-key": uuid.uuid4().hex},
            wait=True,
        )
        if response.status_code != 200:
            raise EngineUnavailable(
                f"restate ingress refused the completion of {name!r}: "
                f"{response.status_code} {response.text[:500]}"
            )
        answer: Any = response.json()
        if not isinstance(answer, dict):
            return False
        return bool(cast(dict[str, Any], answer).get("accepted"))


def _unreachable_worker(text: str) -> bool:
    lowered = text.lower()
    return any(
        hint in lowered
        for hint in ("error trying to connect", "connection refused", "trying to reach", "meta0003")
    )


def _pending(workflow: str, execution_id: str, row: dict[str, Any]) -> EncodedPoll:
    status = str(row.get("status"))
    failure = str(row.get("last_failure") or "")
    code = str(row.get("last_failure_error_code") or "")
    cause: EncodedExit | None = parse_park_failure(failure) if failure else None
    if code == JOURNAL_MISMATCH:
        cause = nondeterminism_json(
            f"{workflow}/{execution_id}: the body no longer matches its journal: {failure}"
        )
    if status == "paused" or (cause is not None and status == "backing-off"):
        return {"_tag": "Pending", "status": "parked", "cause": cause}
    if status == "suspended":
        return {"_tag": "Pending", "status": "suspended", "cause": None}
    return {"_tag": "Pending", "status": "running", "cause": cause}
