"""The POC: one portable order workflow, run durably on Restate and unchanged in memory.

`order_poc.workflow` holds the workflow and imports no engine; `order_poc.demo` composes it
with an engine and tells the story (``nox -s demo``).
"""
