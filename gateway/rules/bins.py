"""Bin rules: full at a per-bin threshold, fire, tilt, pickup, fill rate and forecast, collection.

Messages and fields: docs/interfaces.md (``bin_status``, ``bin_alarm``, ``bin_config``). The
per-bin threshold is the ``full_threshold_percent`` of the bin's desired ``bin_config`` (the one
the gateway pushed), else ``[bins] full_threshold_percent``. Events fire on transitions only
(``bin_full`` once per filling, ``bin_fire`` once per fire), so a bin reporting every 15 min does
not flood the event stream.

Fill rate: from the last ``forecast_samples`` (time, fill) points since the last pickup, in
percent per hour: their rise over the span when they cover a whole day (the daily rhythm of use
then cancels out), else their least-squares slope (:func:`fill_rate_per_h`); the forecast is when
the line reaches the threshold. The time of a point (``now`` in these functions) is the
uplink's ChirpStack ``time`` (the service falls back to its receive time only when the event has
none), so a backlog delivered in a burst keeps the hours between its readings.

The rules are pure (gateway/rules/__init__.py): they read ``device.derived`` and write the new
rule state into the returned outcome's ``twin.derived``.

Tilt: a ``bin_alarm`` ``tilt`` carries the degrees from upright; the bin counts as tilted (and
``bin_tilt`` fires) when they reach ``[bins] tilt_threshold_deg``. A ``bin_status`` carries only
the node's own flag, which is taken as it is.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.config import BinsConfig
from gateway.csvsafe import safe_cell
from gateway.rules import Outcome
from gateway.rules import fill_history as history
from gateway.store.base import Device

__all__ = [
    "apply_bin_alarm",
    "apply_bin_status",
    "collection_csv",
    "collection_feature",
    "collection_geojson",
    "collection_list",
    "collection_rows",
    "fill_rate_per_h",
    "order_collection",
    "threshold_for",
]


def threshold_for(device: Device, cfg: BinsConfig) -> float:
    desired = device.desired.get("bin_config", {})
    value = desired.get("full_threshold_percent")
    return float(value) if isinstance(value, int | float) else cfg.full_threshold_percent


_DAY_S = 86_400.0


def fill_rate_per_h(samples: list[list[float]]) -> float | None:
    """Fill rate (percent per hour) of ``[[t_s, fill], ...]``; None with < 2 points.

    Samples spanning a whole day or more: the rise from the first to the last point over that
    span. Waste comes by day and not at night, and a straight line fitted through a day of
    such points is steeper than the day's rise (the flat night at both ends pulls it: about
    +10 % for a bin filled evenly 07:00-23:00), which overstates the rate and empties bins
    early; the rise over a whole day has no such bias. Shorter spans: the least-squares slope,
    which is steadier against sensor noise over a few points."""
    n = len(samples)
    if n < 2:
        return None
    span = samples[-1][0] - samples[0][0]
    if span >= _DAY_S:
        return (samples[-1][1] - samples[0][1]) / span * 3600.0
    st = sf = stt = stf = 0.0
    t0 = samples[0][0]  # centred: epoch seconds squared would lose every digit that matters
    for t_abs, f in samples:
        t = t_abs - t0
        st += t
        sf += f
        stt += t * t
        stf += t * f
    var = stt - st * st / n
    if var <= 0:
        return None
    return (stf - st * sf / n) / var * 3600.0


def _pickup(out: Outcome, now: float, fill: Any, drop: float) -> None:
    derived = out.twin.derived
    derived["_samples"] = history.pack([[round(now), fill]])
    derived["full"] = False
    derived["last_pickup_at"] = now
    out.event("bin_pickup", fill_before=fill + drop, fill_percent=fill, drop_percent=drop)


def apply_bin_status(
    device: Device, fields: dict[str, Any], cfg: BinsConfig, now: float
) -> Outcome:
    out = Outcome()
    derived = out.twin.derived  # written here; read through out.derived(device, key)
    fill = fields.get("fill_percent", 0)
    previous = device.derived.get("fill_percent")
    samples = history.points(device.derived.get("_samples"))
    drop = (previous - fill) if isinstance(previous, int | float) else 0.0
    # pickup_count counts the pickups the node saw since its previous bin_status (catalogue),
    # so any positive value is a pickup; it is not a lifetime counter to compare.
    pickups = fields.get("pickup_count")
    node_pickup = isinstance(pickups, int) and pickups > 0
    if drop >= cfg.pickup_drop_percent or (node_pickup and drop > 0):
        _pickup(out, now, fill, drop)
        samples = [[round(now), fill]]
    else:
        samples.append([round(now), fill])  # whole seconds: smaller twin, same forecast
        samples = samples[-cfg.forecast_samples :]
    derived["_samples"] = history.pack(samples)  # compact: gateway/rules/fill_history.py
    derived["fill_percent"] = fill
    if isinstance(pickups, int):
        derived["pickup_count"] = pickups
    threshold = threshold_for(device, cfg)
    derived["full_threshold_percent"] = threshold
    rate = fill_rate_per_h(samples)
    derived["fill_rate_percent_per_h"] = None if rate is None else round(rate, 3)
    if fill >= threshold:
        derived["forecast_full_at"] = now
    elif rate is not None and rate > 0:
        derived["forecast_full_at"] = round(now + (threshold - fill) / rate * 3600.0)
    else:
        derived["forecast_full_at"] = None
    if fill >= threshold and not out.derived(device, "full"):  # False after a pickup above
        derived["full"] = True
        out.event("bin_full", fill_percent=fill, threshold_percent=threshold)
    elif fill < threshold:
        derived["full"] = False
    temperature = fields.get("temperature_c")
    fire = bool(fields.get("fire")) or (
        isinstance(temperature, int | float) and temperature >= cfg.fire_threshold_c
    )
    if fire and not device.derived.get("fire"):
        out.event("bin_fire", temperature_c=temperature, source="status")
    derived["fire"] = fire
    tilt = bool(fields.get("tilt"))
    if tilt and not device.derived.get("tilt"):
        out.event("bin_tilt", source="status")
    derived["tilt"] = tilt
    fault = bool(fields.get("sensor_fault"))
    if fault and not device.derived.get("sensor_fault"):
        out.event("bin_sensor_fault")
    derived["sensor_fault"] = fault
    return out


def apply_bin_alarm(device: Device, fields: dict[str, Any], cfg: BinsConfig, now: float) -> Outcome:
    out = Outcome()
    derived = out.twin.derived
    alarm = fields.get("alarm")
    value = fields.get("value")
    fill = float(fields.get("fill_percent", 0))
    if alarm == "fire":
        if not device.derived.get("fire"):  # once per fire, as from bin_status
            out.event("bin_fire", temperature_c=value, source="alarm")
        derived["fire"] = True
    elif alarm == "tilt":
        tilted = isinstance(value, int | float) and value >= cfg.tilt_threshold_deg
        if tilted and not device.derived.get("tilt"):
            out.event("bin_tilt", tilt_deg=value, source="alarm")
        derived["tilt"] = tilted
    elif alarm == "pickup":
        drop = float(value) if isinstance(value, int | float) else 0.0
        _pickup(out, now, fill, drop)
        derived["fill_percent"] = fill
    elif alarm == "sensor_fault":
        derived["sensor_fault"] = True
        out.event("bin_sensor_fault")
    return out


def collection_list(
    devices: Iterable[Device], cfg: BinsConfig, now: float, *, horizon_h: float | None = None
) -> list[dict[str, Any]]:
    """The bins to empty: full now, or forecast full within the horizon (default from config)."""
    rows = collection_rows(devices, cfg, now, horizon_h=horizon_h)
    order_collection(rows)
    return rows


def order_collection(rows: list[dict[str, Any]]) -> None:
    """:func:`collection_list`'s order, in place: full ones first, then by fill, then devEUI."""
    rows.sort(key=lambda r: (r["reason"] != "full", -float(r["fill_percent"]), r["dev_eui"]))


def collection_rows(
    devices: Iterable[Device], cfg: BinsConfig, now: float, *, horizon_h: float | None = None
) -> list[dict[str, Any]]:
    """:func:`collection_list`'s rows, unordered (the API takes the fleet a chunk at a time,
    gateway/api/bins.py, and orders them once)."""
    horizon = now + 3600.0 * (cfg.collection_horizon_h if horizon_h is None else horizon_h)
    rows: list[dict[str, Any]] = []
    for device in devices:
        if device.kind != "bin":
            continue
        derived = device.derived
        fill = derived.get("fill_percent")
        if not isinstance(fill, int | float):
            continue
        threshold = threshold_for(device, cfg)
        forecast = derived.get("forecast_full_at")
        if fill >= threshold:
            reason = "full"
        elif isinstance(forecast, int | float) and forecast <= horizon:
            reason = "forecast"
        else:
            continue
        rows.append(
            {
                "dev_eui": device.dev_eui,
                "name": device.name,
                "street": device.street,
                "group": device.group,
                "latitude": device.latitude,
                "longitude": device.longitude,
                "fill_percent": fill,
                "threshold_percent": threshold,
                "forecast_full_at": forecast,
                "fire": bool(derived.get("fire")),
                "tilt": bool(derived.get("tilt")),
                "reason": reason,
            }
        )
    return rows


_CSV_COLUMNS = (
    "dev_eui",
    "name",
    "street",
    "group",
    "latitude",
    "longitude",
    "fill_percent",
    "threshold_percent",
    "forecast_full_at",
    "fire",
    "tilt",
    "reason",
)


def _iso(at: float | None) -> str | None:
    """ISO 8601 / RFC 3339 in UTC with seconds (``2026-03-02T10:15:42Z``), for files people open
    in a spreadsheet or a GIS (an epoch float means nothing there)."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"  # not Python's True/False
    return safe_cell(value)  # "" for None; formula-like text escaped (gateway/csvsafe.py)


def collection_csv(rows: Sequence[dict[str, Any]], *, header: bool = True) -> str:
    """RFC 4180 CSV: times in ISO 8601 UTC, booleans as ``true``/``false``, empty for none.
    ``header=False``: the rows alone, to follow a piece that had the header (the API streams
    the file a chunk of rows at a time, gateway/api/bins.py)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        row = {**row, "forecast_full_at": _iso(row["forecast_full_at"])}
        writer.writerow({k: _cell(row[k]) for k in _CSV_COLUMNS})
    return buffer.getvalue()


def collection_feature(row: dict[str, Any]) -> dict[str, Any]:
    """One bin of :func:`collection_geojson`: an RFC 7946 Feature, ``geometry: null`` without
    a position (§3.2), ``forecast_full_at`` in ISO 8601 UTC."""
    lat, lon = row["latitude"], row["longitude"]
    located = lat is not None and lon is not None
    geometry = {"type": "Point", "coordinates": [lon, lat]} if located else None
    properties = {k: v for k, v in row.items() if k not in ("latitude", "longitude")}
    properties["forecast_full_at"] = _iso(row["forecast_full_at"])  # RFC 7946 has no time
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def collection_geojson(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """RFC 7946 FeatureCollection of :func:`collection_feature` per bin."""
    return {"type": "FeatureCollection", "features": [collection_feature(r) for r in rows]}


def dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))
