"""The air capture, the keys files and the `citypack netsim` command."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.lorawan.data import DataFrame
from protocol.lorawan.join import EncryptedJoinAccept, JoinRequest
from protocol.lorawan.phy import PHYPayload
from tests.helpers.procs import ROOT, Broker, free_port
from tests.netsim.conftest import CLASS_A, CLASS_C, GW1, GW2, Harness, fast_config
from tests.netsim.fakenode import FakeNode, air
from tools.cli import main
from tools.netsim.capture import Capture
from tools.netsim.devices import DeviceFileError, load_devices
from tools.netsim.server import NetworkServer

CAPTURE_FIELDS = ["time", "direction", "phy", "dev_eui", "frequency", "datr", "gateway"]
KEY_A = CLASS_A.app_key.hex()


async def test_capture_lines_decode(tmp_path: Path) -> None:
    path = tmp_path / "air.jsonl"
    with Capture(path) as capture:
        ns = NetworkServer([CLASS_A], fast_config(), capture=capture)
        harness = Harness(ns)
        ns.add_event_sink(harness.sink)
        harness.gateway(GW1)
        harness.gateway(GW2)
        async with ns:
            node = FakeNode.for_device(CLASS_A)
            await harness.join(node, GW1, GW2)
            ns.enqueue(CLASS_A.dev_eui, b"\x01\x02", f_port=7)
            ns.receive_uplink(GW1, air(node.uplink(b"hello", fport=2), freq_mhz=868.3))
            await harness.downlink(GW1)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["direction"], r["gateway"]) for r in lines] == [
        ("up", GW1),
        ("up", GW2),  # the same Join-Request heard twice: one line per reception
        ("down", GW1),
        ("up", GW1),
        ("down", GW1),
    ]
    for record in lines:
        assert list(record) == CAPTURE_FIELDS
        assert record["dev_eui"] == CLASS_A.dev_eui
        assert isinstance(record["frequency"], int) and record["datr"] == "SF7BW125"
        assert record["time"].endswith("+00:00")
    frames = [PHYPayload.from_bytes(bytes.fromhex(r["phy"])) for r in lines]
    assert isinstance(frames[0], JoinRequest) and isinstance(frames[2], EncryptedJoinAccept)
    assert isinstance(frames[3], DataFrame) and isinstance(frames[4], DataFrame)
    assert lines[3]["frequency"] == 868_300_000 == lines[4]["frequency"]  # RX1 = uplink channel

    # `citypack frame decode` reads the capture as it is; with the AppKey it follows the join.
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tools.cli", "frame", "decode", "--json", "--appkey", KEY_A, "-"],
        input=path.read_text(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    decoded = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["mtype"] for d in decoded] == [
        "join_request",
        "join_request",
        "join_accept",
        "unconfirmed_data_up",
        "unconfirmed_data_down",
    ]
    assert decoded[0]["dev_eui"] == CLASS_A.dev_eui
    assert decoded[3]["mic_ok"] is True and decoded[4]["mic_ok"] is True
    assert decoded[4]["frm_payload"] == "0102"
    assert KEY_A not in result.stdout + result.stderr


def test_keys_files(tmp_path: Path) -> None:
    toml = tmp_path / "keys.toml"
    toml.write_text(
        f'[[device]]\ndev_eui = "{CLASS_A.dev_eui.upper()}"\njoin_eui = "{CLASS_A.join_eui}"\n'
        f'app_key = "{KEY_A}"\nclass = "A"\nname = "bin-001"\ntags = {{ kind = "bin" }}\n'
        f'[[device]]\ndev_eui = "{CLASS_C.dev_eui}"\napp_key = "{CLASS_C.app_key.hex()}"\n'
        'class = "CLASS_C"\n'
    )
    a, c = load_devices(toml)
    assert a == CLASS_A  # DevEUI lower-cased, tags kept
    assert (c.device_class, c.name, c.join_eui) == ("C", CLASS_C.dev_eui, "0" * 16)
    as_json = tmp_path / "keys.json"
    as_json.write_text(json.dumps({"devices": [{"dev_eui": CLASS_A.dev_eui, "app_key": KEY_A}]}))
    assert load_devices(as_json)[0].app_key == CLASS_A.app_key
    # a provisioning inventory (no keys) and its secrets file (dev_eui = app_key)
    inventory = tmp_path / "city.toml"
    inventory.write_text(
        f'[[device]]\ndev_eui = "{CLASS_A.dev_eui}"\nkind = "bin"\nname = "bin-001"\n'
        f'[[device]]\ndev_eui = "{CLASS_C.dev_eui}"\nkind = "lamp"\nname = "lamp-001"\n'
    )
    secrets = tmp_path / "city.secrets.toml"
    secrets.write_text(f'{CLASS_A.dev_eui} = "{KEY_A}"\n{CLASS_C.dev_eui} = "{"ab" * 16}"\n')
    bin_, lamp = load_devices(inventory, secrets)
    assert bin_.app_key == CLASS_A.app_key and bin_.name == "bin-001"
    assert (bin_.device_class, lamp.device_class) == ("A", "C")  # from kind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[device]]\ndev_eui = "70b3d57ed0000a01"\n', "no app_key"),
        ('[[device]]\ndev_eui = "70b3"\napp_key = "KEY"\n', "dev_eui"),
        ('[[device]]\ndev_eui = "70b3d57ed0000a01"\napp_key = "0123456789abcdef"\n', "app_key"),
        (f'[[device]]\ndev_eui = "70b3d57ed0000a01"\napp_key = "{KEY_A}"\nclass = "B"\n', "class"),
        ("[[device]]\n", "dev_eui is missing"),
        ("[devices\n", "neither valid TOML nor JSON"),
        ("title = 'no devices'\n", "no [[device]]"),
    ],
)
def test_bad_keys_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text.replace("KEY", KEY_A[:30] + "zz"))
    with pytest.raises(DeviceFileError, match=re.escape(message)) as info:
        load_devices(path)
    assert KEY_A[:30] not in str(info.value)  # a key never appears in an error


def test_help_is_complete(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["netsim", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    flat = "".join(text.split())  # argparse wraps lines
    for option in ("--broker", "--devices", "--secrets", "--udp", "--application-id"):
        assert option in text
    for option in ("--marshaler", "--capture", "json", "protobuf", "--mqtt-v5"):
        assert option in text
    assert (
        "application/{applicationId}/device/{devEui}/event/{up|join|ack|txack|status|log}" in flat
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--broker", "mqtt://127.0.0.1:1", "--devices", "/nonexistent/keys.toml"],
        ["--broker", "http://x", "--devices", "KEYS"],
        ["--broker", "mqtt://127.0.0.1:1", "--devices", "KEYS", "--udp", "nonsense"],
        ["--broker", "mqtt://127.0.0.1:1", "--devices", "KEYS", "--application-id", "app"],
        ["--broker", "mqtt://127.0.0.1:1", "--devices", "KEYS", "--marshaler", "xml"],
        ["--broker", "mqtt://127.0.0.1:1", "--devices", "KEYS", "--api-token-file", "KEYS"],
        ["--broker", "mqtt://127.0.0.1:1", "--devices", "KEYS", "--grpc", "nonsense"],
        [
            *("--broker", "mqtt://127.0.0.1:1", "--devices", "KEYS", "--grpc", "127.0.0.1:0"),
            *("--api-token-file", "/nonexistent/token"),
        ],
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[[device]]\ndev_eui = "{CLASS_A.dev_eui}"\napp_key = "{KEY_A}"\n')
    argv = ["netsim", *[str(keys) if a == "KEYS" else a for a in args]]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    assert err[-1].startswith(("citypack: error:", "citypack netsim: error:"))


def test_unreachable_broker_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[[device]]\ndev_eui = "{CLASS_A.dev_eui}"\napp_key = "{KEY_A}"\n')
    port = free_port()  # nothing listens there
    argv = ["netsim", "--broker", f"mqtt://127.0.0.1:{port}", "--devices", str(keys)]
    assert main([*argv, "--udp", "127.0.0.1:0", "--connect-timeout", "0.3"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("citypack: error: netsim: no MQTT connection to 127.0.0.1")


@pytest.mark.broker
def test_runs_until_sigterm(tmp_path: Path, mosquitto_broker: Broker) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[[device]]\ndev_eui = "{CLASS_A.dev_eui}"\napp_key = "{KEY_A}"\n')
    capture = tmp_path / "air.jsonl"
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tools.cli", "netsim", "--broker", mosquitto_broker.url),
            *("--devices", str(keys), "--udp", f"127.0.0.1:{port}", "--capture", str(capture)),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        assert f"GWMP udp://127.0.0.1:{port}" in banner and "1 devices" in banner
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
    assert "netsim: stopped" in rest and "Traceback" not in rest
    assert capture.exists()


@pytest.mark.broker
def test_grpc_multicast_api_with_token(tmp_path: Path, mosquitto_broker: Broker) -> None:
    import grpc
    from chirpstack_api import api

    keys = tmp_path / "keys.toml"
    keys.write_text(f'[[device]]\ndev_eui = "{CLASS_A.dev_eui}"\napp_key = "{KEY_A}"\n')
    token = tmp_path / "token"
    token.write_text("cli-test-token\n")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tools.cli", "netsim", "--broker", mosquitto_broker.url),
            *("--devices", str(keys), "--udp", "127.0.0.1:0", "--grpc", "127.0.0.1:0"),
            *("--api-token-file", str(token)),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        match = re.search(r"gRPC 127\.0\.0\.1:(\d+)", banner)
        assert match, banner
        assert "cli-test-token" not in banner
        with grpc.insecure_channel(f"127.0.0.1:{match.group(1)}") as channel:
            stub = api.MulticastGroupServiceStub(channel)
            listed = stub.List(
                api.ListMulticastGroupsRequest(),
                metadata=[("authorization", "Bearer cli-test-token")],
                timeout=10,
            )
            assert listed.total_count == 0
            with pytest.raises(grpc.RpcError) as info:
                stub.List(api.ListMulticastGroupsRequest(), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
