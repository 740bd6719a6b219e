"""The next version of the conformance app: the same workflows with the patched bodies
(`use_patched_bodies`), served as a deployment of its own by `RestateEnv.deploy_patched_bodies`."""

from durable_workflow.restate import RestateEngine
from durable_workflow.testing.workflows import ALL_WORKFLOWS, use_patched_bodies

use_patched_bodies()
engine = RestateEngine()
for workflow in ALL_WORKFLOWS:
    engine.register(workflow)

app = engine.app()
