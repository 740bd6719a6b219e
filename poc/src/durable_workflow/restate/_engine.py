"""`RestateEngine`: the engine contract on Restate, worker side and client side in one object."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, cast

import httpx
import restate

from ..engine import (
    DeploymentChanged,
    DeploymentInUse,
    DeploymentNotFound,
    EncodedExecution,
    EncodedExit,
    EncodedPoll,
    EngineBase,
    EngineDefinitionError,
    EngineUnavailable,
    Execution,
    ExecutionNotFound,
    ExecutionParked,
    ExecutionStatus,
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
from ._deployments import (
    DeploymentRegistration,
    RestateDeployment,
    ServiceShape,
    changes_between,
    same_uri,
    shapes_from_services,
)
from ._exits import DW_EXIT, PARK_MARKER, parse_park_failure
from ._worker import (
    COMPLETE_HANDLER,
    BodyOperations,
    build_services,
    refused,
    run_body,
    service_shapes,
)

__all__ = ["RestateEngine"]

_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")

JOURNAL_MISMATCH = "RT0016"
"""Restate's error code for a replay that no longer matches the journal (the SDK's 570)."""

_PARK_CHECK_AFTER = 1.0
"""Seconds an ``execute`` waits before it starts checking whether the execution parked."""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- choosing a node: which URL gets a request, and when the next one gets it -----------------

_SENT_NOWHERE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors raised before the request left: any node may be asked instead."""

_REPEATABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})
"""Methods whose requests can be repeated on another node (the admin API's PATCHes, cancel and
resume, are idempotent)."""

_SERVICE_NOT_FOUND = "make sure to register the service"
"""In the ingress's 404 for a service its node does not know (yet)."""


def _url_list(urls: str | Sequence[str], what: str) -> tuple[str, ...]:
    """One URL or several, in order, without trailing slashes."""
    listed = [urls] if isinstance(urls, str) else list(urls)
    if not listed:
        raise EngineDefinitionError(
            f"RestateEngine needs at least one {what} URL, e.g. "
            f"{'http://127.0.0.1:8080' if what == 'ingress' else 'http://127.0.0.1:9070'}"
        )
    return tuple(url.rstrip("/") for url in listed)


def _repeatable(method: str, path: str, headers: Mapping[str, str] | None, *, admin: bool) -> bool:
    """Whether a request that may already have reached one node can be sent to another one:
    Restate deduplicates it, or it changes nothing."""
    if method.upper() in _REPEATABLE_METHODS:
        return True
    if headers and any(name.lower() == "idempotency-key" for name in headers):
        return True
    if path.endswith("/run/send"):
        return True  # one run per workflow key: a resend answers "PreviouslyAccepted"
    # The admin API's POSTs: a read, and a forced registration of the same endpoint.
    return admin and path in ("/query", "/deployments")


def _node_not_ready(path: str, response: httpx.Response, *, admin: bool) -> bool:
    """Whether an answer says only that this node cannot serve the request yet.

    Measured on a 3-node cluster (restate-server 1.7.12): for a few hundred ms after a restart,
    or after a registration made through another node, a node's ingress answers 404 "service
    ... not found, make sure to register the service"; for 1-2 s after a restart, its admin API
    answers queries with a 500 ("No such scanner"). Every other answer is the cluster's, 5xx
    from the ingress included (a workflow's defect is a 500; while a partition has no leader,
    the ingress holds the request until a new leader takes it).
    """
    if admin:
        return path == "/query" and response.status_code >= 500
    return response.status_code == 404 and _SERVICE_NOT_FOUND in response.text


def _already_running(method: str, path: str, response: httpx.Response) -> httpx.Response:
    """A 409 to a workflow's ``run/send`` means an invocation for its key exists: the start
    happened, so it is answered as a resend is. (A synchronous ``run`` once got 409 "already
    invoked" right after a node rejoined, while leadership moved; ``run/send`` answered
    "Accepted" or "PreviouslyAccepted" in every rejoin measured here.)"""
    if response.status_code == 409 and method.upper() == "POST" and path.endswith("/run/send"):
        return httpx.Response(202, json={"status": "PreviouslyAccepted"}, request=response.request)
    return response


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

    On a cluster, give the ingress and admin URLs of several nodes (any node's ingress serves
    any execution). Each request goes to the node that answered last (the first URL until one
    has) and moves on to the next URL, in order, when that node does not answer: it refuses
    the connection or drops it, times out, or says it cannot serve the request yet (a node
    that has just restarted answers 404 "service not found" or a 500 to a query for a moment).
    Any other answer, 5xx included, is the cluster's answer and is not asked again elsewhere.
    Nothing is submitted twice: a request that may have reached a node that then failed is
    sent to another node only if Restate deduplicates it or it changes nothing. Every request
    this engine makes is such a request: a start is a ``run/send`` (one run per workflow key;
    a resend answers "PreviouslyAccepted", and a 409 means the run exists), followed by an
    attach, which is a read; a deferred's completion carries an idempotency key; the rest are
    reads, cancellations and a forced registration of the same endpoint. When no node
    answers, `EngineUnavailable` names every URL tried. A caller waiting for a result when
    its node dies attaches again through the next node and gets the same result.

    Args:
        ingress_url: Restate's ingress, e.g. ``http://127.0.0.1:8080``; or the ingress of
            several nodes of a cluster, in the order to try them.
        admin_url: Restate's admin API, e.g. ``http://127.0.0.1:9070``; or several nodes'.
        retry_policy: Restate's retry policy for the ``run`` handlers (for retries of what is
            not an activity outcome: crashes, lost connections, a journal mismatch). Workflows
            that suspend on failure always get one attempt, then pause.
        timeout: Seconds to wait for Restate to answer a request (waiting for a result is not
            limited).
        connect_timeout: Seconds a node gets to accept a connection before the next one is
            tried (at most ``timeout``).

    Attributes:
        ingress_urls: Every ingress URL, in order; ``ingress_url`` is the first.
        admin_urls: Every admin API URL, in order; ``admin_url`` is the first.

    Example:
        ```python
        engine = RestateEngine("http://127.0.0.1:8080", "http://127.0.0.1:9070")
        engine.register(order_workflow)
        app = engine.app()                     # worker: serve this ASGI app
        await engine.register_deployment("http://127.0.0.1:9080")
        with use_engine(engine):               # client
            receipt = await order_workflow.execute(order)

        # A 3-node cluster: the client moves to the next node when one fails.
        cluster = RestateEngine(
            ["http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"],
            ["http://10.0.0.1:9070", "http://10.0.0.2:9070", "http://10.0.0.3:9070"],
        )
        ```
    """

    def __init__(
        self,
        ingress_url: str | Sequence[str] = "http://127.0.0.1:8080",
        admin_url: str | Sequence[str] = "http://127.0.0.1:9070",
        *,
        retry_policy: restate.InvocationRetryPolicy | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.ingress_urls = _url_list(ingress_url, "ingress")
        self.admin_urls = _url_list(admin_url, "admin API")
        self.ingress_url = self.ingress_urls[0]
        self.admin_url = self.admin_urls[0]
        self.retry_policy = retry_policy
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self._http: httpx.AsyncClient | None = None
        # Per list of URLs, the index of the node that answered last: the next request's first.
        self._answered: dict[tuple[str, ...], int] = {}

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
            # A partial rather than a method that awaits run_body: one coroutine less per
            # handler run.
            run_workflow=functools.partial(run_body, self),
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
            return refused(f"invalid deferred completion: {exc}")
        if not self.is_registered(workflow):
            return refused(f"unknown deferred token: workflow {workflow!r} is not served here")
        if "exit" in fields:
            exit = fields["exit"]
        elif "error" in fields:
            exit = {"_tag": "Failure", "error": fields["error"]}
        else:
            exit = success_json(fields.get("value"))
        message = json.dumps({"name": name, "exit": exit}).encode()
        return await ctx.generic_call(workflow, COMPLETE_HANDLER, message, key=execution_id)

    # -- worker versions: deployments -------------------------------------------------------

    async def register_deployment(
        self, uri: str, *, http1_1: bool = False, force: bool = False
    ) -> DeploymentRegistration:
        """Register the worker version served at ``uri`` as a deployment of its own.

        Restate keeps every execution on the deployment it started on and starts new ones on
        the newest, so serve each version at an address of its own (another port) and register
        it: in-flight executions finish on the old code, new ones run the new code. The old
        deployment can be removed once it is drained (`deployments`, `remove_deployment`).

        At an address that is already registered, what the worker serves now is compared with
        what the deployment there was registered with (its workflows and handlers, each body's
        fingerprint and retention, the HTTP version); the same is ``unchanged`` and a
        difference is refused, naming it.

        Args:
            uri: Where the worker serves, e.g. ``http://127.0.0.1:9080``.
            http1_1: The worker is served over HTTP/1.1: Restate then uses request/response
                mode (a replay after every step).
            force: Overwrite a deployment at ``uri`` that serves other code, in place.
                **Dangerous**: its in-flight executions replay the new code and park with a
                `NondeterminismError` where it issues other steps than their journals hold (an
                in-place patch does not save them on Restate: `durable_workflow.patched` says
                ``True`` to every execution that runs the patched code).

        Returns:
            The deployment, and whether it was ``created``, ``unchanged`` or ``forced``.

        Raises:
            DeploymentChanged: a deployment at ``uri`` serves other code, and ``force`` is off.
            WorkerUnreachable: no worker answers at ``uri`` (here or from restate-server).
            EngineUnavailable: the admin API is not reachable or refused the deployment.
        """
        existing = await self._deployment_at(uri)
        changes: list[str] = []
        if existing is not None:
            changes = changes_between(
                shapes_from_services(existing.get("services") or []), await self._discover(uri)
            )
            changes += _http_change(existing, http1_1)
            if not changes:
                return DeploymentRegistration(
                    str(existing["id"]), uri, "unchanged", _service_names(existing)
                )
            if not force:
                raise DeploymentChanged(uri, str(existing["id"]), changes)
        response = await self._request(
            "POST",
            self.admin_url,
            "/deployments",
            json={"uri": uri, "use_http_11": http1_1, "force": existing is not None},
        )
        if response.status_code >= 300:
            text = response.text[:500]
            if _unreachable_worker(text):
                raise WorkerUnreachable(uri, f"restate-server says: {text}")
            raise EngineUnavailable(
                f"restate admin at {self.admin_url} refused deployment {uri}: "
                f"{response.status_code} {text}"
            )
        body = cast(dict[str, Any], response.json())
        return DeploymentRegistration(
            str(body.get("id")),
            uri,
            "forced" if existing is not None else "created",
            _service_names(body),
            tuple(changes),
        )

    async def check_deployment(self, uri: str, *, http1_1: bool = False) -> str | None:
        """Check, before serving at ``uri``, that this engine's workflows are what the
        deployment registered there serves (what `register_deployment` would refuse,
        compared with this engine's own workflows instead of a running worker's).

        Returns:
            The id of the deployment at ``uri`` (unchanged), or ``None`` if there is none.

        Raises:
            DeploymentChanged: the deployment at ``uri`` serves other code.
            EngineUnavailable: the admin API is not reachable.
        """
        existing = await self._deployment_at(uri)
        if existing is None:
            return None
        changes = changes_between(
            shapes_from_services(existing.get("services") or []), service_shapes(self.workflows)
        )
        changes += _http_change(existing, http1_1)
        if changes:
            raise DeploymentChanged(uri, str(existing["id"]), changes)
        return str(existing["id"])

    async def deployments(self) -> list[RestateDeployment]:
        """Every registered deployment, newest first, with what still runs on it.

        Raises:
            EngineUnavailable: the admin API is not reachable.
        """
        listed = cast(
            list[dict[str, Any]], (await self._admin_get("/deployments")).get("deployments") or []
        )
        latest: dict[str, list[str]] = {}
        for row in await self.query("SELECT name, deployment_id FROM sys_service"):
            latest.setdefault(str(row.get("deployment_id")), []).append(str(row.get("name")))
        in_flight = {
            str(row.get("deployment")): int(row.get("n") or 0)
            for row in await self.query(
                "SELECT pinned_deployment_id AS deployment, count(*) AS n FROM sys_invocation "
                "WHERE status != 'completed' AND pinned_deployment_id IS NOT NULL "
                "GROUP BY pinned_deployment_id"
            )
        }
        deployments = [
            RestateDeployment(
                id=str(d.get("id")),
                uri=str(d.get("uri")).rstrip("/"),
                created_at=_timestamp(d.get("created_at")),
                services=_service_names(d),
                latest_for=tuple(sorted(latest.get(str(d.get("id")), []))),
                in_flight=in_flight.get(str(d.get("id")), 0),
            )
            for d in listed
        ]
        deployments.sort(
            key=lambda d: d.created_at or datetime.min.replace(tzinfo=UTC), reverse=True
        )
        return deployments

    async def remove_deployment(self, deployment_id: str) -> None:
        """Remove a drained deployment (an old worker version), so Restate forgets it.

        Stop its worker afterwards. Executions that finished on it stay readable (``poll``).

        Raises:
            DeploymentNotFound: no deployment of this id is registered.
            DeploymentInUse: invocations that started on it have not finished; or it is the
                newest deployment of a workflow that an older one serves too (Restate would
                start new executions on the older code).
            EngineUnavailable: the admin API is not reachable or refused.
        """
        deployments = await self.deployments()
        found = next((d for d in deployments if d.id == deployment_id), None)
        if found is None:
            raise DeploymentNotFound(deployment_id, [d.id for d in deployments])
        if found.in_flight:
            raise DeploymentInUse(deployment_id, found.in_flight)
        older = {s for d in deployments if d.id != deployment_id for s in d.services}
        rollback = tuple(s for s in found.latest_for if s in older)
        if rollback:
            raise DeploymentInUse(deployment_id, 0, rollback)
        # Restate 1.7.12 deletes a deployment only with force=true (501 without); the checks
        # above are the safety its force skips.
        response = await self._request(
            "DELETE", self.admin_url, f"/deployments/{deployment_id}?force=true"
        )
        if response.status_code == 404:
            raise DeploymentNotFound(deployment_id)
        if response.status_code >= 300:
            raise EngineUnavailable(
                f"restate admin refused to remove deployment {deployment_id}: "
                f"{response.status_code} {response.text[:500]}"
            )

    async def _admin_get(self, path: str) -> dict[str, Any]:
        response = await self._request("GET", self.admin_url, path)
        if response.status_code != 200:
            raise EngineUnavailable(
                f"restate admin GET {path} failed: {response.status_code} {response.text[:500]}"
            )
        return cast(dict[str, Any], response.json())

    async def _deployment_at(self, uri: str) -> dict[str, Any] | None:
        """The deployment registered at ``uri`` (with its services in detail), if any."""
        listed = cast(
            list[dict[str, Any]], (await self._admin_get("/deployments")).get("deployments") or []
        )
        for deployment in listed:
            if same_uri(str(deployment.get("uri")), uri):
                return await self._admin_get(f"/deployments/{deployment['id']}")
        return None

    async def _discover(self, uri: str) -> dict[str, ServiceShape]:
        """What the worker at ``uri`` serves, from its discovery manifest (as Restate asks)."""
        try:
            response = await self._client().get(
                uri.rstrip("/") + "/discover", headers={"accept": _MANIFEST}
            )
        except httpx.TransportError as exc:
            raise WorkerUnreachable(uri, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise WorkerUnreachable(
                uri, f"its discovery answered {response.status_code} {response.text[:200]}"
            )
        return shapes_from_services(cast(list[Any], response.json().get("services") or []))

    # -- HTTP plumbing: where transport errors become ours -----------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout)
            )
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
        """``method`` on ``path`` at the ingress or the admin API (``base``, its first URL,
        says which), trying its nodes in turn as the class docstring describes.

        Raises:
            EngineUnavailable: no node answered (every URL tried is named), or the node that
                may have received a request that is not safe to repeat failed.
        """
        if wait:
            kwargs["timeout"] = httpx.Timeout(self.timeout, connect=self.connect_timeout, read=None)
        urls, admin = self._urls_for(base)
        api = "admin API" if admin else "ingress"
        repeatable = _repeatable(method, path, kwargs.get("headers"), admin=admin)
        first = self._answered.get(urls, 0)
        failures: list[tuple[str, httpx.TransportError]] = []
        not_ready: httpx.Response | None = None
        for step in range(len(urls)):
            index = (first + step) % len(urls)
            url = urls[index]
            try:
                response = await self._client().request(method, url + path, **kwargs)
            except httpx.TransportError as exc:
                failures.append((url, exc))
                if repeatable or isinstance(exc, _SENT_NOWHERE):
                    continue
                raise EngineUnavailable(
                    f"restate-server's {api} at {url} failed during a request that may have "
                    f"reached it ({type(exc).__name__}: {exc}); it is not safe to repeat, so "
                    "no other node was asked"
                ) from exc
            if _node_not_ready(path, response, admin=admin):
                not_ready = response  # the answer if no other node gives a better one
                continue
            self._answered[urls] = index
            return _already_running(method, path, response)
        if not_ready is not None:
            return not_ready
        raise _unreachable(api, failures)

    def _urls_for(self, base: str) -> tuple[tuple[str, ...], bool]:
        """The URLs to try for a request to ``base``, and whether they are the admin API's:
        every ingress (admin) URL for the first one, which the operations pass; else ``base``
        alone."""
        if base == self.ingress_urls[0]:
            return self.ingress_urls, False
        if base == self.admin_urls[0]:
            return self.admin_urls, True
        return (base,), base == self.admin_url or base in self.admin_urls

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
        self.require(workflow)
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
        self.require(workflow)
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
        """Cancel the execution's invocation (Restate cancellation, compensations still run).

        A paused invocation (a parked execution) is resumed after the cancellation. Restate
        runs the step the execution parked in once more before the cancellation reaches the
        body (the SDK sees it only when it next awaits), so a step that still fails parks the
        execution again, now with the interrupt pending; one that succeeds is followed by the
        interrupt at the next durable operation, with compensations.
        """
        row = await self._invocation(workflow, execution_id)
        if row.get("status") == "completed":
            return
        await self._admin_patch(f"invocations/{row['id']}/cancel")
        if row.get("status") == "paused":
            await self._admin_patch(f"invocations/{row['id']}/resume")

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
        self.require(workflow).check_completion(name, exit)
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

    async def list_executions(
        self, workflow: str, status: Sequence[ExecutionStatus] | None, limit: int
    ) -> list[EncodedExecution]:
        """The workflow's ``run`` invocations in ``sys_invocation``, newest first.

        Restate keeps a finished execution until its retention has passed (and the server's
        cleaner has run, ``worker.cleanup-interval``). The status is `poll`'s reading of the
        invocation's: ``paused``, or ``backing-off`` after a park or a journal mismatch, is
        ``parked``; ``completed`` is ``done``; what waits within the inactivity timeout of
        an HTTP/2 stream is still ``running``.
        """
        self.require(workflow)
        where = ""
        if status is not None:
            if not status:
                return []
            where = f"WHERE dw_status IN ({', '.join(_quote(s) for s in status)}) "
        rows = await self.query(
            "SELECT id, target_service_key, status, created_at, last_failure, "
            "last_failure_error_code, dw_status FROM (SELECT *, "
            f"{_STATUS_SQL} AS dw_status FROM sys_invocation WHERE target_service_name = "
            f"{_quote(workflow)} AND target_handler_name = 'run') {where}"
            f"ORDER BY created_at DESC LIMIT {int(limit)}"
        )
        listed: list[EncodedExecution] = []
        for row in rows:
            execution_id = str(row.get("target_service_key"))
            state = str(row.get("dw_status"))
            cause: Json = None
            if state == "parked":
                if row.get("status") == "paused" and not row.get("last_failure"):
                    row = {**row, **await self._pause_failure(str(row["id"]))}
                cause = _pending(workflow, execution_id, row).get("cause")
            listed.append(
                {
                    "execution_id": execution_id,
                    "status": state,
                    "cause": cause,
                    "created_at": _iso(row.get("created_at")),
                }
            )
        return listed


def _unreachable(api: str, failures: Sequence[tuple[str, httpx.TransportError]]) -> Exception:
    """`EngineUnavailable` naming every URL tried and how each one failed."""
    if len(failures) == 1:
        url, exc = failures[0]
        error = EngineUnavailable(
            f"restate-server's {api} at {url} is not reachable ({type(exc).__name__}: {exc})"
        )
    else:
        tried = "; ".join(f"{url}: {type(exc).__name__}: {exc}" for url, exc in failures)
        error = EngineUnavailable(
            f"restate-server's {api} is not reachable at any of its {len(failures)} URLs ({tried})"
        )
    error.__cause__ = failures[-1][1]
    return error


_STATUS_SQL = (
    "CASE WHEN status = 'completed' THEN 'done' "
    "WHEN status = 'paused' THEN 'parked' "
    f"WHEN status = 'backing-off' AND (last_failure_error_code = '{JOURNAL_MISMATCH}' "
    f"OR last_failure LIKE '%{PARK_MARKER}%') THEN 'parked' "
    "WHEN status = 'suspended' THEN 'suspended' ELSE 'running' END"
)
"""`_pending`'s reading of an invocation's status, in SQL (so that a filter and a limit apply
to the portable status)."""


_MANIFEST = ", ".join(f"application/vnd.restate.endpointmanifest.v{v}+json" for v in (5, 4, 3))
"""The discovery manifest versions accepted, as restate-server asks (the SDK answers the
newest it knows; v3 cannot describe a retry policy, which suspend-on-failure workflows have)."""


def _service_names(deployment: Mapping[str, Any]) -> tuple[str, ...]:
    services = cast(list[Any], deployment.get("services") or [])
    return tuple(
        sorted(str(cast(dict[str, Any], s).get("name")) for s in services if isinstance(s, dict))
    )


def _http_change(deployment: Mapping[str, Any], http1_1: bool) -> list[str]:
    registered_h1 = str(deployment.get("http_version", "")).startswith("HTTP/1")
    if registered_h1 == http1_1:
        return []
    was, now = ("HTTP/1.1", "HTTP/2") if registered_h1 else ("HTTP/2", "HTTP/1.1")
    return [f"served over {now} instead of {was}"]


def _timestamp(value: Any) -> datetime | None:
    """Restate's timestamps (nanoseconds in the admin API, milliseconds in SQL), as UTC."""
    text = _iso(value)
    if text is None:
        return None
    head, _, offset = text.partition("+")
    if "." in head:  # Python parses at most microseconds
        seconds, _, fraction = head.partition(".")
        head = f"{seconds}.{fraction[:6]}"
    try:
        return datetime.fromisoformat(f"{head}+{offset}" if offset else head)
    except ValueError:
        return None


def _iso(value: Any) -> str | None:
    """Restate's timestamp (``2026-12-02T05:16:23.561Z``) as ISO 8601 with a UTC offset."""
    if not isinstance(value, str) or not value:
        return None
    return value[:-1] + "+00:00" if value.endswith("Z") else value


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
