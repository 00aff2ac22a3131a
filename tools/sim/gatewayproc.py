"""The real citypack gateway as a child process, the way an operator runs it.

The demo and the end-to-end tests start ``citypack gateway run --config FILE`` (ARCHITECTURE.md,
"CLI") with a TOML file written here (sections and keys of ``gateway/config.py``), wait for
``/readyz``, register the city's devices through ``PUT /api/v1/devices`` (a batch)
(docs/interfaces.md) and read its counters from ``GET /metrics``
(``citypack_uplinks_total{outcome}``). A separate process keeps the gateway honest: it sees only
MQTT and HTTP, exactly as in production, and it gets its own CPU core on a two-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tools.sim.broker import free_port

_ROOT = Path(__file__).resolve().parents[2]
_METRIC = re.compile(
    r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>[-+0-9.eE]+|NaN|[+-]Inf)\s*$"
)


class GatewayProcessError(Exception):
    """The gateway did not start, or did not answer as its API promises."""


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format → ``{'name{labels}': value}`` (labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _METRIC.match(line.strip())
        if match is None:
            continue
        key = match["name"] + (f"{{{match['labels']}}}" if match["labels"] else "")
        with contextlib.suppress(ValueError):
            out[key] = float(match["value"])
    return out


def _toml_value(value: Any) -> str:
    """A TOML value; tables become inline tables and lists arrays (TOML 1.0 §Inline Table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(str(key))


def render_config(sections: Mapping[str, Mapping[str, Any]]) -> str:
    lines: list[str] = ["# written by citypack demo / the end-to-end tests"]
    for section, values in sections.items():
        lines.append(f"\n[{section}]")
        lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


class GatewayProcess:
    """``async with GatewayProcess(workdir, mqtt_url=..., application_id=...) as gw:``."""

    def __init__(
        self,
        workdir: Path,
        *,
        mqtt_url: str,
        application_id: str,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        start_timeout_s: float = 60.0,  # a loaded CI machine takes its time importing
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.token_file = workdir / "api-token"
        self.config_file = workdir / "gateway.toml"
        self.log_file = workdir / "gateway.log"
        self.database = workdir / "gateway.db"
        self._sections: dict[str, dict[str, Any]] = {
            "mqtt": {
                "url": mqtt_url,
                # fixed per work directory (a kept --workdir resumes its MQTT session), distinct
                # between directories (two demos on one external broker do not take turns)
                "client_id": "citypack-demo-" + hashlib.sha1(str(workdir).encode()).hexdigest()[:8],
                "application_id": application_id,
            },
            "store": {"url": f"sqlite:///{self.database}"},
            "api": {"listen": f"127.0.0.1:{self.port}", "token_file": str(self.token_file)},
        }
        for section, values in (overrides or {}).items():
            self._sections.setdefault(section, {}).update(values)
        self._start_timeout_s = start_timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._client: httpx.AsyncClient | None = None

    def configure(self, section: str, **values: Any) -> None:
        """Change keys of the config file the next :meth:`start` writes (a restart with new
        settings, as an operator edits the file and restarts the service)."""
        self._sections.setdefault(section, {}).update(values)

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has exited (None while it runs)."""
        return self._process.returncode if self._process else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _prepare(self) -> tuple[str, Any]:
        """Token file (0600, kept when it exists), config file, and the log for the child."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.token_file.exists():
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
        token = self.token_file.read_text().strip()
        self.config_file.write_text(render_config(self._sections), encoding="utf-8")
        return token, open(self.log_file, "ab")  # handed to the child process, closed after

    async def start(self) -> None:
        """Spawn the child; :meth:`wait_ready` then waits for ``/readyz``."""
        token, log = self._prepare()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tools.cli",
                "gateway",
                "run",
                "--config",
                str(self.config_file),
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=str(_ROOT),
            )
        finally:
            log.close()
        self._client = httpx.AsyncClient(
            base_url=self.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )

    async def wait_ready(self) -> None:
        try:
            await self._wait_ready()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise

    async def __aenter__(self) -> GatewayProcess:
        if self._process is None:
            await self.start()
        await self.wait_ready()
        return self

    async def _wait_ready(self) -> None:
        assert self._client is not None and self._process is not None
        deadline = asyncio.get_running_loop().time() + self._start_timeout_s
        while True:
            if self._process.returncode is not None:
                raise GatewayProcessError(
                    f"the gateway exited with {self._process.returncode}; see {self.log_file}"
                )
            with contextlib.suppress(httpx.HTTPError):
                response = await self._client.get("/readyz")
                if response.status_code == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise GatewayProcessError(
                    f"the gateway was not ready within {self._start_timeout_s:.0f} s; "
                    f"see {self.log_file}"
                )
            await asyncio.sleep(0.1)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)  # the gateway stops gracefully on SIGTERM
            try:
                await asyncio.wait_for(process.wait(), 15.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        self._process = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise GatewayProcessError("the gateway is not running")
        return self._client

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayProcessError(
                f"{method} {path}: {type(exc).__name__}: {exc}{self._exit_note()}"
            ) from exc
        if response.status_code >= 400:
            raise GatewayProcessError(
                f"{method} {path} → {response.status_code}: {response.text[:200]}"
            )
        return response.json() if response.content else None

    async def register(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """Register every device: ``PUT /api/v1/devices``, up to 1,000 per request (one commit
        each on the gateway); an entry the gateway refuses is an error naming it."""
        items = list(entries.items())
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            body = {"devices": [{"dev_eui": eui, **dict(fields)} for eui, fields in chunk]}
            answer = await self.request("PUT", "/api/v1/devices", json=body)
            refused = [r for r in answer.get("results", []) if "error" in r]
            if refused:
                raise GatewayProcessError(
                    f"the gateway refused {len(refused)} device(s), first "
                    f"{refused[0].get('dev_eui')}: {refused[0].get('error')}"
                )

    def _exit_note(self) -> str:
        """Why the API is gone, when the child has exited: its code and last error line."""
        if self.returncode is None:
            return ""
        last = ""
        with contextlib.suppress(OSError):
            lines = self.log_file.read_text(errors="replace").splitlines()
            errors = [line for line in lines if "error" in line.lower()]
            last = (errors or lines or [""])[-1][-300:]
        return f" (the gateway exited with {self.returncode}; {self.log_file}: {last})"

    async def metrics(self) -> dict[str, float]:
        try:
            response = await self.client.get("/metrics")
        except httpx.HTTPError as exc:
            raise GatewayProcessError(f"GET /metrics: {type(exc).__name__}: {exc}") from exc
        return parse_metrics(response.text) if response.status_code == 200 else {}

    async def uplinks(self, outcome: str = "processed") -> float:
        values = await self.metrics()
        return values.get(f'citypack_uplinks_total{{outcome="{outcome}"}}', 0.0)
