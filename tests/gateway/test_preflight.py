"""gateway.preflight: what `check-config` and `run` both refuse before the first socket."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import GatewayError, StoreError
from gateway.preflight import preflight
from gateway.store import SqliteStore, create_store


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n' + body)
    return path


def _token(tmp_path: Path) -> Path:
    token = tmp_path / "token"
    token.write_text("not-a-real-token-but-32-characters-long\n")
    token.chmod(0o600)  # gateway/apitoken.py: >= 32 characters, private
    return token


def _refused(path: Path, words: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(GatewayError) as info:
        preflight(path, environ={} if environ is None else environ)
    message = str(info.value)
    assert words in message and "\n" not in message
    return message


def test_a_good_config_gives_token_store_and_absolute_path(tmp_path: Path) -> None:
    db = tmp_path / "data" / "gateway.db"
    path = _write(
        tmp_path,
        f'[store]\nurl = "sqlite:///{db}"\n[api]\ntoken_file = "{_token(tmp_path)}"\n',
    )
    checked = preflight(path, environ={})
    assert checked.api_token == "not-a-real-token-but-32-characters-long"
    assert isinstance(checked.store, SqliteStore) and checked.store_location == str(db)
    assert not db.exists()  # checked, not created: nothing opened


def test_sqlite_urls_follow_sqlalchemy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = _write(tmp_path, '[store]\nurl = "sqlite:///var/lib/citypack/gateway.db"\n')
    checked = preflight(relative, environ={})
    assert checked.store_location == str(tmp_path / "var/lib/citypack/gateway.db")
    absolute_url = "sqlite:////" + str(tmp_path / "abs.db").lstrip("/")  # four slashes
    absolute = _write(tmp_path, f'[store]\nurl = "{absolute_url}"\n')
    assert preflight(absolute, environ={}).store_location == str(tmp_path / "abs.db")


def test_token_file_missing_or_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "no-token"
    _refused(_write(tmp_path, f'[api]\ntoken_file = "{missing}"\n'), "cannot read secret file")
    empty = tmp_path / "empty-token"
    empty.write_text("")
    _refused(_write(tmp_path, f'[api]\ntoken_file = "{empty}"\n'), "cannot read secret file")
    _refused(_write(tmp_path, f'[api]\ntoken_file = "{tmp_path}"\n'), "cannot read secret file")
    if os.geteuid() != 0:  # root reads a mode 000 file
        locked = _token(tmp_path)
        locked.chmod(0)
        _refused(_write(tmp_path, f'[api]\ntoken_file = "{locked}"\n'), "cannot read secret")


def test_database_path_that_is_a_directory_or_cannot_be_made(tmp_path: Path) -> None:
    _refused(_write(tmp_path, f'[store]\nurl = "sqlite:///{tmp_path}"\n'), "is a directory")
    blocker = tmp_path / "file"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/sub/g.db"
    _refused(_write(tmp_path, f'[store]\nurl = "{url}"\n'), "cannot create")


def test_store_url_goes_through_the_service_factory(tmp_path: Path) -> None:
    url = "postgresql://citypack:pw-not-shown@127.0.0.1:5432/citypack"
    path = _write(tmp_path, f'[store]\nurl = "{url}"\n')
    try:
        create_store(url)
    except StoreError as exc:  # no backend yet: refused with the factory's own words
        assert _refused(path, "store.url") == str(exc)
    else:  # the backend exists: accepted, and the password is never shown
        checked = preflight(path, environ={})
        assert "pw-not-shown" not in checked.store_location
        assert checked.store_location == "postgresql://citypack@127.0.0.1:5432/citypack"


def test_unresolvable_listen(tmp_path: Path) -> None:
    # RFC 6761 §6.4: .invalid names never resolve
    path = _write(tmp_path, '[api]\nlisten = "gateway.invalid:8080"\n')
    _refused(path, "api.listen")
    off = _write(tmp_path, '[api]\nenabled = false\nlisten = "gateway.invalid:8080"\n')
    preflight(off, environ={})  # no API: nothing to bind


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"base_level": 500}, "base_level"),
        ({"steps": [{"anchor": "moon", "offset_min": 0, "dim_level": 80}]}, "anchor"),
        ({"colour": "warm"}, "colour"),
        ({"config_version": "one"}, "config_version"),
    ],
)
def test_lamp_profiles_against_the_catalogue(
    tmp_path: Path, change: dict[str, Any], words: str
) -> None:
    profile: dict[str, Any] = {
        "config_version": 1,
        "base_level": 20,
        "boost_level": 100,
        "hold_time_s": 60,
        "steps": [{"anchor": "sunset", "offset_min": 0, "dim_level": 80}],
        **change,
    }
    environ = {"CITYPACK_LAMPS_PROFILES": json.dumps({"night": profile})}
    message = _refused(_write(tmp_path, ""), words, environ)
    assert message.startswith("lamps.profiles.night:")


def test_environment_typo_refused_like_the_file_typo(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    message = _refused(path, "CITYPACK_MQTT_URLL", {"CITYPACK_MQTT_URLL": "mqtt://x:1883"})
    assert "mqtt.urll" in message and "unknown key" in message
    typo = tmp_path / "typo.toml"
    typo.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nurll = "mqtt://x"\n')
    _refused(typo, "unknown key")
    # names of other tools are not gateway overrides
    preflight(path, environ={"CITYPACK_DEBUG": "1", "CITYPACK_FAKE_NVS": "x"})
