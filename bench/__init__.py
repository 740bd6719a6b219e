"""Benchmarks for the durable-workflow spike (``nox -s bench``, ``python -m bench``).

What they answer: what the portable layer (`durable_workflow` on `RestateEngine`) costs over
writing the same workflow directly with restate-sdk, served the same way on the same
restate-server in the same run; the same on `TemporalEngine` against raw temporalio on one
tuned Temporal dev server; what the in-memory engine costs over a plain ``await``; how DBOS
(on its embedded SQLite database) compares as a peer; what a 3-node Restate cluster costs over
one node; and one table across the engines. Every number is reported as a ratio against a
baseline measured in the same run; nothing here asserts on time.

Modules:

- `bench.shapes`: the payloads and the activity functions both sides share.
- `bench.apps.ours` / `bench.apps.raw`: the two worker apps (portable layer / raw restate-sdk).
- `bench.restate_bench`: latency (interleaved A/B), throughput and memory on a native server.
- `bench.memory_bench`: the in-memory engine against plain ``await``.
- `bench.dbos_bench`: the DBOS peer (run in a child process).
- `bench.temporal_bench` / `bench.apps.temporal_raw`: ours on Temporal against raw temporalio.
- `bench.cluster_bench`: one restate-server node against a 3-node cluster.
- `bench.report`: merging each part into the results JSON, the derived rows (peer, across
  engines), the markdown tables and the chart.
"""
