"""``citypack demo --os2iot``: the demo city run the way Aarhus would run it.

1. The OS2iot emulator starts first (its address goes into the gateway's ``[os2iot]`` section);
   the ChirpStack emulator behind it starts with the fleet, **with no devices**.
2. Every node is created through OS2iot's API (``provision register --os2iot``'s code, in
   batches of 50), which creates it in ChirpStack.
3. Once the gateway is ready, an HTTP-push data target pointing at its
   ``/api/v1/ingest/os2iot`` is created and every device is connected to it (no payload
   decoder, so OS2iot pushes the raw ChirpStack ``up`` event); only then are the nodes switched
   on. The gateway does not subscribe to ChirpStack's events: every uplink it stores came
   through OS2iot, and every command goes out through OS2iot's downlink API.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

import httpx

from tools.os2iot.runner import DEFAULT_PROFILES, Os2iotEmulator
from tools.provision.os2iot import Os2iot, register_os2iot

__all__ = ["Os2iotDemo"]


def _secret_file(path: Path, text: str) -> str:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return str(path)


class Os2iotDemo:
    def __init__(self, workdir: Path, broker_url: str) -> None:
        self.workdir = workdir
        self.api_key = secrets.token_hex(16)
        self.push_header = "Bearer " + secrets.token_urlsafe(32)
        self.emulator = Os2iotEmulator(api_key=self.api_key, broker_url=broker_url, netsim=None)
        self.registered = 0
        self.target_id: int | None = None

    async def __aenter__(self) -> Os2iotDemo:
        await self.emulator.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.emulator.close()

    def gateway_overrides(self) -> dict[str, dict[str, Any]]:
        """The gateway's ``[os2iot]`` section (keys in 0600 files in the work directory)."""
        return {
            "os2iot": {
                "url": self.emulator.url,
                "api_key_file": _secret_file(self.workdir / "os2iot-api.key", self.api_key),
                "ingest": "http_push",
                "push_authorization_file": _secret_file(
                    self.workdir / "os2iot-push.auth", self.push_header
                ),
                "downlinks": True,
                "poll_interval_s": 1.0,
                "retry_min_s": 1.0,
                "retry_max_s": 30.0,
            }
        }

    @staticmethod
    def fleet_options(dev_euis: list[str]) -> dict[str, Any]:
        """Fleet keywords: an empty ChirpStack, and every node unpowered until it is connected."""
        return {"powered_off": frozenset(dev_euis), "register_in_emulator": False}

    async def register(self, fleet: Any, files: Any) -> int:
        """Create every node through OS2iot (and so in the fleet's ChirpStack emulator)."""
        self.emulator.state.netsim = fleet.netsim.server
        profiles = {"bin": DEFAULT_PROFILES[0].id, "lamp": DEFAULT_PROFILES[1].id}

        def run() -> Any:
            with Os2iot(self.emulator.url, self.api_key) as client:
                return register_os2iot(
                    files.inventory.nodes,
                    files.secrets,
                    client,
                    application_id=1,
                    profiles=profiles,
                )

        report = await asyncio.to_thread(run)  # a sync client; the emulator runs on this loop
        if report.failures:
            dev_eui, reason = report.failures[0]
            raise RuntimeError(f"OS2iot registration failed for {dev_eui}: {reason}")
        self.registered = sum(report.outcomes.values())
        return self.registered

    async def connect(self, gateway_api_url: str, fleet: Any) -> None:
        """The data target to the gateway, every device connected to it, then power on."""
        async with httpx.AsyncClient(
            base_url=self.emulator.url, headers={"X-API-KEY": self.api_key}, timeout=10.0
        ) as http:
            target = await http.post(
                "/data-target",
                json={
                    "name": "citypack gateway",
                    "type": "HTTP_PUSH",
                    "applicationId": 1,
                    "url": f"{gateway_api_url}/api/v1/ingest/os2iot",
                    "timeout": 10000,
                    "authorizationHeader": self.push_header,
                },
            )
            target.raise_for_status()
            self.target_id = int(target.json()["id"])
            connected = await http.post(
                "/iot-device-payload-decoder-data-target-connection",
                json={
                    "iotDeviceIds": sorted(self.emulator.state.devices),
                    "dataTargetId": self.target_id,
                    "payloadDecoderId": None,
                },
            )
            connected.raise_for_status()
        for index, dev_eui in enumerate(sorted(fleet.nodes)):
            fleet.power_on(dev_eui)
            if index % 10 == 9:
                await asyncio.sleep(0.05)  # a spread of boots, as a truck of installers gives

    def summary(self) -> dict[str, Any]:
        """For ``demo-summary.json``: what went through OS2iot."""
        state = self.emulator.state
        listener = self.emulator.listener
        return {
            "api": self.emulator.url,
            "devices_registered": self.registered,
            "pushes_ok": listener.pushes,
            "pushes_failed": listener.push_failures,
            "uplinks_dropped_unknown_device": listener.dropped,
            "downlinks": len(state.downlinks),
            "downlinks_sent": sum(1 for d in state.downlinks if d.send_at is not None),
        }
