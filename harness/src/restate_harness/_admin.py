"""Thin clients for the Restate admin API: deployments, invocation control, SQL queries."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, Self, cast
from urllib.parse import quote

try:
    import httpx
except ModuleNotFoundError as exc:  # pragma: no cover (tested in a subprocess)
    # The harness needs the project's `restate` extra; say so instead of a bare
    # ModuleNotFoundError (`python -m restate_harness up` after a plain `pip install -e .`).
    raise ImportError(
        "restate_harness needs httpx, which the `restate` extra installs: "
        "pip install 'durable-workflow-spike[restate]'"
    ) from exc

from ._errors import AdminApiError

__all__ = ["Deployment", "InvocationAction", "RestateAdmin", "AsyncRestateAdmin"]

InvocationAction = Literal["cancel", "kill", "pause", "resume", "purge"]
"""An operation on one invocation: `PATCH /invocations/<id>/<action>`."""

_JSON_HEADERS: Final = {"accept": "application/json", "content-type": "application/json"}
# No keep-alive: a RestateServer keeps its admin port across restart(), and a pooled connection
# to the previous process would fail the first request after it.
_LIMITS: Final = httpx.Limits(max_keepalive_connections=0)


@dataclass(frozen=True)
class Deployment:
    """A registered deployment, as the admin API reports it.

    Attributes:
        id: The deployment id, e.g. `"dp_..."`.
        services: The names of the services it serves.
    """

    id: str
    services: tuple[str, ...]


def _registration(uri: str, http1_1: bool) -> dict[str, object]:
    # "force" replaces an earlier registration of the same URI, so a re-registration never
    # silently keeps a stale service list.
    return {"uri": uri, "use_http_11": http1_1, "force": True}


def _json_object(response: httpx.Response) -> dict[str, object]:
    try:
        document: object = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise AdminApiError(
            response.request.method,
            str(response.request.url),
            response.status_code,
            f"expected a JSON object, got {response.text[:500]!r}",
        )
    return cast("dict[str, object]", document)


def _check(response: httpx.Response) -> httpx.Response:
    if not response.is_success:
        raise AdminApiError(
            response.request.method,
            str(response.request.url),
            response.status_code,
            response.text[:2000],
        )
    return response


def _deployment(response: httpx.Response) -> Deployment:
    document = _json_object(_check(response))
    services = document.get("services")
    names: list[str] = []
    if isinstance(services, list):
        for service in cast("list[object]", services):
            if isinstance(service, dict):
                name = cast("dict[str, object]", service).get("name")
                if isinstance(name, str):
                    names.append(name)
    return Deployment(id=str(document.get("id")), services=tuple(names))


def _rows(response: httpx.Response) -> list[dict[str, object]]:
    rows = _json_object(_check(response)).get("rows")
    if not isinstance(rows, list):
        raise AdminApiError(
            response.request.method,
            str(response.request.url),
            response.status_code,
            f"no 'rows' list in {response.text[:500]!r}",
        )
    return [cast("dict[str, object]", row) for row in cast("list[object]", rows)]


def _invocation_path(invocation_id: str, action: InvocationAction) -> str:
    return f"/invocations/{quote(invocation_id, safe='')}/{action}"


def _transport_error(method: str, url: str, exc: httpx.HTTPError) -> AdminApiError:
    return AdminApiError(method, url, None, f"{type(exc).__name__}: {exc}")


class RestateAdmin:
    """A blocking client for a Restate admin API.

    Args:
        admin_url: The admin endpoint, e.g. `RestateServer.admin_url`.
        timeout: Seconds to wait for each request.

    Example:
        ```python
        with RestateAdmin(server.admin_url) as admin:
            admin.register_deployment("http://127.0.0.1:9080", http1_1=True)
            rows = admin.query("SELECT id, status FROM sys_invocation")
        ```
    """

    def __init__(self, admin_url: str, *, timeout: float = 30.0) -> None:
        self._url = admin_url.rstrip("/")
        self._client = httpx.Client(base_url=self._url, timeout=timeout, limits=_LIMITS)

    @property
    def url(self) -> str:
        """The admin endpoint this client talks to."""
        return self._url

    def _send(self, method: str, path: str, json: object = None) -> httpx.Response:
        try:
            return self._client.request(method, path, json=json, headers=_JSON_HEADERS)
        except httpx.HTTPError as exc:
            raise _transport_error(method, f"{self._url}{path}", exc) from exc

    def register_deployment(self, uri: str, *, http1_1: bool = False) -> Deployment:
        """Register (or re-register, with `force`) the service endpoint at `uri`.

        Args:
            uri: The endpoint's base URL, e.g. `"http://127.0.0.1:9080"`.
            http1_1: The endpoint only speaks HTTP/1.1 (uvicorn): Restate then uses
                request/response mode instead of HTTP/2 streaming.

        Returns:
            The deployment and the services it serves.

        Raises:
            AdminApiError: Restate could not reach or discover the endpoint.
        """
        return _deployment(self._send("POST", "/deployments", _registration(uri, http1_1)))

    def invocation(self, invocation_id: str, action: InvocationAction) -> None:
        """Apply `action` to one invocation (`PATCH /invocations/<id>/<action>`).

        Raises:
            AdminApiError: The invocation does not exist or is in the wrong state.
        """
        _check(self._send("PATCH", _invocation_path(invocation_id, action)))

    def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel: the handler gets a terminal error at its next await and may compensate."""
        self.invocation(invocation_id, "cancel")

    def kill_invocation(self, invocation_id: str) -> None:
        """Kill: stop the invocation at once, running no more of its code."""
        self.invocation(invocation_id, "kill")

    def pause_invocation(self, invocation_id: str) -> None:
        """Pause the invocation until `resume_invocation`."""
        self.invocation(invocation_id, "pause")

    def resume_invocation(self, invocation_id: str) -> None:
        """Resume a paused (or suspended) invocation."""
        self.invocation(invocation_id, "resume")

    def purge_invocation(self, invocation_id: str) -> None:
        """Delete a completed invocation's record (frees a workflow key for reuse)."""
        self.invocation(invocation_id, "purge")

    def query(self, sql: str) -> list[dict[str, object]]:
        """Run a SQL query over the system tables (`sys_invocation`, `sys_journal`, ...).

        Returns:
            One dict per row, column name to JSON value.

        Raises:
            AdminApiError: The query failed (the message carries Restate's explanation).
        """
        return _rows(self._send("POST", "/query", {"query": sql}))

    def close(self) -> None:
        """Release the HTTP client."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncRestateAdmin:
    """The asyncio twin of `RestateAdmin`, with the same methods as coroutines.

    Args:
        admin_url: The admin endpoint, e.g. `RestateServer.admin_url`.
        timeout: Seconds to wait for each request.

    Example:
        ```python
        async with AsyncRestateAdmin(server.admin_url) as admin:
            await admin.pause_invocation(invocation_id)
        ```
    """

    def __init__(self, admin_url: str, *, timeout: float = 30.0) -> None:
        self._url = admin_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self._url, timeout=timeout, limits=_LIMITS)

    @property
    def url(self) -> str:
        """The admin endpoint this client talks to."""
        return self._url

    async def _send(self, method: str, path: str, json: object = None) -> httpx.Response:
        try:
            return await self._client.request(method, path, json=json, headers=_JSON_HEADERS)
        except httpx.HTTPError as exc:
            raise _transport_error(method, f"{self._url}{path}", exc) from exc

    async def register_deployment(self, uri: str, *, http1_1: bool = False) -> Deployment:
        """See `RestateAdmin.register_deployment`."""
        return _deployment(await self._send("POST", "/deployments", _registration(uri, http1_1)))

    async def invocation(self, invocation_id: str, action: InvocationAction) -> None:
        """See `RestateAdmin.invocation`."""
        _check(await self._send("PATCH", _invocation_path(invocation_id, action)))

    async def cancel_invocation(self, invocation_id: str) -> None:
        """See `RestateAdmin.cancel_invocation`."""
        await self.invocation(invocation_id, "cancel")

    async def kill_invocation(self, invocation_id: str) -> None:
        """See `RestateAdmin.kill_invocation`."""
        await self.invocation(invocation_id, "kill")

    async def pause_invocation(self, invocation_id: str) -> None:
        """See `RestateAdmin.pause_invocation`."""
        await self.invocation(invocation_id, "pause")

    async def resume_invocation(self, invocation_id: str) -> None:
        """See `RestateAdmin.resume_invocation`."""
        await self.invocation(invocation_id, "resume")

    async def purge_invocation(self, invocation_id: str) -> None:
        """See `RestateAdmin.purge_invocation`."""
        await self.invocation(invocation_id, "purge")

    async def query(self, sql: str) -> list[dict[str, object]]:
        """See `RestateAdmin.query`."""
        return _rows(await self._send("POST", "/query", {"query": sql}))

    async def aclose(self) -> None:
        """Release the HTTP client."""
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
