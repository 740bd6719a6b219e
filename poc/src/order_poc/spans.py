"""Spans across processes for the demo: a JSON-lines exporter and a tree printer.

The worker writes each finished span as one line (``ORDER_POC_SPANS`` names the file); the
demo reads them back, adds the client's own spans and prints one execution's trace as a tree.
Needs ``opentelemetry-sdk`` (the demo's and the tests' dependency, not the library's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from durable_workflow import SpanIdGenerator, enable_tracing

__all__ = ["SPANS_ENV", "JsonLinesSpanExporter", "span_record", "trace_to_file", "tree"]

SPANS_ENV = "ORDER_POC_SPANS"
"""Environment variable naming the file a worker appends its spans to."""


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The parts of a span the demo and the tests look at, as plain JSON."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "start": span.start_time,
        "end": span.end_time,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [dict(e.attributes or {}) for e in span.events],
        "pid": os.getpid(),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (safe to read after a crash when
    used with a SimpleSpanProcessor)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write the spans."""
        with self.path.open("a", encoding="utf-8") as out:
            for span in spans:
                out.write(json.dumps(span_record(span)) + "\n")
        return SpanExportResult.SUCCESS


def trace_to_file(path: str | Path) -> TracerProvider:
    """Enable durable_workflow's tracing in this process, exporting spans to ``path``."""
    provider = TracerProvider(id_generator=SpanIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    enable_tracing(provider)
    return provider


def read(path: str | Path) -> list[dict[str, Any]]:
    """The spans a worker wrote so far."""
    file = Path(path)
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def tree(records: Iterable[dict[str, Any]], root_name: str) -> list[str]:
    """Lines drawing the trace under the span named ``root_name``."""
    spans = list(records)
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        children.setdefault(span["parent_id"], []).append(span)
    roots = [s for s in spans if s["name"] == root_name]
    lines: list[str] = []

    def label(span: dict[str, Any]) -> str:
        attributes = span["attributes"]
        extra: list[str] = []
        if "activity.attempt" in attributes:
            extra.append(f"attempt {attributes['activity.attempt']}")
        if "workflow.outcome" in attributes:
            extra.append(str(attributes["workflow.outcome"]))
        if span.get("start") and span.get("end"):
            extra.append(f"{(span['end'] - span['start']) / 1e6:.1f} ms")
        return f"{span['name']}" + (f"  [{', '.join(extra)}]" if extra else "")

    def walk(span: dict[str, Any], prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(prefix + branch + label(span))
        kids = sorted(children.get(span["span_id"], []), key=lambda s: s.get("start") or 0)
        extension = "" if top else ("   " if last else "│  ")
        for i, kid in enumerate(kids):
            walk(kid, prefix + extension, i == len(kids) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    return lines
