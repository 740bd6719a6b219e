"""`RestateEngine`: the engine contract on Restate, worker side and client side in one object."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, cast

import httpx
import restate
from restate.exceptions import TerminalError

from .._codec import Json
from .._deferred import decode_token
from .._engine import EncodedPoll, Execution, RegisteredWorkflow, WorkflowRegistry
from .._errors import (
    EngineUnavailable,
    ExecutionNotFound,
    TokenError,
    WorkflowNotRegistered,
)
from .._exit import EncodedExit, defect_json, success_json
from ._exits import DW_EXIT, parse_park_failure
from ._worker import COMPLETE_HANDLER, BodyOperations, build_services, run_body

__all__ = ["RestateEngine"]

_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class RestateEngine(WorkflowRegistry, BodyOperations):
    """Runs portable workflows durably on Restate.

    One object serves both sides. In the worker process, `register` the workflows and serve
    `app()` (an ASGI app) with uvicorn (HTTP/1.1) or hypercorn (HTTP/2); register that
    deployment with `register_deployment`. In the application, `register` the same definitions
    (bodies optional) and use the workflows' operations; they go through Restate's ingress and
    admin APIs.

    Every execution is an ordinary Restate workflow: the service is the workflow's name, the key
    is the execution id, and the journal holds one entry per activity attempt (``ctx.run``
    named after the activity), clock (a named ``ctx.sleep``) and deferred (a workflow promise
    named after the deferred).

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
        if getattr(workflow, "suspend_on_failure", False):
            return restate.InvocationRetryPolicy(max_attempts=1, on_max_attempts="pause")
        return self.retry_policy

    def services(self) -> list[restate.Workflow | restate.Service]:
        """The Restate services for the registered workflows (and the token service)."""
        return build_services(
            self,
            list(self._workflows.values()),
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
            token = body["token"]
            workflow, execution_id, name = decode_token(token)
        except (ValueError, KeyError, TypeError, TokenError) as exc:
            raise TerminalError(f"invalid deferred completion: {exc}", 400) from None
        if workflow not in self._workflows:
            raise TerminalError(
                f"unknown deferred token: workflow {workflow!r} is not served here", 404
            )
        if "exit" in body:
            exit = body["exit"]
        elif "error" in body:
            exit = {"_tag": "Failure", "error": body["error"]}
        else:
            exit = success_json(body.get("value"))
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
        """
        response = await self._request(
            "POST",
            self.admin_url,
            "/deployments",
            json={"uri": uri, "use_http_11": http1_1, "force": True},
        )
        if response.status_code >= 300:
            raise EngineUnavailable(
                f"restate admin at {self.admin_url} refused deployment {uri}: "
                f"{response.status_code} {response.text[:500]}"
            )

    # -- HTTP plumbing ----------------------------------------------------------------------

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
        timeout = httpx.Timeout(self.timeout, read=None) if wait else None
        try:
            if timeout is not None:
                kwargs["timeout"] = timeout
            return await self._client().request(method, base + path, **kwargs)
        except httpx.TransportError as exc:
            api = "admin API" if base == self.admin_url else "ingress"
            raise EngineUnavailable(
                f"restate-server's {api} at {base} is not reachable ({type(exc).__name__}: {exc})"
            ) from exc

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
        """
        if parent is not None:
            return await self._child(parent, workflow, execution_id, payload, discard, headers)
        self._require(workflow)
        path = self._path(workflow, execution_id)
        response = await self._request(
            "POST",
            self.ingress_url,
            f"/{path}/run/send",
            content=json.dumps(payload),
            headers={**(headers or {}), "content-type": "application/json"},
        )
        if response.status_code == 404:
            raise WorkflowNotRegistered(
                workflow, reason=f"is not deployed on restate-server (ingress {self.ingress_url})"
            )
        if response.status_code >= 300:
            raise EngineUnavailable(
                f"restate ingress refused {workflow}/{execution_id}: "
                f"{response.status_code} {response.text[:500]}"
            )
        if discard:
            return None
        response = await self._request(
            "GET", self.ingress_url, f"/restate/workflow/{path}/attach", wait=True
        )
        return self._exit_from_response(workflow, execution_id, response)

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
    ) -> None:
        """Send the completion to the workflow's ``complete_deferred`` handler (durably: Restate
        accepts it even while the service is down and delivers it later).

        Raises:
            UnknownToken, PayloadInvalid: the workflow's declared deferreds refuse it.
        """
        self._require(workflow).check_completion(name, exit)
        path = self._path(workflow, execution_id)
        response = await self._request(
            "POST",
            self.ingress_url,
            f"/{path}/{COMPLETE_HANDLER}/send",
            content=json.dumps({"name": name, "exit": exit}),
            headers={"content-type": "application/json"},
        )
        if response.status_code == 404:
            raise WorkflowNotRegistered(
                workflow, reason=f"is not deployed on restate-server (ingress {self.ingress_url})"
            )
        if response.status_code >= 300:
            raise EngineUnavailable(
                f"restate ingress refused the completion of {name!r}: "
                f"{response.status_code} {response.text[:500]}"
            )


def _pending(workflow: str, execution_id: str, row: dict[str, Any]) -> EncodedPoll:
    status = str(row.get("status"))
    failure = str(row.get("last_failure") or "")
    code = row.get("last_failure_error_code")
    cause: EncodedExit | None = parse_park_failure(failure) if failure else None
    if str(code) == "570" or "570" in failure[:16]:
        cause = defect_json(
            "durable_workflow.NondeterminismError",
            f"{workflow}/{execution_id}: the body no longer matches its journal: {failure}",
        )
    if status == "paused" or (cause is not None and status == "backing-off"):
        return {"_tag": "Pending", "status": "parked", "cause": cause}
    if status == "suspended":
        return {"_tag": "Pending", "status": "suspended", "cause": None}
    return {"_tag": "Pending", "status": "running", "cause": cause}


def workflows_of(engine: RestateEngine) -> Sequence[RegisteredWorkflow]:
    """The registered workflows (for tools)."""
    return list(engine._workflows.values())  # pyright: ignore[reportPrivateUsage]
