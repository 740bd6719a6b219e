"""What pyright says to a user of the authoring API (checked by ``nox -s typecheck``).

Each line that must be an error carries an ignore for exactly that error: pyright reports an
ignore that is no longer needed (``reportUnnecessaryTypeIgnoreComment``), so if the API ever
accepts the wrong call again, the check fails.
"""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from typing import assert_type

from pydantic import BaseModel

from durable_workflow import Workflow


class Order(BaseModel):
    id: str


class Receipt(BaseModel):
    order_id: str


order_wf = Workflow("TypingOrder", payload=Order, success=Receipt)
no_result_wf = Workflow("TypingNoResult", payload=Order)


async def calls() -> None:
    receipt = await order_wf.execute(Order(id="o-1"))
    assert_type(receipt, Receipt)
    await order_wf.execute({"id": "o-1"})  # the payload as JSON is accepted
    await order_wf.execute(42)  # pyright: ignore[reportArgumentType]
    await order_wf.start("o-1")  # pyright: ignore[reportArgumentType]
    order_wf.execution_id(Receipt(order_id="o-1"))  # pyright: ignore[reportArgumentType]
    nothing = await no_result_wf.execute(Order(id="o-2"))
    assert_type(nothing, None)
