"""What the gateway checks before it opens a socket: one function for ``citypack gateway run`` and
``citypack gateway check-config``, so the check cannot pass a config the service then refuses.

In order, each problem one :class:`~gateway.errors.GatewayError` line:

1. the TOML file and the ``CITYPACK_<SECTION>_<KEY>`` overrides (:func:`gateway.config.load_config`:
   types, ranges, unknown keys in the file or the environment, lamp profiles against the
   catalogue's ``lamp_profile`` fields);
2. the secret files can be read (``[api] token_file``, ``[mqtt] password_file``,
   ``[store] password_file``, and with ``[multicast] enabled`` ``[chirpstack] api_token_file``
   and ``[multicast] key_file``), and the API token file holds at least 32 characters that
   group and others cannot read;
3. the store URL through the same factory the service uses (:func:`gateway.store.create_store`):
   a backend it cannot make fails here; for SQLite, the absolute database path, which must not
   be a directory and must be creatable;
4. ``[api] listen`` resolves to an address (no bind: that is the service's first socket);
5. the MQTT TLS files load (:func:`gateway.config.check_tls`); only ``run`` (``connect=True``)
   also checks the broker's certificate, which needs a connection.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.apitoken import read_api_token
from gateway.config import Config, check_tls, load_config, read_secret
from gateway.errors import ConfigError
from gateway.multicast import read_group_secret
from gateway.store import SqliteStore, Store, create_store

__all__ = ["Checked", "preflight"]


@dataclass(frozen=True, slots=True)
class Checked:
    """A config that passed :func:`preflight`, with what the service needs to start."""

    config: Config
    api_token: str | None  # never printed
    store: Store  # made, not opened
    store_location: str  # absolute SQLite path, or the URL without its password


def preflight(
    path: str | Path, *, environ: Mapping[str, str] | None = None, connect: bool = False
) -> Checked:
    """Validate the config at ``path`` as far as possible without opening a socket (and, with
    ``connect``, the broker's TLS certificate). Raises :class:`~gateway.errors.GatewayError`."""
    cfg = load_config(path, environ=environ)
    # >= 32 characters, not readable by group or others (gateway/apitoken.py, issue 14)
    token = read_api_token(cfg.api.token_file) if cfg.api.token_file else None
    if cfg.mqtt.password_file:
        read_secret(cfg.mqtt.password_file)  # the bridge reads it at connect: fail now instead
    if cfg.multicast.enabled:  # gateway/multicast.py reads both when the service starts
        if not (cfg.os2iot.url and cfg.os2iot.downlinks):  # else OS2iot's API key is used
            read_secret(cfg.chirpstack.api_token_file)
        read_group_secret(cfg.multicast.key_file)
    if cfg.store.password_file:
        read_secret(cfg.store.password_file)  # the PostgreSQL store reads it at open
    store = create_store(
        cfg.store.url, synchronous=cfg.store.synchronous, password_file=cfg.store.password_file
    )
    location = _store_location(store, cfg.store.url)
    if cfg.api.enabled:
        _check_listen(cfg.api.listen)
    check_tls(cfg.mqtt, connect=connect)
    return Checked(cfg, token, store, location)


def _store_location(store: Store, url: str) -> str:
    if not isinstance(store, SqliteStore):
        from gateway.store.postgres import redacted_url

        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        # never the password: not the user part, not a libpq ?password= parameter
        return redacted_url(parts._replace(netloc=netloc).geturl())
    if store.path == ":memory:":
        return ":memory:"
    db = Path(os.path.abspath(store.path))
    if db.is_dir():
        raise ConfigError(f"store.url: {db} is a directory, not a database file", key="store.url")
    if db.exists():
        if not os.access(db, os.R_OK | os.W_OK):
            raise ConfigError(f"store.url: {db} is not readable and writable", key="store.url")
        return str(db)
    # SqliteStore.open creates the missing directories: the nearest existing one must allow it
    ancestor = db.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"store.url: cannot create {db} (in {ancestor})", key="store.url")
    return str(db)


def _check_listen(listen: str) -> None:
    host, _, port = listen.rpartition(":")
    try:
        socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"api.listen: cannot resolve {host!r}: {getattr(exc, 'strerror', None) or exc}",
            key="api.listen",
        ) from None
