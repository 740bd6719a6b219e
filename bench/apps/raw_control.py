"""A second copy of the raw restate-sdk app (services ``CtlPoc``, ``CtlSteps``, ``CtlFan``):
the A/A control.

The latency runs drive it interleaved with the other two sides, exactly like the baseline.
Its ratio to the baseline measures the noise floor of the method (two identical apps in two
processes): a difference between ours and raw no larger than that is not a finding.
"""

from __future__ import annotations

import restate

from bench.apps.raw import build

__all__ = ["app", "POC_SERVICE", "STEPS_SERVICE", "FAN_SERVICE"]

POC_SERVICE = "CtlPoc"
STEPS_SERVICE = "CtlSteps"
FAN_SERVICE = "CtlFan"

app = restate.app(build(POC_SERVICE, STEPS_SERVICE, FAN_SERVICE))
"""The ASGI app (what `ServiceProcess` serves)."""
