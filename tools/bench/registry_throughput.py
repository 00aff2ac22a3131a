"""Gateway registry over HTTP: how fast `citypack provision register` fills it (issue 20).

A real gateway (``gateway.api`` on a ``Gateway`` with a fresh SQLite store, no MQTT: the registry
routes need none) is served by uvicorn in a child process on a free loopback port, so client and
server do not share one interpreter. The client is the code ``citypack provision register`` runs:
:meth:`tools.provision.registry.GatewayRegistry.ensure_many` (``PUT /api/v1/devices``, a batch of
500 per request, one commit each on the gateway) for ``NODES`` new nodes, then the same nodes again
(all unchanged: nothing written). The baseline is the former path, one ``GET`` + ``PUT`` per node
(:meth:`~tools.provision.registry.GatewayRegistry.ensure`), for ``BASELINE_NODES`` other new nodes.

Goal: ≥ 500 nodes/s for 1,000 nodes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tools.bench.report import Figure
from tools.provision.inventory import Node
from tools.provision.registry import GatewayRegistry

BENCH = "registry_throughput"
NODES = 1_000
BASELINE_NODES = 200
TOKEN = "bench-registry-token"  # a throwaway token for the child gateway (not a secret)
START_TIMEOUT_S = 30.0

_SERVE = """
import asyncio, sys
import uvicorn
from gateway.api import create_app
from gateway.config import parse_config
from gateway.service import Gateway

async def main() -> None:
    config = parse_config(
        {"mqtt": {"url": "mqtt://127.0.0.1:1"}, "store": {"url": "sqlite:///" + sys.argv[1]}},
        environ={},
    )
    gateway = Gateway(config, api_token=sys.argv[3])
    await gateway.open()
    server = uvicorn.Server(uvicorn.Config(
        create_app(gateway), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    ))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    with open(sys.argv[2], "w") as out:
        out.write(str(port))
    await task
    await gateway.close()

asyncio.run(main())
"""


def _nodes(count: int, first: int) -> list[Node]:
    return [
        Node(
            dev_eui=f"a8404100{first + i:08x}",
            kind="bin" if i % 3 else "lamp",
            name=f"bench-{first + i}",
            latitude=56.15 + i * 1e-5,
            longitude=10.2 + i * 1e-5,
            street="Benchgade",
            group="bench",
            serial=f"SN{first + i:06d}",
        )
        for i in range(count)
    ]


def _start(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = directory / "port"
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(directory / "gw.db"), str(port_file), TOKEN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_file.exists() or not port_file.read_text():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            err = child.stderr.read().decode(errors="replace") if child.stderr else ""
            raise RuntimeError(f"the bench gateway did not start: {err[-300:]}")
        time.sleep(0.02)
    return child, f"http://127.0.0.1:{port_file.read_text()}"


def _timed(registry: GatewayRegistry, nodes: list[Node], *, batch: bool) -> tuple[float, list[str]]:
    start = time.perf_counter()
    if batch:
        outcomes = [str(o) for o in registry.ensure_many(nodes)]
    else:
        outcomes = [registry.ensure(node) for node in nodes]
    return time.perf_counter() - start, outcomes


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="citypack-regbench-") as tmp:
        child, url = _start(Path(tmp))
        try:
            with GatewayRegistry(url, TOKEN, timeout_s=60) as registry:
                httpx.get(f"{url}/healthz", timeout=10).raise_for_status()
                batch_s, outcomes = _timed(registry, _nodes(NODES, 0), batch=True)
                if outcomes != ["created"] * NODES:
                    raise RuntimeError(f"batch registration went wrong: {set(outcomes)}")
                again_s, again = _timed(registry, _nodes(NODES, 0), batch=True)
                if again != ["unchanged"] * NODES:
                    raise RuntimeError(f"second run was not all unchanged: {set(again)}")
                single_s, single = _timed(registry, _nodes(BASELINE_NODES, NODES), batch=False)
                if single != ["created"] * BASELINE_NODES:
                    raise RuntimeError(f"one-by-one registration went wrong: {set(single)}")
        finally:
            child.terminate()
            child.wait(timeout=15)
    rate = NODES / batch_s
    single_rate = BASELINE_NODES / single_s
    return [
        Figure(
            BENCH,
            "provision register into the gateway registry, 1,000 nodes",
            rate,
            "nodes/s",
            500,
            ">=",
            note="GatewayRegistry.ensure_many: PUT /api/v1/devices, 500 per request, new nodes",
        ),
        Figure(
            BENCH,
            "second run, 1,000 unchanged nodes",
            NODES / again_s,
            "nodes/s",
            note="nothing rewritten",
        ),
        Figure(
            BENCH,
            "one GET+PUT per node (before issue 20)",
            single_rate,
            "nodes/s",
            note=f"GatewayRegistry.ensure, {BASELINE_NODES} new nodes",
        ),
        Figure(BENCH, "batch / one per node", rate / single_rate, "x", note="same run"),
    ]


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.value:.1f} {figure.unit}")
