"""The ASGI app serving every conformance workflow on Restate (run in a service process)."""

from durable_workflow.restate import RestateEngine
from durable_workflow.testing.workflows import ALL_WORKFLOWS

engine = RestateEngine()
for workflow in ALL_WORKFLOWS:
    engine.register(workflow)

app = engine.app()
