"""Inventory and secrets files: parsing refuses bad input naming line/entry and field; 0600 keys."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.provision.conftest import Batch, Run
from tools.provision import inventory
from tools.provision.errors import InventoryError, ProvisionError
from tools.provision.inventory import (
    FIELDS,
    Inventory,
    Secrets,
    add_nodes,
    load_inventory,
    load_secrets,
    mac_to_eui64,
    parse_csv,
    parse_esptool_mac,
    parse_toml,
    random_dev_eui,
    render_csv,
    render_toml,
    save_secrets,
)

GOOD_TOML = """
[[device]]
dev_eui = "70B3D57ED0051A2F"
kind = "bin"
name = "bin-0001"
latitude = 56.15
longitude = 10.21
street = "Vestergade"
serial = "BIN-0001"

[[device]]
dev_eui = "70-b3-d5-7e-d0-05-1a-30"
kind = "lamp"
name = "lamp-0001"
board = "ttgo-lora32"
region = "US915"
"""


def test_toml_round_trip_and_normalisation() -> None:
    nodes = parse_toml(GOOD_TOML, "b.toml")
    assert [n.dev_eui for n in nodes] == ["70b3d57ed0051a2f", "70b3d57ed0051a30"]
    assert nodes[0].join_eui == "0000000000000000" and nodes[0].board == "heltec-v3"
    assert nodes[1].region == "US915" and nodes[1].latitude is None
    assert parse_toml(render_toml(nodes), "again.toml") == nodes
    assert parse_csv(render_csv(nodes), "again.csv") == nodes


def test_csv_header_is_the_inventory_fields() -> None:
    nodes = parse_toml(GOOD_TOML, "b.toml")
    assert render_csv(nodes).splitlines()[0] == ",".join(FIELDS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "dev_eui,kind,name\n70b3d57ed0051a2f,bin,bin-1\n70b3d57ed0051a2,bin,bin-2\n",
            "b.csv line 3, field dev_eui: expected 16 hex digits",
        ),
        ("dev_eui,kind,name\n70b3d57ed0051a2f,boat,b\n", "b.csv line 2, field kind: expected one"),
        ("dev_eui,kind,colour\n", "b.csv line 1, field colour: unknown column"),
        ("dev_eui,kind\n", "b.csv line 1, field name: missing column"),
        (
            "dev_eui,kind,name,latitude,longitude\n70b3d57ed0051a2f,bin,b,91,10\n",
            "b.csv line 2, field latitude: expected a number from -90 to 90",
        ),
        (
            "dev_eui,kind,name,latitude\n70b3d57ed0051a2f,bin,b,56.1\n",
            "b.csv line 2, field longitude: latitude and longitude go together",
        ),
        ("dev_eui,kind,name\n70b3d57ed0051a2f,bin,b,extra\n", "b.csv line 2: 4 cells for 3"),
        (
            "dev_eui,kind,name\n70b3d57ed0051a2f,bin,a\n70B3D57ED0051A2F,lamp,b\n",
            "b.csv line 3, field dev_eui: duplicate '70b3d57ed0051a2f' (first in b.csv line 2)",
        ),
        ("dev_eui,kind,name\n70b3d57ed0051a2f,bin,bad name\n", "b.csv line 2, field name"),
        ("dev_eui,kind,name,serial\n70b3d57ed0051a2f,bin,b,SN 1\n", "line 2, field serial"),
        (
            "dev_eui,kind,name,serial\n70b3d57ed0051a2f,bin,b,A:B\n",
            "b.csv line 2, field serial: expected printable ASCII without spaces or ':'",
        ),
    ],
)
def test_csv_errors_name_line_and_field(text: str, message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_csv(text, "b.csv")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[device]]\ndev_eui = "70b3d57ed0051a2f"\nkind = "bin"\n',
            "entry 1, field name: missing",
        ),
        (
            GOOD_TOML + '\n[[device]]\ndev_eui = "x"\nkind = "bin"\nname = "bin-9"\n',
            "b.toml entry 3 (bin-9), field dev_eui: expected 16 hex digits",
        ),
        (
            '[[device]]\ndev_eui = "70b3d57ed0051a2f"\nkind = "bin"\nname = "b"\nlatitude = "n"\n'
            "longitude = 1.0\n",
            "entry 1 (b), field latitude",
        ),
        ('[[device]]\ndev_eui = "70b3d57ed0051a2f"\nkind = "bin"\nname = 5\n', "field name"),
        ("[[nodes]]\n", "field nodes: unknown table"),
        ('[[device]]\ndev_eui = "70b3d57ed0051a2f"\nkind = ', "not valid TOML"),
        (
            '[[device]]\ndev_eui = "70b3d57ed0051a2f"\nkind = "bin"\nname = "b"\napp_key = "00"\n',
            "field app_key: unknown field",
        ),
    ],
)
def test_toml_errors_name_entry_and_field(text: str, message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_toml(text, "b.toml")
    assert message in str(caught.value)


def test_secrets_file_is_created_0600_and_loose_modes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.secrets.toml"
    old_umask = os.umask(0)  # even with a permissive umask the file is private
    try:
        save_secrets(Secrets(path, {"70b3d57ed0051a2f": bytes(range(16))}))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secrets(path).app_keys == {"70b3d57ed0051a2f": bytes(range(16))}
    path.chmod(0o644)
    with pytest.raises(InventoryError, match=r"has mode 0644.*chmod 600"):
        load_secrets(path)
    with pytest.raises(InventoryError, match="has mode 0644"):
        save_secrets(Secrets(path, {}))  # never writes more keys into a readable file
    assert load_secrets(path, fix_permissions=True).app_keys
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_bad_key_error_does_not_echo_the_value(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    secret_ish = "ab" * 15 + "zz"
    path.write_text(f'70b3d57ed0051a2f = "{secret_ish}"\n')
    path.chmod(0o600)
    with pytest.raises(InventoryError) as caught:
        load_secrets(path)
    assert "field app_key: expected 32 hex digits" in str(caught.value)
    assert secret_ish not in str(caught.value) and "abab" not in str(caught.value)
    assert "keys" in repr(Secrets(path, {"70b3d57ed0051a2f": b"\x11" * 16}))
    assert "1111" not in repr(Secrets(path, {"70b3d57ed0051a2f": b"\x11" * 16}))


def test_add_nodes_keys_names_and_uniqueness(tmp_path: Path) -> None:
    inv = Inventory(tmp_path / "b.toml", [])
    secrets = Secrets(tmp_path / "b.secrets.toml")
    first = add_nodes(inv, secrets, kind="lamp", count=3, street="Åboulevarden")
    second = add_nodes(inv, secrets, kind="lamp", count=2)
    assert [n.name for n in first + second] == [f"lamp-{i:04d}" for i in range(1, 6)]
    assert len({n.dev_eui for n in inv.nodes}) == 5
    keys = [secrets.app_keys[n.dev_eui] for n in inv.nodes]
    assert all(len(k) == 16 for k in keys) and len(set(keys)) == 5
    with pytest.raises(InventoryError, match="already in"):
        add_nodes(inv, secrets, kind="bin", count=1, dev_euis=[inv.nodes[0].dev_eui])


def test_random_dev_eui_is_locally_administered_unicast() -> None:
    for _ in range(200):
        first = int(random_dev_eui()[:2], 16)
        assert first & 0x02 == 0x02 and first & 0x01 == 0


def test_esptool_output_to_dev_eui() -> None:
    # esptool v5 read-mac on an ESP32-S3 (label padded to 20 columns, esptool/cmds.py)
    v5 = (
        "esptool v5.1.0\nConnected to ESP32-S3 on /dev/ttyUSB0:\n"
        "MAC:                dc:54:75:c1:2e:f0\n"
    )
    assert parse_esptool_mac(v5) == "dc5475fffec12ef0"
    v4 = "Chip is ESP32-D0WD-V3 (revision v3.0)\nMAC: 24:0a:c4:12:34:56\nUploading stub...\n"
    assert parse_esptool_mac(v4) == "240ac4fffe123456"
    c6 = (
        "MAC:                40:4c:ca:ff:fe:5a:1b:2c\nBASE MAC:           40:4c:ca:5a:1b:2c\n"
        "MAC_EXT:            ff:fe\n"
    )
    assert parse_esptool_mac(c6) == "404ccafffe5a1b2c"
    with pytest.raises(ProvisionError, match="no 'MAC:' line"):
        parse_esptool_mac("A fatal error occurred: Failed to connect to ESP32")
    assert mac_to_eui64(bytes.fromhex("001122334455")) == "001122fffe334455"
    assert inventory.esptool_read_mac_command("/dev/ttyUSB0")[-3:] == [
        "--port",
        "/dev/ttyUSB0",
        "read-mac",
    ]


def test_cli_new_writes_inventory_and_private_secrets(
    tmp_path: Path, cli: Callable[..., Run]
) -> None:
    path = tmp_path / "north.toml"
    run = cli(
        "new", "--kind", "bin", "--inventory", str(path), "--count", "3",
        "--street", "Nørregade", "--latitude", "56.16", "--longitude", "10.2",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert "3 new bin node(s)" in run.out
    nodes = load_inventory(path).nodes
    assert [n.street for n in nodes] == ["Nørregade"] * 3
    secrets_path = tmp_path / "north.secrets.toml"
    assert stat.S_IMODE(secrets_path.stat().st_mode) == 0o600
    keys = load_secrets(secrets_path).app_keys
    assert set(keys) == {n.dev_eui for n in nodes}
    for key in keys.values():
        assert key.hex() not in path.read_text().lower()
        assert key.hex() not in run.out.lower()
    shown = cli("new", "--kind", "lamp", "--inventory", str(path), "--show-keys")
    new_lamp = load_inventory(path).nodes[-1]
    assert load_secrets(secrets_path).app_keys[new_lamp.dev_eui].hex() in shown.out


def test_cli_new_refuses_bad_arguments(tmp_path: Path, cli: Callable[..., Run]) -> None:
    path = tmp_path / "b.toml"
    run = cli(
        "new", "--kind", "bin", "--inventory", str(path), "--latitude", "95", "--longitude", "1"
    )
    assert run.code == 2 and "field latitude" in run.err
    run = cli("new", "--kind", "bin", "--inventory", str(tmp_path / "b.txt"))
    assert run.code == 2 and "must end in .toml or .csv" in run.err
    run = cli("new", "--kind", "bin", "--inventory", str(path), "--count", "2", "--serial", "X")
    assert run.code == 2 and "--serial names one node" in run.err
    assert not path.exists()


def test_csv_inventory_works_end_to_end(tmp_path: Path, cli: Callable[..., Run]) -> None:
    path = tmp_path / "b.csv"
    assert cli("new", "--kind", "lamp", "--inventory", str(path), "--count", "2").code == 0
    assert path.read_text().splitlines()[0] == ",".join(FIELDS)
    assert len(load_inventory(path).nodes) == 2


def test_batch_fixture_files(batch: Batch) -> None:
    assert len(load_inventory(batch.path).nodes) == 4
    assert stat.S_IMODE(batch.secrets.path.stat().st_mode) == 0o600


def test_cli_new_with_a_missing_board_fails_cleanly(
    tmp_path: Path, cli: Callable[..., Run]
) -> None:
    """The real esptool on a port with nothing behind it: one line, exit 1, nothing written."""
    path = tmp_path / "b.toml"
    run = cli("new", "--kind", "bin", "--inventory", str(path), "--port", str(tmp_path / "ttyNONE"))
    assert run.code == 1
    assert run.err.startswith("citypack: error: esptool read-mac on ")
    assert run.err.count("\n") == 1 and "Traceback" not in run.err
    assert not path.exists() and not (tmp_path / "b.secrets.toml").exists()
    many = cli("new", "--kind", "bin", "--inventory", str(path), "--port", "/dev/x", "--count", "2")
    assert many.code == 2 and "--port reads one attached board" in many.err
