"""`citypack collection route`: today's collection rounds from a running gateway.

It asks the gateway's HTTP API (``GET /api/v1/collection/route``), like the provisioning commands
that talk to the gateway registry: the gateway holds the live fill levels and forecasts, so the
operator gets exactly the plan the dashboard shows, and a route problem (no depot, a road graph
in pieces, ...) comes back as the gateway's one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tools.errors import CliError
from tools.gateway_api import gateway_request, read_token


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "collection", help="bin collection: today's truck routes from the gateway"
    )
    csub = parser.add_subparsers(dest="collection_command", metavar="ACTION", required=True)
    route = csub.add_parser(
        "route",
        help="plan today's rounds (GET /api/v1/collection/route) and print JSON or GPX",
        description=(
            "Ask a running gateway for today's collection routes: the bins full now or forecast "
            "full before the next round, planned for the trucks of its [routes] config."
        ),
    )
    route.add_argument(
        "--api",
        default="http://127.0.0.1:8080",
        metavar="URL",
        help="the gateway's base URL (default http://127.0.0.1:8080, [api] listen's default)",
    )
    route.add_argument(
        "--token-file", type=Path, required=True, metavar="FILE", help="the gateway API token"
    )
    route.add_argument("--format", choices=["json", "gpx", "summary"], default="summary")
    route.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, not stdout")
    route.add_argument("--timeout", type=float, default=60.0, metavar="S")
    route.set_defaults(func=run_route)


def summary(plan: dict[str, Any]) -> str:
    lines = []
    for route in plan["routes"]:
        lines.append(
            f"truck {route['truck']}: {len(route['stops'])} bins, {route['km']:.1f} km, "
            f"{route['duration_s'] / 3600:.1f} h"
        )
        for n, stop in enumerate(route["stops"], start=1):
            minute = stop["arrival_s"] // 60
            lines.append(
                f"  {n:3d}. +{minute // 60:d}:{minute % 60:02d}  {stop['name'] or stop['dev_eui']}"
                f"  {stop['fill_percent']:g} %"
            )
    for row in plan["unassigned"]:
        lines.append(f"not routed: {row['name'] or row['dev_eui']}: {row['reason']}")
    if not plan["routes"] and not plan["unassigned"]:
        lines.append("no bin needs emptying before the next round")
    lines.append(f"distances: {plan['distances']}")
    return "\n".join(lines) + "\n"


def run_route(args: argparse.Namespace) -> int:
    token = read_token(args.token_file)
    url = args.api.rstrip("/") + "/api/v1/collection/route"
    wanted = "gpx" if args.format == "gpx" else "json"
    body = gateway_request(
        args.api,
        f"/api/v1/collection/route?{urllib.parse.urlencode({'format': wanted})}",
        token,
        args.timeout,
    )
    if wanted == "gpx":
        text = body
    else:
        try:
            plan = json.loads(body)
        except ValueError:
            raise CliError(f"{url} did not answer JSON") from None
        text = summary(plan) if args.format == "summary" else json.dumps(plan, indent=2) + "\n"
    if args.output is not None:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"--output {args.output}: {exc.strerror}") from None
    else:
        sys.stdout.write(text)
    return 0
