"""Crashes on Restate: a portable workflow survives SIGKILL of its service or of restate-server.

Each test runs `Parcel` (weigh -> durable sleep ``transit`` -> deferred ``signature`` ->
deliver) on a server and service of its own, so killing them disturbs no other test. The
activities count their real executions in `SideEffects`; the journal is read back from
Restate's ``sys_journal``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from scenario_support import (
    Site,
    backing_off_unreachable,
    commands,
    invocation_row,
    journal,
    new_run,
    open_site,
)
from scenario_workflows import (
    DELIVER,
    TRANSIT,
    WEIGH,
    Delivery,
    Parcel,
    Signature,
    parcel_wf,
    signature,
)

from durable_workflow import EngineUnavailable
from durable_workflow.restate import COMPLETE_HANDLER
from durable_workflow.testing import eventually
from restate_harness import ServeMode
from restate_harness.pytest_plugin import RestateServerFactory, RestateServiceFactory

SiteFactory = Callable[[ServeMode], Site]

# What a run of Parcel journals, whatever crashed in between: every step once.
PARCEL_COMMANDS = [
    ("Command: Input", ""),
    ("Command: Run", WEIGH),
    ("Command: Sleep", TRANSIT),
    ("Command: GetPromise", "signature"),
    ("Command: Run", DELIVER),
    ("Command: Output", ""),
]


@pytest.fixture
async def site_for(
    restate_server_factory: RestateServerFactory,
    restate_service: RestateServiceFactory,
    tmp_path: Path,
) -> AsyncIterator[SiteFactory]:
    sites: list[Site] = []

    def make(mode: ServeMode) -> Site:
        site = open_site(restate_server_factory, restate_service, tmp_path, mode=mode)
        sites.append(site)
        return site

    yield make
    for site in sites:
        await site.engine.aclose()


async def _reached(site: Site, execution_id: str, entry: tuple[str, str]) -> None:
    async def there() -> bool:
        return entry in await journal(site.engine, parcel_wf.name, execution_id)

    await eventually(there, what=f"{entry} in the journal of {execution_id}")


async def _unreachable(site: Site, execution_id: str) -> None:
    async def backing_off() -> bool:
        return await backing_off_unreachable(site.engine, parcel_wf.name, execution_id)

    await eventually(backing_off, what="Restate to find the service unreachable")


async def _sign_and_collect(site: Site, p: Parcel, by: str) -> Delivery:
    token = signature.token_from_payload(parcel_wf, p)
    await signature.succeed(token, Signature(by=by), engine=site.engine)
    return await parcel_wf.execute(p, engine=site.engine)


@pytest.mark.parametrize("mode", ["http2", "http1"])
async def test_service_killed_during_a_durable_sleep_resumes_and_weighs_once(
    mode: ServeMode, site_for: SiteFactory
) -> None:
    site = site_for(mode)
    p = Parcel(run=new_run(), transit_seconds=2.0)
    started = time.monotonic()
    execution_id = await parcel_wf.start(p, engine=site.engine)
    await _reached(site, execution_id, ("Command: Sleep", TRANSIT))

    site.service.kill()
    # Down until Restate has tried it (HTTP/2: the open stream broke; HTTP/1.1: the timer
    # fired while the service was gone) and is retrying.
    await _unreachable(site, execution_id)
    await site.service.arestart()

    delivery = await _sign_and_collect(site, p, "ada")
    assert delivery == Delivery(run=p.run, grams=p.grams, signed_by="ada")
    assert time.monotonic() - started >= p.transit_seconds
    assert site.effects.count(f"{p.run}-{WEIGH}") == 1
    assert site.effects.lines(f"{p.run}-{DELIVER}") == ["ada"]
    assert commands(await journal(site.engine, parcel_wf.name, execution_id)) == PARCEL_COMMANDS


async def test_a_deferred_completed_while_the_service_is_down_is_delivered_after_restart(
    site_for: SiteFactory,
) -> None:
    site = site_for("http2")
    p = Parcel(run=new_run(), transit_seconds=0.2)
    execution_id = await parcel_wf.start(p, engine=site.engine)
    await _reached(site, execution_id, ("Command: GetPromise", "signature"))

    site.service.kill()
    token = signature.token_for(parcel_wf, execution_id)
    # Accepted by Restate although nothing can run the completion handler now: the caller
    # waits for the answer, which comes once the service is back.
    succeed = asyncio.ensure_future(
        signature.succeed(token, Signature(by="grace"), engine=site.engine)
    )
    completion = await eventually_row(site, parcel_wf.name, execution_id, COMPLETE_HANDLER)
    assert completion["status"] != "completed"
    assert not succeed.done()
    await site.service.arestart()
    assert await succeed is True

    delivery = await parcel_wf.execute(p, engine=site.engine)
    assert delivery == Delivery(run=p.run, grams=p.grams, signed_by="grace")
    assert site.effects.count(f"{p.run}-{WEIGH}") == 1
    assert site.effects.lines(f"{p.run}-{DELIVER}") == ["grace"]
    assert commands(await journal(site.engine, parcel_wf.name, execution_id)) == PARCEL_COMMANDS


async def eventually_row(
    site: Site, workflow: str, execution_id: str, handler: str
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []

    async def found() -> bool:
        row = await invocation_row(site.engine, workflow, execution_id, handler=handler)
        rows.append(row)
        return bool(row)

    await eventually(found, what=f"the {handler} invocation")
    return rows[-1]


async def test_an_activity_journaled_just_before_a_service_crash_is_not_run_again(
    site_for: SiteFactory,
) -> None:
    site = site_for("http2")
    p = Parcel(run=new_run(), transit_seconds=1.0)
    execution_id = await parcel_wf.start(p, engine=site.engine)
    # The kill follows the journaling of weigh's result as closely as polling allows.
    await _reached(site, execution_id, ("Notification: Run", ""))
    site.service.kill()
    assert site.effects.count(f"{p.run}-{WEIGH}") == 1

    await _unreachable(site, execution_id)
    await site.service.arestart()

    delivery = await _sign_and_collect(site, p, "ada")
    assert delivery.grams == p.grams
    assert site.effects.count(f"{p.run}-{WEIGH}") == 1
    entries = await journal(site.engine, parcel_wf.name, execution_id)
    assert entries.count(("Command: Run", WEIGH)) == 1
    assert commands(entries) == PARCEL_COMMANDS


async def test_restate_server_killed_during_a_durable_sleep_resumes_and_weighs_once(
    site_for: SiteFactory,
) -> None:
    site = site_for("http2")
    p = Parcel(run=new_run(), transit_seconds=2.0)
    started = time.monotonic()
    execution_id = await parcel_wf.start(p, engine=site.engine)
    await _reached(site, execution_id, ("Command: Sleep", TRANSIT))

    site.server.kill()
    await site.server.arestart()  # same data directory and ports

    delivery = await _sign_and_collect(site, p, "ada")
    assert delivery == Delivery(run=p.run, grams=p.grams, signed_by="ada")
    assert time.monotonic() - started >= p.transit_seconds
    assert site.effects.count(f"{p.run}-{WEIGH}") == 1
    assert site.effects.lines(f"{p.run}-{DELIVER}") == ["ada"]
    assert commands(await journal(site.engine, parcel_wf.name, execution_id)) == PARCEL_COMMANDS


async def test_a_caller_waiting_when_restate_server_dies_gets_engine_unavailable_then_rejoins(
    site_for: SiteFactory,
) -> None:
    site = site_for("http2")
    p = Parcel(run=new_run(), transit_seconds=1.0)
    token = signature.token_from_payload(parcel_wf, p)
    await signature.succeed(token, Signature(by="early"), engine=site.engine)
    waiting = asyncio.create_task(parcel_wf.execute(p, engine=site.engine))
    await _reached(site, parcel_wf.execution_id(p), ("Command: Sleep", TRANSIT))

    site.server.kill()
    with pytest.raises(EngineUnavailable) as info:
        await waiting
    await site.server.arestart()

    assert site.server.ingress_url in str(info.value)
    # Executing the same payload again joins the execution that kept going.
    delivery = await parcel_wf.execute(p, engine=site.engine)
    assert delivery == Delivery(run=p.run, grams=p.grams, signed_by="early")
    assert site.effects.count(f"{p.run}-{WEIGH}") == 1
