"""A group ``lamp_override`` to a street of 30 lamps: frames on the air, multicast vs unicast
(issue 18, "Numbers": "A group lamp_override to 30 lamps: frames on the air, 1 vs 30").

Both runs use the same street (:class:`Street`): the emulator (``tools.netsim``, in process,
its gRPC ``MulticastGroupService`` on a loopback port and its air capture), the gateway
(``gateway.service.Gateway``, in process) on a private mosquitto, and 30 class C CPython lamps
(:mod:`tools.bench.street_lamps`) behind one in-process radio gateway that answer every command
with ``command_result``. Unicast: one ``lamp_override`` per lamp through the gateway's command
path (``submit_command``, confirmed, as the API does). Multicast: one group command through
``gateway.multicast`` (what ``POST /api/v1/groups/{group}/commands`` calls). Each run ends when
every lamp reported the command applied; the figures are the command frames in the capture,
their total LoRa time on air (protocol.lorawan.airtime) and the wall time until all applied,
which is dominated by the emulator's class C scheduling delays shrunk for the bench (the
ratio is what to read, not the seconds).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.config import parse_config
from gateway.service import Gateway
from protocol.errors import ProtocolError
from protocol.lorawan.airtime import lora_time_on_air_s
from protocol.lorawan.data import DataFrame
from protocol.lorawan.keys import AESKey
from tools.bench.report import Figure
from tools.bench.street_lamps import Lamp, McSession
from tools.netsim import region
from tools.netsim.config import NetsimConfig
from tools.netsim.devices import Device
from tools.netsim.gwmp import rxpk
from tools.netsim.runner import Netsim
from tools.os2iot.runner import DEFAULT_PROFILES, Os2iotEmulator

__all__ = ["BENCH", "Street", "run", "street", "street_netsim_config"]

BENCH = "group_override"
LAMPS = 30
GROUP = "elm-street"
RADIO_GATEWAY = "0016c001f153a14c"
OVERRIDE = {"dim_level": 20, "duration_s": 600}
_TIMEOUT_S = 120.0


def _devices(count: int) -> list[Device]:
    return [
        Device(
            dev_eui=f"70b3d57ed00e{i:04x}",
            join_eui="70b3d57ed00000ff",
            app_key=AESKey(bytes([0x40 + i % 64]) * 15 + bytes([i % 256])),
            device_class="C",
            name=f"lamp-{i:03d}",
            tags={"kind": "lamp"},
        )
        for i in range(count)
    ]


@dataclass
class Street:
    """A running street (see the module doc); made by :func:`street`."""

    netsim: Netsim
    gateway: Gateway
    lamps: list[Lamp]
    capture_path: Path
    joining: Lamp | None = None
    tmst: int = 1_000_000
    pending: list[asyncio.Handle] = field(default_factory=list)
    os2iot: Os2iotEmulator | None = None  # an OS2iot city's street (:func:`street`)

    # -- the radio side ----------------------------------------------------------------------
    def send(self, phy: bytes) -> None:
        """A lamp's frame reaches the radio gateway (and from there the emulator)."""
        self.tmst = (self.tmst + 50_000) & 0xFFFFFFFF
        frame = rxpk(phy, tmst=self.tmst, freq_mhz=868.1, datr="SF7BW125", lsnr=7.5, rssi=-70)
        self.netsim.server.receive_uplink(RADIO_GATEWAY, frame)

    def on_air(self, txpk: dict[str, Any], token: int) -> None:
        """A downlink transmitted by the radio gateway: every lamp hears it."""
        phy = base64.b64decode(txpk["data"])
        if self.joining is not None and phy[0] >> 5 == 1 and self.joining.join_accept(phy):
            self.joining = None
            return
        loop = asyncio.get_running_loop()
        for lamp in self.lamps:
            answer = lamp.hear(phy)
            if answer is not None:  # not from inside the emulator's callback: next loop turn
                self.pending.append(loop.call_soon(self.send, answer))

    async def join_all(self) -> None:
        for lamp in self.lamps:
            self.joining = lamp
            self.send(lamp.join_request())
            await _until(lambda: self.joining is None, f"join of {lamp.dev_eui}")
            self.send(lamp.uplink("lamp_status", _STATUS))
        await _until(
            lambda: all(
                (d := self.gateway.devices.get(lamp.dev_eui)) is not None
                and d.last_seen is not None
                for lamp in self.lamps
            ),
            "every lamp's first uplink at the gateway",
        )

    def give_group_key(self, group: str) -> None:
        """Stand-in for McGroupSetupReq: each lamp gets the group's McKey and McAddr."""
        assert self.gateway.multicast is not None
        keys = self.gateway.multicast.keys(group)
        for lamp in self.lamps:
            lamp.groups.append(McSession(keys.mc_addr, keys.mc_key))

    # -- what the air saw --------------------------------------------------------------------
    def air(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.capture_path.read_text().splitlines()]

    def command_frames(self, f_port: int) -> list[dict[str, Any]]:
        """Downlink lines on the air that carry an application payload on ``f_port``."""
        out = []
        for line in self.air():
            if line["direction"] != "down":
                continue
            try:
                frame = DataFrame.from_bytes(bytes.fromhex(line["phy"]))
            except ProtocolError:  # a Join-Accept: not a data frame
                continue
            if frame.fport == f_port:
                out.append(line)
        return out

    def applied(self, message: str = "lamp_override") -> int:
        return sum(1 for lamp in self.lamps if any(a["message"] == message for a in lamp.applied))


_STATUS = {
    "dim_level": 70,
    "active_power_w": 42,
    "mode": "schedule",
    "lamp_failure": False,
    "dimming_failure": False,
    "relay_failure": False,
    "supply_loss": False,
    "day_burner": False,
    "road_users": 0,
    "config_version": 0,
}


async def _until(predicate: Any, what: str, timeout_s: float = _TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:g} s")
        await asyncio.sleep(0.01)


def street_netsim_config(app: str, seed: int = 18) -> NetsimConfig:
    """The emulator of a street: its delays shrunk so a bench or test waits for work, not
    for ChirpStack's scheduling intervals; no ADR or DevStatus traffic on the air."""
    return NetsimConfig(
        application_id=app,
        dedup_window_s=0.02,
        downlink_data_delay_s=0.01,
        scheduler_interval_s=0.05,
        class_c_lock_s=0.05,
        class_a_lock_s=0.05,
        class_c_timeout_s=2.0,
        multicast_class_c_margin_s=0.05,
        dev_status_every=0,
        adr_enabled=False,
        seed=seed,
    )


@contextlib.asynccontextmanager
async def street(
    directory: Path,
    broker_url: str,
    *,
    lamps: int = LAMPS,
    api_token: str = "bench-token",
    os2iot_key: str | None = None,
    store_url: str | None = None,
) -> AsyncIterator[Street]:
    """Emulator + gateway + lamps, joined and heard once; the group's members registered. The
    gateway's store is a SQLite file in ``directory`` unless ``store_url`` names one.

    With ``os2iot_key`` the street is an OS2iot city's (docs/os2iot.md): the OS2iot emulator
    (:mod:`tools.os2iot`) sits in front of the ChirpStack emulator, the lamps are created through
    it (OS2iot has no JoinEUI: all zero), and the gateway sends commands and makes its groups
    through OS2iot's API (``[os2iot] downlinks``, gateway/os2iot_groups.py) with the OS2iot
    application number 1; it is :attr:`Street.os2iot`."""
    app = str(uuid.uuid4())
    devices = _devices(lamps)
    if os2iot_key is not None:
        devices = [replace(d, join_eui="0000000000000000") for d in devices]
    (directory / "cs-token").write_text("chirpstack-bench-token\n")
    (directory / "mc-key").write_text(uuid.uuid4().hex + "\n")
    config = street_netsim_config(app)
    capture_path = directory / f"air-{app}.jsonl"
    async with contextlib.AsyncExitStack() as stack:
        netsim = await stack.enter_async_context(
            Netsim(
                devices if os2iot_key is None else [],
                broker_url=broker_url,
                config=config,
                capture_path=capture_path,
                grpc=("127.0.0.1", 0),
                api_token="chirpstack-bench-token",
            )
        )
        emulator = None
        if os2iot_key is not None:
            emulator = await stack.enter_async_context(
                Os2iotEmulator(api_key=os2iot_key, broker_url=broker_url, netsim=netsim.server)
            )
            results = emulator.state.create_many([_os2iot_item(d) for d in devices])
            assert all("data" in r for r in results), results
        store = store_url or f"sqlite:///{directory / f'gw-{app}.db'}"
        async with _street(
            directory, broker_url, app, devices, netsim, emulator, api_token, capture_path, store
        ) as rig:
            yield rig


def _os2iot_item(device: Device) -> dict[str, Any]:
    """The lamp as ``POST /iot-device/createMany`` takes it (tools/provision/os2iot.py)."""
    return {
        "name": device.name,
        "type": "LORAWAN",
        "applicationId": 1,
        "lorawanSettings": {
            "devEUI": device.dev_eui,
            "activationType": "OTAA",
            "OTAAapplicationKey": device.app_key.to_bytes().hex(),
            "deviceProfileID": DEFAULT_PROFILES[1].id,  # the class C lamp profile
        },
    }


@contextlib.asynccontextmanager
async def _street(
    directory: Path,
    broker_url: str,
    app: str,
    devices: list[Device],
    netsim: Netsim,
    emulator: Os2iotEmulator | None,
    api_token: str,
    capture_path: Path,
    store_url: str,
) -> AsyncIterator[Street]:
    assert netsim.grpc_address is not None
    sections: dict[str, Any] = {
        "mqtt": {"url": broker_url, "client_id": f"gw-{app[:8]}", "application_id": app},
        "store": {"url": store_url},
        "api": {"enabled": True, "listen": "127.0.0.1:0"},
        "publish": {"base_topic": f"cp{app[:8]}"},
        "chirpstack": {
            "api": f"127.0.0.1:{netsim.grpc_address[1]}",
            "api_token_file": str(directory / "cs-token"),
        },
        "multicast": {
            "enabled": True,
            "key_file": str(directory / "mc-key"),
            "command_timeout_s": 3600.0,
        },
    }
    if emulator is not None:
        key_file = directory / "os2iot-key"
        key_file.write_text(emulator.state.api_key + "\n")
        key_file.chmod(0o600)
        sections["os2iot"] = {
            "url": emulator.url,
            "api_key_file": str(key_file),
            "downlinks": True,
            "poll_interval_s": 0.2,
            "retry_min_s": 0.2,
            "retry_max_s": 1.0,
        }
        sections["multicast"]["application_id"] = "1"  # the OS2iot application's number
    cfg = parse_config(sections, environ={})
    gateway = Gateway(cfg, api_token=api_token)
    task = asyncio.create_task(gateway.run(), name="gateway")
    try:
        await _until(lambda: gateway.started.is_set() or task.done(), "gateway start")
        if task.done():
            task.result()
        await _until(gateway.bridge.connected.is_set, "gateway MQTT connection")
        for device in devices:
            gateway.upsert_device(
                device.dev_eui, {"kind": "lamp", "name": device.name, "group": GROUP}
            )
        rig = Street(
            netsim,
            gateway,
            [Lamp(d.dev_eui, d.join_eui, d.app_key.to_bytes()) for d in devices],
            capture_path,
            os2iot=emulator,
        )
        netsim.server.attach_gateway(RADIO_GATEWAY, rig.on_air)
        await rig.join_all()
        yield rig
    finally:
        gateway.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)
        await gateway.close()


def _airtime_s(lines: list[dict[str, Any]]) -> float:
    total = 0.0
    for line in lines:
        sf, bw = region.parse_datr(line["datr"])
        total += lora_time_on_air_s(
            len(bytes.fromhex(line["phy"])), spreading_factor=sf, bandwidth_hz=bw
        )
    return total


async def _measure(directory: Path, broker_url: str, multicast: bool) -> tuple[int, float, float]:
    async with street(directory, broker_url) as rig:
        started = time.monotonic()
        if multicast:
            assert rig.gateway.multicast is not None
            rig.give_group_key(GROUP)
            await rig.gateway.multicast.submit(GROUP, "lamp_override", dict(OVERRIDE))
        else:
            for lamp in rig.lamps:
                rig.gateway.submit_command(lamp.dev_eui, "lamp_override", dict(OVERRIDE))
        await _until(lambda: rig.applied() == len(rig.lamps), "every lamp applied")
        seconds = time.monotonic() - started
        frames = rig.command_frames(120)
        return len(frames), _airtime_s(frames), seconds


def run() -> list[Figure]:
    from tools.bench.gateway_throughput import _start_mosquitto

    with tempfile.TemporaryDirectory(prefix="citypack-mcbench-") as tmp:
        directory = Path(tmp)
        broker, port = _start_mosquitto(directory)
        try:
            url = f"mqtt://127.0.0.1:{port}"
            uni_frames, uni_air, uni_s = asyncio.run(_measure(directory, url, False))
            mc_frames, mc_air, mc_s = asyncio.run(_measure(directory, url, True))
        finally:
            broker.terminate()
            broker.wait(timeout=10)
    return [
        Figure(BENCH, "lamp_override frames on the air, multicast", mc_frames, "frames", 1, "<="),
        Figure(
            BENCH, "lamp_override frames on the air, unicast", uni_frames, "frames", note="30 lamps"
        ),
        Figure(BENCH, "lamp_override airtime, multicast", mc_air, "s"),
        Figure(BENCH, "lamp_override airtime, unicast", uni_air, "s"),
        Figure(
            BENCH,
            "airtime ratio unicast/multicast",
            uni_air / mc_air if mc_air else 0.0,
            "x",
            note="same street, same command",
        ),
        Figure(BENCH, "seconds until 30 applied, multicast", mc_s, "s", note="emulator delays"),
        Figure(BENCH, "seconds until 30 applied, unicast", uni_s, "s", note="emulator delays"),
    ]


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.value:g} {figure.unit}")
