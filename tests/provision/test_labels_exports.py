"""TR005 labels (grammar, round trip, no key) and the OS2iot / TTS / ChirpStack exports."""

from __future__ import annotations

import csv
import io
import json
import stat
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.provision.conftest import Batch, Run
from tools.provision.errors import InventoryError, TR005Error
from tools.provision.exports import OS2IOT_HEADER, TTS_HEADER, export
from tools.provision.inventory import Node
from tools.provision.labels import TR005, label_png, label_svg, tr005_for

HEX = "0123456789ABCDEF"
_value = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=":"),
    min_size=1,
    max_size=20,
)


@given(
    join_eui=st.text(HEX, min_size=16, max_size=16),
    dev_eui=st.text(HEX, min_size=16, max_size=16),
    profile=st.text(HEX, min_size=8, max_size=8),
    owner=st.one_of(st.just(""), st.text("0123456789ABCDEF", min_size=1, max_size=12)),
    serial=st.one_of(st.just(""), _value),
    proprietary=st.one_of(st.just(""), _value),
    checksum=st.one_of(st.just(""), st.text(HEX, min_size=4, max_size=4)),
)
def test_tr005_round_trip(
    join_eui: str,
    dev_eui: str,
    profile: str,
    owner: str,
    serial: str,
    proprietary: str,
    checksum: str,
) -> None:
    code = TR005(
        join_eui=join_eui.lower(),
        dev_eui=dev_eui.lower(),
        vendor_id=profile[:4],
        profile_id=profile[4:],
        owner_token=owner,
        serial=serial,
        proprietary=proprietary,
        checksum=checksum,
    )
    text = code.to_string()
    assert text.startswith(f"LW:D0:{join_eui}:{dev_eui}:{profile}")
    assert TR005.parse(text) == code
    assert TR005.parse(text).to_string() == text


def test_tr005_of_the_specification_example() -> None:
    text = (
        "LW:D0:1122334455667788:AABBCCDDEEFF0011:AABB1122:OAABBCCDDEEFF:SYYWWNNNNNN:PFOOBAR:CAF2C"
    )
    code = TR005.parse(text)
    assert code.join_eui == "1122334455667788" and code.dev_eui == "aabbccddeeff0011"
    assert (code.vendor_id, code.profile_id) == ("AABB", "1122")
    assert (code.owner_token, code.serial, code.proprietary, code.checksum) == (
        "AABBCCDDEEFF",
        "YYWWNNNNNN",
        "FOOBAR",
        "AF2C",
    )
    assert code.to_string() == text


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "schema id"),
        ("LW", "version"),
        ("XX:D0:1122334455667788:AABBCCDDEEFF0011:AABB1122", "schema id"),
        ("LW:D1:1122334455667788:AABBCCDDEEFF0011:AABB1122", "version"),
        ("LW:D0:112233445566778:AABBCCDDEEFF0011:AABB1122", "JoinEUI"),
        ("LW:D0:1122334455667788:AABBCCDDEEFF00GG:AABB1122", "DevEUI"),
        ("LW:D0:1122334455667788:AABBCCDDEEFF0011", "ProfileID"),
        ("LW:D0:1122334455667788:AABBCCDDEEFF0011:AABB11", "ProfileID"),
        ("LW:D0:1122334455667788:AABBCCDDEEFF0011:AABB1122:S", "SerNum"),
        ("LW:D0:1122334455667788:AABBCCDDEEFF0011:AABB1122:SA:SB", "SerNum"),
        ("LW:D0:1122334455667788:AABBCCDDEEFF0011:AABB1122:CXYZ1", "CheckSum"),
        ("LW:D0:1122334455667788:AABBCCDDEEFF0011:AABB1122:K12", "element"),
        ("LW:D0:1122334455667788:AABBCCDDEEFF0011:AABB1122::S1", "element"),
        ("LW:D0:1122334455667788:AABBCCDDEEFF0011:AABB1122:Sa b", "SerNum"),
        ("LW:D0:1122334455667788:AABBCCDDEEFF0011:AABB1122:S" + "9" * 500, "string"),
    ],
)
def test_tr005_parser_names_the_bad_field(text: str, field: str) -> None:
    with pytest.raises(TR005Error) as caught:
        TR005.parse(text)
    assert caught.value.field == field
    assert f"TR005 {field}:" in str(caught.value)


def test_label_has_qr_name_deveui_and_never_the_key(batch: Batch) -> None:
    for node in batch.inventory.nodes:
        key = batch.secrets.app_keys[node.dev_eui].hex()
        payload = tr005_for(node).to_string()
        assert payload == (
            f"LW:D0:{node.join_eui.upper()}:{node.dev_eui.upper()}:"
            f"FFFF{'0001' if node.kind == 'bin' else '0002'}:S{node.serial}"
        )
        svg = label_svg(node, payload)
        root = ET.fromstring(svg.encode())
        texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
        assert node.name in texts
        grouped = " ".join(node.dev_eui.upper()[i : i + 4] for i in range(0, 16, 4))
        assert f"DevEUI {grouped}" in texts
        assert key not in svg.lower() and key.upper() not in svg
        png = label_png(node, payload, dpi=150)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_label_writes_files_and_sheet(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path
) -> None:
    out = tmp_path / "labels"
    run = cli("label", "--inventory", str(batch.path), "--out", str(out), "--sheet")
    assert run.code == 0, run.err
    names = sorted(p.name for p in out.iterdir())
    expected = sorted(
        [f"{n.name}.{ext}" for n in batch.inventory.nodes for ext in ("svg", "png")]
        + ["sheet.svg", "sheet.html"]
    )
    assert names == expected
    sheet = (out / "sheet.svg").read_text()
    for node in batch.inventory.nodes:
        assert f'data-dev-eui="{node.dev_eui}"' in sheet
        assert node.name in (out / "sheet.html").read_text()
    scanned = json.loads(cli("scan", tr005_for(batch.inventory.nodes[2]).to_string(),
                             "--inventory", str(batch.path)).out)  # fmt: skip
    assert scanned["node"]["name"] == batch.inventory.nodes[2].name
    bad = cli("scan", "LW:D0:zz")
    assert bad.code == 2 and bad.err.startswith("citypack: error: TR005 JoinEUI:")


# --- exports ------------------------------------------------------------------------------------

PROFILES = {
    "bin": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
    "lamp": "24855bf7-d10d-4aee-b618-ebfcb64dc7ad",
}


def test_os2iot_csv_matches_its_documented_header(batch: Batch) -> None:
    text = export("os2iot", batch.inventory.nodes, batch.secrets, profiles=PROFILES)
    # OS2iot bulk import (comma; OS2iot-frontend src/assets/docs/iotdevice_lorawan_otaa.csv)
    assert text.splitlines()[0] == (
        "name,id,type,longitude,latitude,commentOnLocation,comment,deviceModelId,devEUI,"
        "deviceProfileID,skipFCntCheck,activationType,OTAAapplicationKey"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == OS2IOT_HEADER
    for row, node in zip(rows, batch.inventory.nodes, strict=True):
        assert row["devEUI"] == node.dev_eui and row["type"] == "LORAWAN"
        assert row["activationType"] == "OTAA"
        assert row["OTAAapplicationKey"] == batch.secrets.app_keys[node.dev_eui].hex()
        assert row["deviceProfileID"] == PROFILES[node.kind]
    assert rows[0]["latitude"] == "56.1572" and rows[0]["longitude"] == "10.2107"
    with pytest.raises(InventoryError, match="--os2iot-profile lamp=UUID"):
        export("os2iot", batch.inventory.nodes, None, profiles={"bin": PROFILES["bin"]})


def test_tts_csv_is_semicolon_with_its_header(batch: Batch) -> None:
    text = export("tts", batch.inventory.nodes, batch.secrets)
    header = text.splitlines()[0]
    assert header == ";".join(TTS_HEADER)
    assert header.startswith("id;dev_eui;join_eui;name")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    for row, node in zip(rows, batch.inventory.nodes, strict=True):
        assert row["dev_eui"] == node.dev_eui.upper()
        assert row["id"] == node.name  # lower-case with hyphens
        assert row["frequency_plan_id"] == "EU_863_870_TTN"
        assert row["lorawan_version"] == "MAC_V1_0_4"
        assert row["app_key"] == batch.secrets.app_keys[node.dev_eui].hex().upper()
    assert all(r["app_key"] == "" for r in csv.DictReader(
        io.StringIO(export("tts", batch.inventory.nodes, None)), delimiter=";"))  # fmt: skip


def test_chirpstack_json_puts_the_appkey_in_nwk_key(batch: Batch) -> None:
    doc = json.loads(export("chirpstack", batch.inventory.nodes, batch.secrets, profiles=PROFILES))
    for item, node in zip(doc["devices"], batch.inventory.nodes, strict=True):
        assert item["device"]["devEui"] == node.dev_eui
        assert item["device"]["deviceProfileId"] == PROFILES[node.kind]
        assert item["deviceKeys"]["nwkKey"] == batch.secrets.app_keys[node.dev_eui].hex()
        assert item["deviceKeys"]["appKey"] == ""


@pytest.mark.parametrize("fmt", ["os2iot", "tts", "chirpstack"])
def test_cli_export_with_keys_is_0600_and_warns(
    fmt: str, batch: Batch, cli: Callable[..., Run], tmp_path: Path
) -> None:
    out = tmp_path / f"export.{fmt}"
    profile_args = [
        f"--os2iot-profile=bin={PROFILES['bin']}",
        f"--os2iot-profile=lamp={PROFILES['lamp']}",
    ]
    run = cli("export", "--format", fmt, "--inventory", str(batch.path), "--output", str(out),
              *profile_args)  # fmt: skip
    assert run.code == 0, run.err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "warning:" in run.err and "AppKey" in run.err
    to_stdout = cli("export", "--format", fmt, "--inventory", str(batch.path), *profile_args)
    assert to_stdout.code == 2 and "--output" in to_stdout.err
    no_keys = cli("export", "--format", fmt, "--inventory", str(batch.path), "--no-keys",
                  *profile_args)  # fmt: skip
    assert no_keys.code == 0 and batch.inventory.nodes[0].dev_eui in no_keys.out.lower()


def test_node_label_serial_defaults_to_the_name() -> None:
    node = Node(dev_eui="70b3d57ed0051a2f", kind="lamp", name="lamp-0007", serial="LAMP-0007")
    assert tr005_for(node, vendor_id="abcd").to_string().endswith(":ABCD0002:SLAMP-0007")
