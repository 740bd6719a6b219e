"""The worker apps the Restate benchmarks serve (with the harness's `ServiceProcess`).

- `bench.apps.ours`: the workflows written against `durable_workflow`, served by
  `RestateEngine.app()` (services ``OursPoc``, ``OursSteps``, plus the engine's
  ``DurableDeferred`` token service).
- `bench.apps.raw`: the same workflows written directly against restate-sdk (services
  ``RawPoc``, ``RawSteps``).
- `bench.apps.raw_control`: a second copy of the raw app (``CtlPoc``, ``CtlSteps``), the A/A
  control.
"""
