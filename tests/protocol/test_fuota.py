"""protocol.fuota on its golden vectors (protocol/vectors/fuota.json: ChirpStack applayer tests)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from protocol.errors import DecodeError, EncodeError
from protocol.fuota import bundle, clocksync, fec, fragmentation, keys, mcsetup

VECTORS = json.loads(
    (__import__("pathlib").Path(__file__).parents[2] / "protocol/vectors/fuota.json").read_text()
)
PACKAGES: dict[str, Any] = {
    "clocksync": clocksync,
    "multicastsetup": mcsetup,
    "fragmentation": fragmentation,
}


@pytest.mark.parametrize("vec", VECTORS["commands"], ids=lambda v: f"{v['package']}-{v['name']}")
def test_command_vectors_round_trip(vec: dict[str, str]) -> None:
    mod = PACKAGES[vec["package"]]
    decode = mod.decode_downlink if vec["direction"] == "down" else mod.decode_uplink
    cmds = decode(bytes.fromhex(vec["hex"]))
    assert len(cmds) == 1 and type(cmds[0]).__name__ == vec["name"]
    assert cmds[0].to_bytes().hex() == vec["hex"]


@pytest.mark.parametrize("vec", VECTORS["truncated"], ids=lambda v: v["hex"])
def test_truncated_commands_are_refused(vec: dict[str, str]) -> None:
    mod = PACKAGES[vec["package"]]
    decode = mod.decode_downlink if vec["direction"] == "down" else mod.decode_uplink
    with pytest.raises(DecodeError):
        decode(bytes.fromhex(vec["hex"]))


def test_keys_vectors() -> None:
    for v in VECTORS["mc_keys"]:
        if "gen_app_key" in v:
            assert keys.mc_root_key_1_0(bytes.fromhex(v["gen_app_key"])).hex() == v["mc_root_key"]
        if "app_key" in v:
            assert keys.mc_root_key_1_1(bytes.fromhex(v["app_key"])).hex() == v["mc_root_key"]
        if "mc_kekey" in v:
            assert keys.mc_kekey(bytes.fromhex(v["mc_root_key"])).hex() == v["mc_kekey"]
        if "mc_app_s_key" in v:
            addr = int(v["mc_addr"], 16)
            assert keys.mc_app_s_key(bytes.fromhex(v["mc_key"]), addr).hex() == v["mc_app_s_key"]
            assert keys.mc_nwk_s_key(bytes.fromhex(v["mc_key"]), addr).hex() == v["mc_nwk_s_key"]
    kek = bytes(range(16))
    mc_key = bytes(range(16, 32))
    assert keys.mc_key_decrypt(kek, keys.mc_key_encrypt(kek, mc_key)) == mc_key


def test_fec_vectors_and_reference_decoder() -> None:
    for v in VECTORS["fec"]:
        data = bytes.fromhex(v["data"])
        frags = fec.encode(data, v["frag_size"], v["redundancy"])
        assert [f.hex() for f in frags] == v["fragments"]
    data = bytes(random.Random(1).randbytes(50 * 40))
    frags = fec.encode(data, 50, 30)
    kept = {n + 1: f for n, f in enumerate(frags) if n % 4 != 1}  # a quarter lost
    assert fec.decode(kept, 40, 50) == data
    with pytest.raises(DecodeError):
        fec.decode({1: frags[0]}, 40, 50)
    with pytest.raises(EncodeError):
        fec.encode(b"abc", 2, 1)


def test_bundle_round_trip_and_limits() -> None:
    mods = [bundle.Module("apps/lamp_node.mpy", b"\x4d\x06" + bytes(100))]
    data = bundle.build("0.2.0", "0.1.0", mods, ["apps/old.mpy"], lambda m: bytes(64))
    b = bundle.parse(data)
    assert b.version == "0.2.0" and b.modules == tuple(mods) and b.delete == ("apps/old.mpy",)
    with pytest.raises(DecodeError):
        bundle.parse(data[:-1])
    with pytest.raises(EncodeError):
        bundle.build("0.2.0", "0.1.0", [bundle.Module("../boot.mpy", b"")], [], lambda m: bytes(64))
    with pytest.raises(EncodeError):
        bundle.build("x" * 17, "0.1.0", mods, [], lambda m: bytes(64))


def test_unknown_cid_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        mcsetup.decode_downlink(b"\x05" + bytes(10))  # class B session: not supported
    with pytest.raises(EncodeError):
        mcsetup.McGroupSetupReq(4, 1, bytes(16), 0, 1).to_bytes()
