"""Gateway configuration: one TOML file, every key defaulted except ``[mqtt] url``.

Source: ARCHITECTURE.md "Gateway config" (sections, keys, ``CITYPACK_<SECTION>_<KEY>`` overrides).
Unknown sections or keys and values of the wrong type are refused with a :class:`ConfigError`
whose message names ``section.key``, so ``citypack gateway check-config`` prints one useful line.

Environment overrides are applied after the file: ``CITYPACK_MQTT_URL=mqtt://broker:1883``,
``CITYPACK_STORE_RETENTION_DAYS=30``; booleans accept ``true/false/1/0/yes/no/on/off``; table
values (``[lamps] profiles``) are JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import ssl
import tomllib
import types
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ConfigError

__all__ = [
    "ApiConfig",
    "AvailabilityConfig",
    "BinsConfig",
    "ChirpstackConfig",
    "CommandsConfig",
    "Config",
    "FleetConfig",
    "FuotaConfig",
    "LampsConfig",
    "MqttConfig",
    "MulticastConfig",
    "Os2iotConfig",
    "PublishConfig",
    "RoutesConfig",
    "StoreConfig",
    "WebConfig",
    "check_tls",
    "load_config",
    "parse_config",
]

_REQUIRED = "<required>"


@dataclass(frozen=True, slots=True)
class MqttConfig:
    url: str = _REQUIRED  # mqtt://host:1883 or mqtts://host:8883
    client_id: str = "citypack-gateway"  # fixed: the broker keeps our session under this id
    application_id: str = ""  # ChirpStack application UUID; "" = every application (+)
    marshaler: str = "json"  # ChirpStack [integration.mqtt] json=true|false
    qos: int = 1
    username: str = ""
    password_file: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    shared_group: str = ""  # MQTT v5 shared subscription $share/<group>/... for scale-out
    queue_size: int = 10_000  # events waiting to be published (gateway/outbox.py); at qos 0 also
    # the inbound queue. Overflow is logged and counted
    max_event_bytes: int = 65_536  # larger payloads are dead-lettered (truncated raw kept)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = "sqlite:///citypack-gateway.db"
    batch_max: int = 500  # commit after this many messages ...
    batch_interval_s: float = 0.01  # ... or this long after the first uncommitted one
    retention_days: float = 90.0  # uplink history, events and dead letters older than this go
    synchronous: str = "normal"  # sqlite PRAGMA synchronous: normal | full
    password_file: str = ""  # postgresql: the password (else libpq's PGPASSWORD or ~/.pgpass)


@dataclass(frozen=True, slots=True)
class ApiConfig:
    enabled: bool = True
    listen: str = "127.0.0.1:8080"
    token_file: str = ""  # empty: every /api/v1 request gets 401
    max_body_bytes: int = 1_048_576  # larger request bodies get 413, unread (gateway/guard.py)
    max_connections: int = 1024  # open HTTP connections (gateway/httpserver.py)
    header_timeout_s: float = 10.0  # a connection must send its request head within this
    idle_timeout_s: float = 5.0  # keep-alive: closed after this long without a request


@dataclass(frozen=True, slots=True)
class PublishConfig:
    base_topic: str = "citypack"
    homeassistant: bool = False
    discovery_prefix: str = "homeassistant"
    accept_set: bool = False  # subscribe to devices/+/set (commands from MQTT): guard it by ACL


@dataclass(frozen=True, slots=True)
class BinsConfig:
    full_threshold_percent: float = 80.0  # default; a bin's own bin_config overrides it
    fire_threshold_c: float = 70.0
    tilt_threshold_deg: float = 45.0
    pickup_drop_percent: float = 30.0
    forecast_samples: int = 12
    collection_horizon_h: float = 24.0


@dataclass(frozen=True, slots=True)
class LampsConfig:
    presence_dim_level: int = 100
    presence_duration_s: int = 60
    presence_fade_s: int = 2
    min_power_w: float = 3.0  # lit (dim_level > 0) but drawing less than this: lamp failure
    day_start_hour_utc: int = 10  # a lamp drawing power between these hours burns by day
    day_end_hour_utc: int = 14
    profiles: dict[str, Any] = field(default_factory=dict)  # group name (or "default") -> profile


@dataclass(frozen=True, slots=True)
class AvailabilityConfig:
    factor: float = 2.5
    check_interval_s: float = 30.0
    bin_interval_s: float = 3600.0
    lamp_interval_s: float = 900.0
    default_interval_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class CommandsConfig:
    timeout_s: float = 86_400.0  # class A waits for the next uplink: allow a day
    confirmed: bool = True
    region: str = "EU868"  # for the payload size limit per data rate
    mac_headroom_bytes: int = 0  # room kept for MAC commands ChirpStack piggybacks in FOpts
    # the receive windows the network server sets (ChirpStack [regions.network] rx2_dr,
    # rx1_dr_offset; RXParamSetupReq, L2 1.0.4 §5.4): class C hears RX2, class A RX1
    rx2_dr: int = -1  # -1: the region's default (EU868 DR0, US915 DR8)
    rx1_dr_offset: int = 0
    check_interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Devices heard on the air before they were registered (issue 14)."""

    auto_register: bool = True  # keep an unknown devEui as kind "unknown" (registered: false)
    max_auto_registered: int = 1000  # past it, unknown devices' uplinks are dead letters


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The operator's dashboard at ``/`` (gateway/web)."""

    enabled: bool = True
    tile_url: str = ""  # e.g. https://tile.example.org/{z}/{x}/{y}.png; "" = no base map (offline)
    tile_attribution: str = ""  # shown under the map when tile_url is set
    stream_keepalive_s: float = 15.0  # comment line on /api/v1/stream when nothing happens
    timezone: str = "UTC"  # IANA zone the page shows times in (24-hour, ISO 8601 dates)
    # a simulated clock to show instead (citypack demo): the page shows sim_epoch +
    # (t - sim_wall_start) × sim_speed for a gateway time t; sim_speed 0 = off
    sim_epoch: float = 0.0
    sim_wall_start: float = 0.0
    sim_speed: float = 0.0


@dataclass(frozen=True, slots=True)
class ChirpstackConfig:
    """ChirpStack's gRPC API, optional: with it a cancelled command is also taken out of
    ChirpStack's device queue (``DeviceService.GetQueue`` / ``FlushQueue``), which MQTT cannot."""

    api: str = ""  # HOST:PORT of ChirpStack's gRPC API; "" = MQTT only
    api_token_file: str = ""  # a ChirpStack API key (tenant or admin)
    api_tls: bool = False
    api_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Os2iotConfig:
    """A city that runs OS2iot in front of ChirpStack (gateway/README.md "In an OS2iot city")."""

    url: str = ""  # OS2iot's API, e.g. https://os2iot.example.dk/api/v1; "" = no OS2iot
    api_key_file: str = ""  # the API key (sent as X-API-KEY), needed for downlinks
    ingest: str = "mqtt"  # mqtt: ChirpStack's MQTT, read-only | http_push: an OS2iot data target
    push_authorization_file: str = ""  # http_push: the Authorization value the data target sends
    downlinks: bool = True  # commands through OS2iot's API (false: command/down on MQTT)
    poll_interval_s: float = 5.0  # how often a handed-over downlink's state is read back
    retry_min_s: float = 2.0  # back-off after OS2iot's 500 "Could not send to chirpstack"
    retry_max_s: float = 300.0
    timeout_s: float = 15.0  # per API call


@dataclass(frozen=True, slots=True)
class MulticastConfig:
    """Class C multicast groups in ChirpStack from the registry's groups (gateway/multicast.py),
    through ChirpStack's gRPC API as ``[chirpstack]`` gives it (``api``, ``api_token_file``)."""

    enabled: bool = False
    # ChirpStack application of the groups; "" = mqtt.application_id; with [os2iot] downlinks
    # the OS2iot application number (the groups are then OS2iot multicasts)
    application_id: str = ""
    key_file: str = ""  # secret the groups' McKeys and McAddrs are derived from; required
    group_by: str = "group"  # registry field a multicast group is made of: group | street
    frequency_hz: int = 869_525_000  # the groups' class C frequency (EU868 RX2 by default)
    dr: int = 0  # the groups' data rate (EU868 RX2 DR0 by default)
    command_timeout_s: float = 600.0  # members not reporting applied by then are "expired"


@dataclass(frozen=True, slots=True)
class FuotaConfig:
    """FUOTA campaigns (gateway/fuota_campaign.py) over the ``[multicast]`` groups: TS003/TS004
    setup by unicast, TS005 fragments by multicast. Times are the gateway's seconds."""

    enabled: bool = False  # needs [multicast] enabled
    mc_group_id: int = 0  # McGroupID the campaign's group takes on the nodes (TS004 §4.3, 0..3)
    frag_index: int = 0  # the TS005 session index (0..3)
    frag_size: int = 0  # bytes per fragment; 0 = what the group's data rate carries (minus 3)
    redundancy_percent: int = 30  # coded fragments sent after the M uncoded ones, % of M
    extra_rounds: int = 2  # status rounds that send more coded fragments while some are missing
    block_ack_delay: int = 0  # TS005 §4.3: a status answer waits up to 2^(this+4) s
    session_timeout: int = 14  # McClassCSessionReq TimeOut: the session lasts 2^this s
    session_lead_s: float = 5.0  # the class C session starts this long after its setup
    answer_timeout_s: float = 30.0  # wait for one setup answer before asking again
    max_tries: int = 3  # setup requests per step before the device is failed
    fragment_interval_s: float = 0.0  # gap between fragment enqueues; 0 = airtime / 10 % duty
    status_wait_s: float = 60.0  # how long answers to a multicast status request are awaited
    apply_timeout_s: float = 900.0  # a complete file's new version must be reported by then
    max_bundle_bytes: int = 65536  # the node's largest file (firmware/lib/fuota/agent.py)
    public_key_file: str = ""  # the fleet's Ed25519 public key (hex); "" = not checked here


@dataclass(frozen=True, slots=True)
class RoutesConfig:
    """Collection routes (gateway/routes.py). Checked when a route is asked for, not at start:
    a depot or road graph that does not fit stops the route, never the collection list."""

    depot_latitude: float = 0.0  # where the trucks start and end (unset: the route says so)
    depot_longitude: float = 0.0
    trucks: int = 1
    capacity_bins: float = 100.0  # full bins' worth of waste one truck carries per round
    service_time_s: float = 60.0  # stop, empty one bin, drive on
    speed_kmh: float = 20.0  # average truck speed between stops in town
    detour_factor: float = 1.3  # road km per great-circle km when there is no road_graph
    road_graph: str = ""  # GeoJSON street centre lines; "" = great circle x detour_factor
    max_snap_m: float = 150.0  # a bin or the depot farther than this from any street is refused
    next_round_h: float = 24.0  # bins forecast full before the next round are collected now
    shift_s: float = 8 * 3600.0  # a truck's working time from leaving the depot to being back
    solver_timeout_s: float = 2.0  # VROOM local search budget per solve
    chunk_jobs: int = 250  # larger rounds are split by sweep sectors into solves of this size
    time_windows: dict[str, Any] = field(default_factory=dict)  # bin group -> [from_s, to_s]


@dataclass(frozen=True, slots=True)
class Config:
    mqtt: MqttConfig
    store: StoreConfig = field(default_factory=StoreConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    bins: BinsConfig = field(default_factory=BinsConfig)
    lamps: LampsConfig = field(default_factory=LampsConfig)
    availability: AvailabilityConfig = field(default_factory=AvailabilityConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    multicast: MulticastConfig = field(default_factory=MulticastConfig)
    fuota: FuotaConfig = field(default_factory=FuotaConfig)
    os2iot: Os2iotConfig = field(default_factory=Os2iotConfig)
    routes: RoutesConfig = field(default_factory=RoutesConfig)
    chirpstack: ChirpstackConfig = field(default_factory=ChirpstackConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with some keys of one section changed (tests and the demo use it)."""
        current = getattr(self, section)
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **values)})


_SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(where: str, tp: Any, value: Any, *, from_env: bool) -> Any:
    origin = typing.get_origin(tp)
    if from_env and isinstance(value, str):
        if tp is bool:
            low = value.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ConfigError(f"{where}: expected a boolean, got {value!r}", key=where)
        if tp is int:
            try:
                return int(value)
            except ValueError:
                raise ConfigError(
                    f"{where}: expected an integer, got {value!r}", key=where
                ) from None
        if tp is float:
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}", key=where) from None
        if origin is dict:
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a JSON object", key=where) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is dict:
        if isinstance(value, dict):
            return value
        tp = dict
    elif isinstance(tp, types.UnionType):  # pragma: no cover - no optional keys today
        return value
    raise ConfigError(
        f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}", key=where
    )


def _check(cfg: Config) -> None:
    m = cfg.mqtt
    if m.url == _REQUIRED or not m.url:
        raise ConfigError(
            "mqtt.url: required (mqtt://host:1883 or mqtts://host:8883)", key="mqtt.url"
        )
    parts = urlsplit(m.url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ConfigError(
            f"mqtt.url: expected mqtt://host[:port] or mqtts://host[:port], got {m.url!r}",
            key="mqtt.url",
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"mqtt.url: bad port in {m.url!r}", key="mqtt.url") from None
    if m.marshaler not in ("json", "protobuf"):
        raise ConfigError(
            f"mqtt.marshaler: expected 'json' or 'protobuf', got {m.marshaler!r}",
            key="mqtt.marshaler",
        )
    if m.qos not in (0, 1, 2):
        raise ConfigError(f"mqtt.qos: expected 0, 1 or 2, got {m.qos}", key="mqtt.qos")
    if not m.client_id:
        raise ConfigError("mqtt.client_id: must not be empty (the session is kept under it)")
    if "/" in m.application_id or "+" in m.application_id or "#" in m.application_id:
        raise ConfigError("mqtt.application_id: a UUID, without / + #", key="mqtt.application_id")
    if not 0 < m.reconnect_min_s <= m.reconnect_max_s:
        raise ConfigError("mqtt.reconnect_min_s: must be > 0 and <= mqtt.reconnect_max_s")
    for key in ("queue_size", "max_event_bytes", "keepalive_s"):
        if getattr(m, key) <= 0:
            raise ConfigError(f"mqtt.{key}: must be positive", key=f"mqtt.{key}")
    s = cfg.store
    if not (s.url.startswith("sqlite:///") or s.url.startswith("postgresql://")):
        from gateway.store.postgres import redacted_url

        raise ConfigError(
            f"store.url: expected sqlite:///path or postgresql://..., got {redacted_url(s.url)!r}",
            key="store.url",
        )
    if s.synchronous not in ("normal", "full"):
        raise ConfigError("store.synchronous: expected 'normal' or 'full'", key="store.synchronous")
    if s.batch_max <= 0 or s.batch_interval_s <= 0 or s.retention_days <= 0:
        raise ConfigError("store.batch_max, batch_interval_s and retention_days must be positive")
    host, _, port = cfg.api.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            f"api.listen: expected host:port, got {cfg.api.listen!r}", key="api.listen"
        )
    for key in ("max_body_bytes", "max_connections", "header_timeout_s", "idle_timeout_s"):
        if getattr(cfg.api, key) <= 0:
            raise ConfigError(f"api.{key}: must be positive", key=f"api.{key}")
    base = cfg.publish.base_topic
    if not base or any(c in base for c in "+#") or base.startswith("/") or base.endswith("/"):
        raise ConfigError(f"publish.base_topic: not a topic prefix: {base!r}")
    b = cfg.bins
    if not 0 < b.full_threshold_percent <= 100:
        raise ConfigError("bins.full_threshold_percent: expected 0 < value <= 100")
    if b.forecast_samples < 2:
        raise ConfigError("bins.forecast_samples: at least 2")
    lamps = cfg.lamps
    if not 0 <= lamps.presence_dim_level <= 100:
        raise ConfigError("lamps.presence_dim_level: expected 0..100")
    if not (0 <= lamps.day_start_hour_utc <= 23 and 0 <= lamps.day_end_hour_utc <= 24):
        raise ConfigError("lamps.day_start_hour_utc/day_end_hour_utc: hours 0..24")
    for name, profile in lamps.profiles.items():
        if not isinstance(profile, dict):
            raise ConfigError(f"lamps.profiles.{name}: expected a table", key="lamps.profiles")
        _check_lamp_profile(name, profile)
    a = cfg.availability
    if a.factor < 1:
        raise ConfigError("availability.factor: must be >= 1", key="availability.factor")
    for key in ("check_interval_s", "bin_interval_s", "lamp_interval_s", "default_interval_s"):
        if getattr(a, key) <= 0:
            raise ConfigError(f"availability.{key}: must be positive")
    c = cfg.commands
    if c.timeout_s <= 0 or c.check_interval_s <= 0:
        raise ConfigError("commands.timeout_s and check_interval_s must be positive")
    if not 0 <= c.mac_headroom_bytes <= 15:
        raise ConfigError("commands.mac_headroom_bytes: 0..15 (FOpts is at most 15 bytes)")
    if c.region.upper() not in ("EU868", "US915"):
        raise ConfigError(f"commands.region: EU868 or US915, got {c.region!r}")
    _check_windows(c)
    r = cfg.routes
    if r.detour_factor < 1 or r.speed_kmh <= 0 or r.service_time_s < 0 or r.next_round_h < 0:
        raise ConfigError(
            "routes: detour_factor >= 1, speed_kmh > 0, service_time_s >= 0, next_round_h >= 0",
            key="routes",
        )
    if r.shift_s <= 0 or r.solver_timeout_s <= 0 or r.chunk_jobs < 10 or r.max_snap_m <= 0:
        raise ConfigError(
            "routes: shift_s, solver_timeout_s and max_snap_m > 0, chunk_jobs >= 10", key="routes"
        )
    if cfg.fleet.max_auto_registered < 0:
        raise ConfigError(
            "fleet.max_auto_registered: must be >= 0", key="fleet.max_auto_registered"
        )
    w = cfg.web
    if w.tile_url and not (
        w.tile_url.startswith(("http://", "https://"))
        and all(p in w.tile_url for p in ("{z}", "{x}", "{y}"))
    ):
        raise ConfigError("web.tile_url: an http(s) URL with {z}, {x} and {y}", key="web.tile_url")
    if w.stream_keepalive_s <= 0:
        raise ConfigError("web.stream_keepalive_s: must be positive", key="web.stream_keepalive_s")
    try:
        zoneinfo.ZoneInfo(w.timezone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ConfigError(
            f"web.timezone: an IANA time zone like Europe/Copenhagen, got {w.timezone!r}",
            key="web.timezone",
        ) from None
    if w.sim_speed < 0:
        raise ConfigError("web.sim_speed: 0 (off) or positive", key="web.sim_speed")
    g = cfg.chirpstack
    if g.api:
        host, sep, port = g.api.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"chirpstack.api: HOST:PORT, got {g.api!r}", key="chirpstack.api")
        if not g.api_token_file:
            raise ConfigError(
                "chirpstack.api_token_file: required with chirpstack.api",
                key="chirpstack.api_token_file",
            )
    if g.api_timeout_s <= 0:
        raise ConfigError("chirpstack.api_timeout_s: must be positive")
    _check_os2iot(cfg.os2iot)
    _check_multicast(cfg)
    _check_fuota(cfg)


def _check_os2iot(o: Os2iotConfig) -> None:
    if o.ingest not in ("mqtt", "http_push"):
        raise ConfigError(
            f"os2iot.ingest: expected 'mqtt' or 'http_push', got {o.ingest!r}", key="os2iot.ingest"
        )
    if o.ingest == "http_push" and not o.push_authorization_file:
        raise ConfigError(
            "os2iot.push_authorization_file: required with ingest = 'http_push' (the data "
            "target's Authorization header, so nobody else can push uplinks)",
            key="os2iot.push_authorization_file",
        )
    if not o.url:
        return
    if not o.url.startswith(("http://", "https://")):
        raise ConfigError(
            f"os2iot.url: expected an http(s):// URL, got {o.url!r}", key="os2iot.url"
        )
    if o.downlinks and not o.api_key_file:
        raise ConfigError(
            "os2iot.api_key_file: required to send downlinks through OS2iot",
            key="os2iot.api_key_file",
        )
    if not (0 < o.retry_min_s <= o.retry_max_s) or o.poll_interval_s <= 0 or o.timeout_s <= 0:
        raise ConfigError(
            "os2iot.poll_interval_s, timeout_s, retry_min_s <= retry_max_s must be positive"
        )


def _check_multicast(cfg: Config) -> None:
    mc = cfg.multicast
    if not mc.enabled:
        return
    through_os2iot = bool(cfg.os2iot.url and cfg.os2iot.downlinks)  # gateway/os2iot_groups.py
    if not cfg.chirpstack.api and not through_os2iot:
        raise ConfigError(
            "multicast: needs chirpstack.api (and chirpstack.api_token_file): groups are made "
            "through ChirpStack's gRPC API",
            key="chirpstack.api",
        )
    if through_os2iot and not mc.application_id.isdigit():
        raise ConfigError(
            "multicast.application_id: with [os2iot] downlinks the groups are OS2iot multicasts "
            "of the OS2iot application with this number",
            key="multicast.application_id",
        )
    if not mc.key_file:
        raise ConfigError("multicast.key_file: required when multicast is enabled")
    if not (mc.application_id or cfg.mqtt.application_id):
        raise ConfigError(
            "multicast.application_id: required (or set mqtt.application_id)",
            key="multicast.application_id",
        )
    if mc.group_by not in ("group", "street"):
        raise ConfigError("multicast.group_by: 'group' or 'street'", key="multicast.group_by")
    if not 863_000_000 <= mc.frequency_hz <= 870_000_000 or not 0 <= mc.dr <= 5:
        raise ConfigError("multicast.frequency_hz/dr: an EU868 frequency (Hz) and DR0..DR5")
    if mc.command_timeout_s <= 0:
        raise ConfigError("multicast.command_timeout_s: must be positive")


def _check_fuota(cfg: Config) -> None:
    f = cfg.fuota
    if not f.enabled:
        return
    if not cfg.multicast.enabled:
        raise ConfigError(
            "fuota: needs [multicast] enabled (fragments go out by multicast)", key="fuota.enabled"
        )
    if not 0 <= f.mc_group_id <= 3 or not 0 <= f.frag_index <= 3:
        raise ConfigError("fuota.mc_group_id and fuota.frag_index: 0..3")
    if f.frag_size and not 1 <= f.frag_size <= 239:
        raise ConfigError("fuota.frag_size: 1..239 bytes (0 = from the data rate)")
    if not 0 <= f.block_ack_delay <= 7 or not 0 <= f.session_timeout <= 15:
        raise ConfigError("fuota.block_ack_delay: 0..7, fuota.session_timeout: 0..15")
    if f.redundancy_percent < 0 or f.extra_rounds < 0 or f.max_tries < 1:
        raise ConfigError("fuota.redundancy_percent, extra_rounds >= 0, max_tries >= 1")
    if min(f.answer_timeout_s, f.status_wait_s, f.apply_timeout_s) <= 0 or f.session_lead_s < 0:
        raise ConfigError("fuota: timeouts must be positive")
    if not 64 <= f.max_bundle_bytes <= 16383 * 239:
        raise ConfigError("fuota.max_bundle_bytes: out of range")


def _check_lamp_profile(name: str, profile: dict[str, Any]) -> None:
    """A profile the gateway pushes as a ``lamp_profile`` command must encode: the catalogue's
    fields, types and ranges decide (protocol/catalogue/lamp.py), not numbers restated here."""
    from protocol import codec
    from protocol.errors import ProtocolError

    fields = {k: v for k, v in profile.items() if k != "command_id"}
    try:
        codec.encode("lamp_profile", {**fields, "command_id": 0})
    except ProtocolError as exc:
        raise ConfigError(f"lamps.profiles.{name}: {exc}", key="lamps.profiles") from None


def _check_windows(c: CommandsConfig) -> None:
    from protocol.errors import ProtocolError
    from protocol.lorawan.region import REGIONS

    plan = REGIONS[c.region.upper()]
    if c.rx2_dr != -1:
        try:
            if not plan.data_rate(c.rx2_dr).downlink:
                raise ProtocolError("uplink only")
        except ProtocolError:
            raise ConfigError(
                f"commands.rx2_dr: {c.region} has no downlink DR{c.rx2_dr} (-1: the default)",
                key="commands.rx2_dr",
            ) from None
    offsets = max((len(row) for row in plan.rx1_dr_table), default=1)
    if not 0 <= c.rx1_dr_offset < offsets:
        raise ConfigError(
            f"commands.rx1_dr_offset: 0..{offsets - 1} in {c.region}", key="commands.rx1_dr_offset"
        )


def parse_config(
    document: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
) -> Config:
    """A :class:`Config` from a parsed TOML document plus ``CITYPACK_<SECTION>_<KEY>`` overrides."""
    environ = os.environ if environ is None else environ
    _check_environment(environ)
    for section_name, section_value in document.items():
        if section_name not in _SECTIONS:
            raise ConfigError(
                f"{section_name}: unknown section (known: {', '.join(_SECTIONS)})",
                key=section_name,
            )
        if not isinstance(section_value, dict):
            raise ConfigError(f"{section_name}: expected a [section] table", key=section_name)
    sections: dict[str, Any] = {}
    for section_name, section_type in _SECTIONS.items():
        hints = typing.get_type_hints(section_type)
        given = dict(document.get(section_name, {}))
        values: dict[str, Any] = {}
        for key, value in given.items():
            if key not in hints:
                raise ConfigError(
                    f"{section_name}.{key}: unknown key (known: {', '.join(hints)})",
                    key=f"{section_name}.{key}",
                )
            if f"CITYPACK_{section_name.upper()}_{key.upper()}" in environ:
                continue  # the environment wins, even over a value that would not parse
            values[key] = _coerce(f"{section_name}.{key}", hints[key], value, from_env=False)
        for key, tp in hints.items():
            env_name = f"CITYPACK_{section_name.upper()}_{key.upper()}"
            if env_name in environ:
                values[key] = _coerce(f"{section_name}.{key}", tp, environ[env_name], from_env=True)
        sections[section_name] = section_type(**values)
    cfg = Config(**sections)
    _check(cfg)
    return cfg


def _check_environment(environ: Mapping[str, str]) -> None:
    """``CITYPACK_<SECTION>_<KEY>`` with a known section but no such key is a typo, refused like
    an unknown key in the file (``CITYPACK_MQTT_URLL``); other ``CITYPACK_*`` names belong to
    other tools and are left alone."""
    for name in environ:
        if not name.startswith("CITYPACK_"):
            continue
        rest = name[len("CITYPACK_") :]
        for section_name, section_type in _SECTIONS.items():
            prefix = f"{section_name.upper()}_"
            if not rest.startswith(prefix):
                continue
            keys = typing.get_type_hints(section_type)
            key = rest[len(prefix) :].lower()
            if key not in keys:
                raise ConfigError(
                    f"{name}: unknown key {section_name}.{key} (known: {', '.join(keys)})",
                    key=f"{section_name}.{key}",
                )


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML config file; every problem is one :class:`ConfigError` line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(document, environ=environ)


def read_secret(path: str) -> str:
    """The first line of a secret file (token, password), stripped; never logged."""
    try:
        return Path(path).read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise ConfigError(f"cannot read secret file {path}") from exc


def check_tls(m: MqttConfig, *, timeout_s: float = 5.0, connect: bool = True) -> None:
    """Refuse a TLS setup that can never work, before the service starts (one ConfigError line).

    The CA, certificate and key files must load; and when the broker answers, its certificate
    must verify against ``tls_ca_file`` (Python's ``ssl`` default context: chain and host name).
    A broker that does not answer yet is not an error here: the service retries with back-off.
    A certificate that does not verify will not start verifying, so retrying would hide it.
    ``connect=False`` checks the files only (``check-config`` opens no socket).
    """
    parts = urlsplit(m.url)
    if not (parts.scheme in ("mqtts", "ssl") or m.tls_ca_file):
        return
    try:
        context = ssl.create_default_context(cafile=m.tls_ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"mqtt.tls_ca_file: cannot load {m.tls_ca_file!r}: {exc}", key="mqtt.tls_ca_file"
        ) from None
    if m.tls_cert_file:
        try:
            context.load_cert_chain(m.tls_cert_file, m.tls_key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"mqtt.tls_cert_file: cannot load {m.tls_cert_file!r} / tls_key_file: {exc}",
                key="mqtt.tls_cert_file",
            ) from None
    if not connect:
        return
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 8883
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            pass
    except ssl.SSLCertVerificationError as exc:
        raise ConfigError(
            f"mqtt: the broker's TLS certificate at {host}:{port} does not verify against "
            f"mqtt.tls_ca_file: {exc.verify_message or exc}",
            key="mqtt.tls_ca_file",
        ) from None
    except (OSError, ssl.SSLError):
        return  # not answering (yet), or another TLS problem the connection loop will log
