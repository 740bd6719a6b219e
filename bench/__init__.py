"""Benchmarks for the durable-workflow spike (``nox -s bench``, ``python -m bench``).

What they answer: what the portable layer (`durable_workflow` on `RestateEngine`) costs over
writing the same workflow directly with restate-sdk, served the same way on the same
restate-server in the same run; what the in-memory engine costs over a plain ``await``; and
how DBOS (on its embedded SQLite database) compares as a peer. Every number is reported as a
ratio against a baseline measured in the same run; nothing here asserts on time.

Modules:

- `bench.shapes`: the payloads and the activity functions both sides share.
- `bench.apps.ours` / `bench.apps.raw`: the two worker apps (portable layer / raw restate-sdk).
- `bench.restate_bench`: latency (interleaved A/B), throughput and memory on a native server.
- `bench.memory_bench`: the in-memory engine against plain ``await``.
- `bench.dbos_bench`: the DBOS peer (run in a child process).
- `bench.report`: results JSON, markdown table and chart.
"""
