"""What a gateway carries for features it does not use (issue 17: 100,000 devices in 200 MB).

The route planner's libraries (VROOM, networkx, numpy, pandas: ~60 MB) load with the first route
asked for (gateway/route_api.py), the gRPC stack (grpc, chirpstack-api: ~35 MB) with the first
ChirpStack API call (gateway/lazy.py). Each check runs in a fresh interpreter, where nothing else
imported them first."""

from __future__ import annotations

import json
import subprocess
import sys

PLANNER = ("vroom", "networkx", "numpy", "pandas")


def _child(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_the_service_and_api_import_neither_planner_nor_grpc() -> None:
    got = _child(
        "import json, sys\n"
        "import gateway.service, gateway.api\n"
        f"print(json.dumps({{'planner': [m for m in {PLANNER!r} if m in sys.modules],"
        " 'grpc': 'grpc._cython.cygrpc' in sys.modules}))"
    )
    assert got == {"planner": [], "grpc": False}


def test_grpc_loads_with_the_first_client_and_works() -> None:
    got = _child(
        "import asyncio, json, sys\n"
        "from gateway.chirpstack_grpc import ChirpStackGroups\n"
        "from gateway.errors import ChirpStackApiError\n"
        "before = 'grpc._cython.cygrpc' in sys.modules\n"
        "async def main():\n"
        "    client = ChirpStackGroups(target='127.0.0.1:1', token='t', timeout_s=2.0)\n"
        "    try:\n"
        "        await client.queue_length('g')\n"
        "    except ChirpStackApiError as exc:\n"
        "        return exc.context.get('code')\n"
        "    finally:\n"
        "        await client.close()\n"
        "code = asyncio.run(main())\n"
        "print(json.dumps({'before': before, 'after': 'grpc._cython.cygrpc' in sys.modules,"
        " 'code': code}))"
    )
    # nothing listens on port 1: the call fails as ChirpStack being away does, through grpc
    assert got == {"before": False, "after": True, "code": "UNAVAILABLE"}
