"""The worker apps the benchmarks serve: the Restate ones with the harness's `ServiceProcess`,
the Temporal one with workers in the driver's process (`bench.temporal_bench`).

- `bench.apps.ours`: the workflows written against `durable_workflow`, served by
  `RestateEngine.app()` (services ``OursPoc``, ``OursSteps``, ``OursFan``, plus the
  engine's ``DurableDeferred`` token service).
- `bench.apps.raw`: the same workflows written directly against restate-sdk (services
  ``RawPoc``, ``RawSteps``, ``RawFan``).
- `bench.apps.raw_control`: a second copy of the raw app (``CtlPoc``, ``CtlSteps``, ``CtlFan``), the
  A/A control.
- `bench.apps.temporal_raw`: the same workflows written directly against temporalio
  (``RawPoc``, ``RawSteps``, ``RawFan``; the ours side is `bench.workflows` on `TemporalEngine`).
"""
