"""`citypack demo --fuota`: an update over the air to one street's lamps while the city runs.

What it adds to the demo (tools/demo.py): a signing key made for the run (kept in memory), a
signed bundle (0.1.0 -> 0.2.0, one module), the emulator's gRPC API for the gateway's
``[multicast]``/``[fuota]`` sections, the fuota agent on every lamp (tools/sim/fuota.py), and
10 % of multicast frames lost at each lamp on the simulated air (tools/sim/network.py). Once the
street's lamps have reported their version, the campaign goes to the gateway's API and is
followed to its end; ``demo-summary.json`` gets a ``fuota`` object.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.fuota import bundle as fb
from tools.fuota import public_key_hex
from tools.sim.broker import ReservedPort
from tools.sim.fuota import FuotaNodes
from tools.sim.gatewayproc import GatewayProcess, GatewayProcessError
from tools.sim.world import World

__all__ = ["FuotaDemo"]

LOSS = 0.10
MODULE_BYTES = 6000
_FINAL = ("done", "failed", "cancelled")


class FuotaDemo:
    def __init__(self, workdir: Path, world: World, speed: float) -> None:
        self.workdir = workdir
        self.speed = speed
        self._key = Ed25519PrivateKey.generate()
        body = b"M\x06" + hashlib.shake_256(b"citypack demo update").digest(MODULE_BYTES)
        module = fb.Module("apps/demo_update.mpy", body)
        self.bundle = fb.build("0.2.0", "0.1.0", [module], [], self._key.sign)
        lamps_by_street = Counter(lamp.street for lamp in world.lamps.values())
        self.street = lamps_by_street.most_common(1)[0][0] if lamps_by_street else ""
        self.lamps = sorted(e for e, lamp in world.lamps.items() if lamp.street == self.street)
        self._reserved = ReservedPort()  # held until close(): tools/sim/broker.py says why
        self.grpc_port = self._reserved.port
        self._cs_token = uuid.uuid4().hex
        self.summary: dict[str, Any] = {
            "street": self.street,
            "devices": len(self.lamps),
            "applied": 0,
            "failed": 0,
            "fragments_sent": 0,
            "airtime_s": 0.0,
            "seconds": None,
            "state": "not started",
            "loss": LOSS,
            "bundle_bytes": len(self.bundle),
        }

    def close(self) -> None:
        """Let the emulator's gRPC port go (call when the demo stops)."""
        self._reserved.close()

    def gateway_overrides(self) -> dict[str, dict[str, Any]]:
        token_file = self.workdir / "chirpstack-token"
        token_file.write_text(self._cs_token + "\n")
        token_file.chmod(0o600)
        key_file = self.workdir / "multicast-key"
        key_file.write_text(uuid.uuid4().hex + "\n")
        key_file.chmod(0o600)
        return {
            "chirpstack": {"api": f"127.0.0.1:{self.grpc_port}", "api_token_file": str(token_file)},
            "multicast": {
                "enabled": True,
                "key_file": str(key_file),
                "group_by": "street",
                "dr": 5,
            },
            "fuota": {
                "enabled": True,
                "session_timeout": 15,
                "status_wait_s": 30.0,
                "apply_timeout_s": 300.0,
                # a DR5 fragment is ~0.4 s on the lamps' (accelerated) air: twice that apart
                "fragment_interval_s": max(0.01, 0.8 / self.speed),
            },
        }

    def fleet_options(self) -> dict[str, Any]:
        return {
            "fuota": FuotaNodes(bytes.fromhex(public_key_hex(self._key)), self.workdir / "nodes"),
            "grpc": ("127.0.0.1", self.grpc_port),
            "api_token": self._cs_token,
            "multicast_loss": LOSS,
        }

    async def run(self, gateway: GatewayProcess, say: Any, timeout_s: float = 3600.0) -> None:
        """Wait for the street's lamps, start the campaign, follow it; fills :attr:`summary`."""
        if not self.lamps:
            self.summary["state"] = "no lamps"
            return
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                devices = [
                    await gateway.request("GET", f"/api/v1/devices/{eui}") for eui in self.lamps
                ]
            except GatewayProcessError:
                devices = []
            if devices and all(d.get("reported", {}).get("firmware_version") for d in devices):
                break
            if time.monotonic() > deadline:
                self.summary["state"] = "lamps did not report their version"
                return
            await asyncio.sleep(2.0)
        body = {
            "group": self.street,
            "bundle": base64.b64encode(self.bundle).decode(),
            "kind": "lamp",
        }
        started = time.monotonic()
        doc = await gateway.request("POST", "/api/v1/fuota/campaigns", json=body)
        say(
            f"fuota: campaign {doc['id'][:8]} to the {len(self.lamps)} lamps of {self.street}: "
            f"{len(self.bundle)} bytes, {doc['nb_frag']} fragments + {doc['redundancy']} coded, "
            f"{int(LOSS * 100)} % lost on the air"
        )
        last = ""
        while doc["state"] not in _FINAL and time.monotonic() < deadline:
            await asyncio.sleep(2.0)
            doc = await gateway.request("GET", f"/api/v1/fuota/campaigns/{doc['id']}")
            counts = doc["counts"]
            line = (
                f"fuota: {doc['state']}, applied {counts.get('applied', 0)}/{len(self.lamps)}, "
                f"fragments {doc['fragments_sent']}"
            )
            if line != last:
                say(line)
                last = line
        counts = doc["counts"]
        self.summary.update(
            id=doc["id"],
            devices=len(doc["devices"]),
            state=doc["state"],
            applied=counts.get("applied", 0),
            failed=counts.get("failed", 0),
            fragments_sent=doc["fragments_sent"],
            airtime_s=doc["airtime_s"],
            seconds=round(time.monotonic() - started, 1),
            status_rounds=doc["status_rounds"],
            versions=sorted({str(d["version"]) for d in doc["devices"]}),
            errors=sorted({d["error"] for d in doc["devices"] if d["error"]}),
        )
