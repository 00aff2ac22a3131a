"""Availability: a node is offline after its expected report interval × a factor.

The expected interval is, in order: the device's registered ``report_interval_s``, the
``report_interval_s`` of the config the gateway pushed to it (``bin_config``/``device_config``),
the per-type default (``[availability] bin_interval_s`` / ``lamp_interval_s``), else
``default_interval_s``. The shape follows zigbee2mqtt's passive availability (zigbee2mqtt docs,
"Device availability": last-seen against a timeout, published retained as ``online``/``offline``).

Unlike the bin and lamp rules, which reason on the event's ChirpStack ``time``, ``last_seen`` is
the gateway's receive time: :func:`check` compares it with the gateway's own clock, and
ChirpStack's clock (or the simulated one of ``citypack demo``) need not agree with it.

Both functions are pure: the availability change is in the returned outcome's ``twin.attrs``
(``availability``, ``last_seen``), applied by the service (gateway/rules/__init__.py).
"""

from __future__ import annotations

from gateway.config import AvailabilityConfig
from gateway.rules import Outcome
from gateway.store.base import Device

__all__ = ["check", "expected_interval_s", "mark_seen", "timeout_s"]


def expected_interval_s(device: Device, cfg: AvailabilityConfig) -> float:
    if device.report_interval_s:
        return float(device.report_interval_s)
    for message in ("bin_config", "device_config"):
        value = device.desired.get(message, {}).get("report_interval_s")
        if isinstance(value, int | float) and value > 0:
            return float(value)
    if device.kind == "bin":
        return cfg.bin_interval_s
    if device.kind == "lamp":
        return cfg.lamp_interval_s
    return cfg.default_interval_s


def timeout_s(device: Device, cfg: AvailabilityConfig) -> float:
    return expected_interval_s(device, cfg) * cfg.factor


def mark_seen(device: Device, now: float) -> Outcome:
    """An uplink arrived: online again (event ``device_online`` only after being offline)."""
    out = Outcome()
    out.twin.attrs["last_seen"] = now
    out.twin.attrs["availability"] = "online"
    if device.availability == "offline":
        out.event("device_online", last_seen=now)
    return out


def check(device: Device, cfg: AvailabilityConfig, now: float) -> Outcome:
    """Periodic check: online → offline when silent past the timeout (event ``device_offline``)."""
    out = Outcome()
    if device.availability != "online" or device.last_seen is None:
        return out
    limit = timeout_s(device, cfg)
    if now - device.last_seen > limit:
        out.twin.attrs["availability"] = "offline"
        out.event(
            "device_offline",
            last_seen=device.last_seen,
            silent_s=round(now - device.last_seen, 1),
            timeout_s=limit,
        )
    return out
