"""The conformance suite every engine runs unchanged, and helpers for testing workflows.

Subclass `ConformanceSuite` in a test module and provide an ``env`` fixture implementing
`ConformanceEnv` for the engine under test; pytest then runs every scenario against it.
"""

from ._effects import EFFECTS_ENV, SideEffects, eventually, poll_until
from ._suite import ConformanceEnv, ConformanceSuite

__all__ = [
    "ConformanceSuite",
    "ConformanceEnv",
    "SideEffects",
    "eventually",
    "poll_until",
    "EFFECTS_ENV",
]
