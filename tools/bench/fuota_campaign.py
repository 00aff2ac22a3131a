"""A FUOTA campaign to a street of 30 lamps with a 32 KB bundle, through the whole stack
(issue 18, "Numbers": airtime and time vs unicast, success at 10 % and 30 % fragment loss).

Each run: a private mosquitto, ``citypack gateway run`` (child process) with ``[multicast]`` and
``[fuota]``, the emulator with its gRPC API, and 30 lamps of the fleet simulator running the
firmware's MAC, lamp app and fuota agent in time accelerated ``SPEED`` times; each lamp loses
each multicast frame with the run's probability (tools/sim/network.py). The campaign is started
over the gateway's API and followed to its end. Multicast at DR5 (239-byte fragments).

Figures: the share of lamps that reported the new version at 10 % and 30 % loss with the
redundancy chosen for each (``redundancy_for`` of the firmware bench, plus the gateway's extra
rounds); the gateway airtime of the campaign (every fragment and status request, from the
campaign's own count, protocol.lorawan.airtime) against the same bytes sent to each lamp by
unicast at the same data rate with nothing lost (a lower bound for unicast: 30 x M frames); the
time the gateway needs at the RX2 sub-band's 10 % duty cycle for each (airtime / 0.1); and the
campaign's wall time in the simulator (setup, fragments paced for the simulated air, status).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.fuota import bundle as fb
from protocol.lorawan.airtime import lora_time_on_air_s
from tools.bench.fuota_firmware import redundancy_for
from tools.bench.report import Figure
from tools.fuota import public_key_hex

BENCH = "fuota_campaign"
LAMPS = 30
BUNDLE_BYTES = 32 * 1024
FRAG_SIZE = 239  # EU868 DR5 FRMPayload 242 minus the DataFragment header
SPEED = 40.0
STREET = "Mejlgade"
_TIMEOUT_S = 1800.0


def _bundle(key: Ed25519PrivateKey) -> bytes:
    body = hashlib.shake_256(b"citypack fuota campaign bench").digest(BUNDLE_BYTES - 400)
    return fb.build("0.2.0", "0.1.0", [fb.Module("apps/big.mpy", b"M\x06" + body)], [], key.sign)


def _frame_airtime_s(payload: int) -> float:
    return lora_time_on_air_s(payload + 13, spreading_factor=7, bandwidth_hz=125_000)


async def _campaign(directory: Path, broker_url: str, loss: float) -> dict[str, Any]:
    """One campaign at ``loss``; the gateway's campaign document, wall time and air counts."""
    from tools.sim.fuota_street import fuota_street

    key = Ed25519PrivateKey.generate()
    data = _bundle(key)
    m = -(-len(data) // FRAG_SIZE)
    percent = -(-100 * redundancy_for(m, loss) // m)
    fuota = {
        "redundancy_percent": percent,
        "answer_timeout_s": 30.0,
        "status_wait_s": 30.0,
        "apply_timeout_s": 300.0,
        "session_timeout": 15,
        "fragment_interval_s": 0.02,  # ~0.8 s of the lamps' time: a DR5 frame is 0.4 s
    }
    started_at = time.monotonic()
    async with fuota_street(
        directory,
        mqtt_url=broker_url,
        lamps=[f"02c17a0e0000{index:04x}" for index in range(LAMPS)],
        street=STREET,
        public_key_hex=public_key_hex(key),
        fuota=fuota,
        loss=loss,
        seed=18,
        speed=SPEED,
        ready_within_s=_TIMEOUT_S,
    ) as street:
        deadline = started_at + _TIMEOUT_S
        body = {"group": STREET, "bundle": base64.b64encode(data).decode(), "kind": "lamp"}
        started = time.monotonic()
        doc = await street.api("POST", "/api/v1/fuota/campaigns", json=body)
        while doc["state"] not in ("done", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"campaign still {doc['state']}")
            await asyncio.sleep(1.0)
            doc = await street.api("GET", f"/api/v1/fuota/campaigns/{doc['id']}")
        return {
            "doc": doc,
            "seconds": time.monotonic() - started,
            "lost": street.fleet.backhaul.multicast_lost,
            "m": m,
            "percent": percent,
        }


def run() -> list[Figure]:
    from tools.bench.gateway_throughput import _start_mosquitto

    results: dict[float, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="citypack-fuota-bench-") as tmp:
        root = Path(tmp)
        broker, port = _start_mosquitto(root)
        try:
            for loss in (0.10, 0.30):
                directory = root / f"loss-{int(loss * 100)}"
                directory.mkdir()
                results[loss] = asyncio.run(_campaign(directory, f"mqtt://127.0.0.1:{port}", loss))
        finally:
            broker.terminate()
            broker.wait(timeout=10)
    figures: list[Figure] = []
    for loss, r in results.items():
        doc = r["doc"]
        applied = doc["counts"].get("applied", 0)
        pct = int(loss * 100)
        figures.append(
            Figure(
                BENCH,
                f"30 lamps, 32 KB: share applied with {pct} % fragment loss",
                round(applied / LAMPS, 3),
                "share",
                goal=1.0,
                better=">=",
                note=(
                    f"redundancy {r['percent']} % of M={r['m']}, {doc['fragments_sent']} "
                    f"fragments sent, {doc['status_rounds']} status rounds, {r['lost']} "
                    f"(lamp, frame) pairs lost"
                ),
            )
        )
        figures.append(
            Figure(
                BENCH,
                f"campaign wall time in the simulator, {pct} % loss",
                round(r["seconds"], 1),
                "s",
                note=f"lamps' time x{SPEED:g}; setup, paced fragments, status, restarts",
            )
        )
    ten = results[0.10]
    multicast_air = float(ten["doc"]["airtime_s"])
    unicast_air = LAMPS * ten["m"] * _frame_airtime_s(FRAG_SIZE + 3)
    figures += [
        Figure(BENCH, "gateway airtime, multicast campaign (10 % loss)", multicast_air, "s"),
        Figure(
            BENCH,
            "gateway airtime, same bytes by unicast",
            round(unicast_air, 1),
            "s",
            note="30 x M frames at DR5, nothing lost (lower bound)",
        ),
        Figure(
            BENCH, "airtime ratio unicast/multicast", round(unicast_air / multicast_air, 1), "x"
        ),
        Figure(
            BENCH,
            "gateway time at 10 % duty cycle, multicast",
            round(multicast_air / 0.1 / 60, 1),
            "min",
        ),
        Figure(
            BENCH,
            "gateway time at 10 % duty cycle, unicast",
            round(unicast_air / 0.1 / 60, 1),
            "min",
            note="same ratio as airtime: both bound by the RX2 sub-band's duty cycle",
        ),
    ]
    return figures


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.value:g} {figure.unit}  {figure.note}")
