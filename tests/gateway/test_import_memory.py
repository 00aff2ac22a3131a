"""What a gateway carries for features it does not use (issue 17: 100,000 devices in 200 MB).

The route planner's libraries (VROOM, networkx, numpy, pandas: ~60 MB) load with the first route
asked for (gateway/route_api.py), the gRPC stack (grpc, chirpstack-api: ~35 MB) with the first
ChirpStack API call (gateway/lazy.py), construct (the LoRaWAN frame modules, protocol/lorawan) and
httpx (the OS2iot client, gateway/os2iot.py) with their first use. Each check runs in a fresh
interpreter, where nothing else imported them first."""

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
        " 'grpc': 'grpc._cython.cygrpc' in sys.modules,"
        " 'frames': 'construct' in sys.modules, 'httpx': 'httpx._client' in sys.modules}))"
    )
    # construct: protocol/lorawan/__init__.py loads the frame modules at first use; httpx:
    # gateway/os2iot.py at the first OS2iot client
    assert got == {"planner": [], "grpc": False, "frames": False, "httpx": False}


def test_the_lorawan_package_loads_each_name_at_first_use() -> None:
    got = _child(
        "import json, sys\n"
        "import protocol.lorawan as lorawan\n"
        "before = 'construct' in sys.modules\n"
        "from protocol.lorawan import EU868, time_on_air_s\n"
        "light = 'construct' in sys.modules\n"
        "from protocol.lorawan import PHYPayload\n"
        "from protocol.lorawan.phy import PHYPayload as direct\n"
        "every = all(getattr(lorawan, name) is not None for name in lorawan.__all__)\n"
        "print(json.dumps({'before': before, 'light': light, 'same': PHYPayload is direct,"
        " 'every': every, 'listed': set(lorawan.__all__) <= set(dir(lorawan)),"
        " 'unknown': not hasattr(lorawan, 'NoSuchName')}))"
    )
    assert got == {
        "before": False,
        "light": False,
        "same": True,
        "every": True,
        "listed": True,
        "unknown": True,
    }


def test_the_os2iot_client_loads_httpx_and_works() -> None:
    got = _child(
        "import asyncio, json, sys\n"
        "from gateway.os2iot import Os2iotClient, Os2iotError\n"
        "before = 'httpx._client' in sys.modules\n"
        "async def main():\n"
        "    client = Os2iotClient('http://127.0.0.1:1', 'k', timeout_s=2.0)\n"
        "    try:\n"
        "        await client.call('GET', '/search')\n"
        "    except Os2iotError as exc:\n"
        "        return exc.retry\n"
        "    finally:\n"
        "        await client.close()\n"
        "retry = asyncio.run(main())\n"
        "print(json.dumps({'before': before, 'after': 'httpx._client' in sys.modules,"
        " 'retry': retry}))"
    )
    # nothing listens on port 1: unreachable, through httpx, and worth a retry
    assert got == {"before": False, "after": True, "retry": True}


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
