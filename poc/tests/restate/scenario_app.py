"""The worker of the scenario tests: `scenario_workflows` served by a `RestateEngine`."""

from scenario_workflows import SCENARIO_WORKFLOWS

from durable_workflow.restate import RestateEngine

engine = RestateEngine()
for workflow in SCENARIO_WORKFLOWS:
    engine.register(workflow)

app = engine.app()
"""The ASGI app (hypercorn for HTTP/2, uvicorn for HTTP/1.1)."""
