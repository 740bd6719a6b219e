"""The warehouse: a separate client that confirms an order with the deferred's token.

It speaks plain HTTP to Restate's ingress (one POST, no SDK), to show that a token is usable
from any language:

    curl -X POST <ingress>/DurableDeferred/complete -H 'content-type: application/json' \\
         -d '{"token": "<token>", "value": {"warehouse": "LIS", "slot": "A7"}}'

Usage: ``python -m order_poc.warehouse TOKEN --ingress URL [--warehouse W] [--slot S]``
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx


def confirm(ingress: str, token: str, warehouse: str, slot: str) -> dict[str, object]:
    """Complete the order's ``warehouse-confirmed`` deferred; return Restate's answer."""
    response = httpx.post(
        f"{ingress.rstrip('/')}/DurableDeferred/complete",
        json={"token": token, "value": {"warehouse": warehouse, "slot": slot}},
        timeout=30,
    )
    response.raise_for_status()
    return json.loads(response.content or b"{}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m order_poc.warehouse")
    parser.add_argument("token")
    parser.add_argument("--ingress", required=True)
    parser.add_argument("--warehouse", default="LIS")
    parser.add_argument("--slot", default="A7")
    args = parser.parse_args(argv)
    answer = confirm(args.ingress, args.token, args.warehouse, args.slot)
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
