"""The install check: did the node join, is its first uplink heard well enough to trust the spot?

Two sources:

- **ChirpStack MQTT** (ChirpStack v4 docs, Integrations › MQTT, › Events): events on
  ``application/{application_id|+}/device/{devEui}/event/{join|up|log}``. ``join`` is published
  with the first uplink after the join-accept; ``up`` carries ``rxInfo[]`` (one entry per gateway,
  ``rssi``, ``snr``) and ``txInfo.modulation.lora.spreadingFactor``; ``log`` events (``OTAA``,
  ``UPLINK_MIC``…) explain a failed join and are shown when the check fails. JSON or protobuf
  (``[integration.mqtt] json=false``, §4), told apart per message.
- **The gateway's API** (``GET /api/v1/devices/{devEui}``): a new ``last_seen`` after the check
  started, with ``last_rssi``, ``last_snr`` (best gateway) and ``last_dr``. The number of gateways
  and the join are not visible there, so the MQTT source is the better one.

**Link margin** = SNR − the LoRa demodulation floor of the spreading factor (Semtech SX1276
datasheet table 13 / SX1262 datasheet §6.1.1.1, "SNR required for demodulation"):
SF7 −7.5 dB, SF8 −10, SF9 −12.5, SF10 −15, SF11 −17.5, SF12 −20 dB. The best gateway decides:

- **PASS** when the margin is ≥ 10 dB: the node survives a rainy day, a parked van or a lid;
- **MARGINAL** from 5 dB to 10 dB: it works today; a technician should try a better mounting
  spot or antenna orientation (exit code 0 still: the node is usable);
- **FAIL** below 5 dB, or no uplink before the timeout (exit code 1).

A node that has to fall back to SF11/SF12 to be heard is also reported (it costs airtime and
battery), as is RSSI below −120 dBm. Exit codes: 0 pass, 1 fail, 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import httpx

from tools.provision.errors import ProvisionError
from tools.provision.inventory import parse_eui

SNR_FLOOR_DB = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
PASS_MARGIN_DB = 10.0
MARGINAL_MARGIN_DB = 5.0
WEAK_RSSI_DBM = -120
# RP002-1.0.3 §2.4.3 (EU868) and §2.5.3 (US915, 125 kHz uplink DRs): data rate → spreading factor
DR_TO_SF = {
    "EU868": {0: 12, 1: 11, 2: 10, 3: 9, 4: 8, 5: 7},
    "US915": {0: 10, 1: 9, 2: 8, 3: 7, 4: 8},
}
PASS, MARGINAL, FAIL = "PASS", "MARGINAL", "FAIL"


class VerifyError(ProvisionError):
    """A malformed event or argument (exit 2)."""


@dataclass(frozen=True)
class GatewayReception:
    gateway_id: str
    rssi: int | None
    snr: float | None
    margin_db: float | None


@dataclass(frozen=True)
class UplinkQuality:
    dev_eui: str
    f_cnt: int | None
    f_port: int | None
    dr: int | None
    spreading_factor: int | None
    frequency_hz: int | None
    gateways: tuple[GatewayReception, ...]

    @property
    def best(self) -> GatewayReception | None:
        ranked = [g for g in self.gateways if g.margin_db is not None]
        if ranked:
            return max(ranked, key=lambda g: g.margin_db or 0.0)
        return max(self.gateways, key=lambda g: g.rssi or -999, default=None)


@dataclass
class CheckResult:
    dev_eui: str
    status: str
    joined: bool | None  # None: the source cannot see joins
    uplink: UplinkQuality | None
    reasons: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.status == FAIL else 0

    def render(self) -> str:
        lines = [f"{self.status}  {self.dev_eui}"]
        if self.joined is not None:
            lines.append(f"  join:      {'seen' if self.joined else 'not seen'}")
        if self.uplink is not None:
            up = self.uplink
            best = up.best
            sf = f"SF{up.spreading_factor}" if up.spreading_factor else "SF?"
            lines.append(
                f"  uplink:    fCnt {_show(up.f_cnt)}, fPort {_show(up.f_port)}, "
                f"DR{_show(up.dr)} ({sf}), {_mhz(up.frequency_hz)}"
            )
            lines.append(f"  gateways:  {len(up.gateways) if up.gateways else 'n/a'}")
            for gw in up.gateways:
                lines.append(
                    f"    {gw.gateway_id or '?':<16}  RSSI {_show(gw.rssi)} dBm  "
                    f"SNR {_show(gw.snr)} dB  margin {_db(gw.margin_db)}"
                )
            if best is not None:
                lines.append(
                    f"  best:      RSSI {_show(best.rssi)} dBm, SNR {_show(best.snr)} dB, "
                    f"link margin {_db(best.margin_db)} (pass ≥ {PASS_MARGIN_DB:g} dB, "
                    f"marginal ≥ {MARGINAL_MARGIN_DB:g} dB)"
                )
        lines += [f"  note:      {reason}" for reason in self.reasons]
        counted: dict[str, int] = {}
        for entry in self.logs:  # a node retrying its join repeats the same log line
            counted[entry] = counted.get(entry, 0) + 1
        lines += [
            f"  chirpstack log: {entry}" + (f" (×{n})" if n > 1 else "")
            for entry, n in list(counted.items())[-5:]
        ]
        return "\n".join(lines)


def _show(value: object) -> str:
    return "?" if value is None else str(value)


def _db(value: float | None) -> str:
    return "?" if value is None else f"{value:+.1f} dB"


def _mhz(value: int | None) -> str:
    return "? MHz" if not value else f"{value / 1e6:.1f} MHz"


def link_margin(snr: float | None, spreading_factor: int | None) -> float | None:
    if snr is None or spreading_factor not in SNR_FLOOR_DB:
        return None
    return round(snr - SNR_FLOOR_DB[spreading_factor], 2)


def _number(value: Any, kind: type, where: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise VerifyError(f"{where}: expected a number, got {str(value)[:20]!r}")
    return kind(value)


def uplink_quality(event: Mapping[str, Any], *, region: str = "EU868") -> UplinkQuality:
    """Signal figures of a ChirpStack ``up`` event (JSON form, chirpstack.md §2)."""
    if not isinstance(event, Mapping):
        raise VerifyError("up event: expected a JSON object")
    info = event.get("deviceInfo") or {}
    dev_eui = str(info.get("devEui", "")) if isinstance(info, Mapping) else ""
    dr = _number(event.get("dr"), int, "up event dr")
    tx = event.get("txInfo") or {}
    lora = (tx.get("modulation") or {}).get("lora") if isinstance(tx, Mapping) else None
    sf = _number(lora.get("spreadingFactor"), int, "spreadingFactor") if lora else None
    if sf is None and dr is not None:
        sf = DR_TO_SF.get(region, {}).get(dr)
    frequency = _number(tx.get("frequency"), int, "txInfo.frequency") if tx else None
    rx_info = event.get("rxInfo") or []
    if not isinstance(rx_info, list):
        raise VerifyError("up event rxInfo: expected a list")
    gateways = []
    for item in rx_info:
        if not isinstance(item, Mapping):
            raise VerifyError("up event rxInfo: expected objects")
        snr = _number(item.get("snr", 0.0), float, "rxInfo.snr")  # 0 is omitted (§2)
        gateways.append(
            GatewayReception(
                gateway_id=str(item.get("gatewayId", "")),
                rssi=_number(item.get("rssi"), int, "rxInfo.rssi"),
                snr=snr,
                margin_db=link_margin(snr, sf),
            )
        )
    return UplinkQuality(
        dev_eui=dev_eui,
        f_cnt=_number(event.get("fCnt"), int, "fCnt"),
        f_port=_number(event.get("fPort"), int, "fPort"),
        dr=dr,
        spreading_factor=sf,
        frequency_hz=frequency,
        gateways=tuple(gateways),
    )


def judge(
    dev_eui: str, uplink: UplinkQuality | None, *, joined: bool | None, logs: list[str]
) -> CheckResult:
    result = CheckResult(dev_eui=dev_eui, status=FAIL, joined=joined, uplink=uplink, logs=logs)
    if uplink is None:
        result.reasons.append(
            "no uplink before the timeout: check power, antenna, keys (see log lines) and coverage"
        )
        return result
    best = uplink.best
    if best is None:
        result.reasons.append("the uplink names no gateway that heard it")
        return result
    if best.margin_db is None:
        result.status = MARGINAL
        result.reasons.append("the spreading factor is unknown: link margin cannot be computed")
    elif best.margin_db >= PASS_MARGIN_DB:
        result.status = PASS
    elif best.margin_db >= MARGINAL_MARGIN_DB:
        result.status = MARGINAL
        result.reasons.append(
            f"link margin {best.margin_db:+.1f} dB is below {PASS_MARGIN_DB:g} dB: try a higher or "
            "more open mounting spot, or turn the antenna vertical"
        )
    else:
        result.reasons.append(
            f"link margin {best.margin_db:+.1f} dB is below {MARGINAL_MARGIN_DB:g} dB: the node "
            "will drop out; move it or add a gateway"
        )
    if uplink.spreading_factor is not None and uplink.spreading_factor >= 11:
        result.reasons.append(
            f"the node needs SF{uplink.spreading_factor}: long airtime and battery use"
        )
    if best.rssi is not None and best.rssi < WEAK_RSSI_DBM:
        result.reasons.append(f"RSSI {best.rssi} dBm is near the receiver's sensitivity")
    if len(uplink.gateways) == 1 and result.status != FAIL:
        result.reasons.append("heard by one gateway only: no redundancy")
    return result


# --- MQTT source --------------------------------------------------------------------------------


_EVENT_MESSAGES = {"up": "UplinkEvent", "join": "JoinEvent", "log": "LogEvent"}


def decode_event(kind: str, payload: object) -> dict[str, Any] | None:
    """An event as its JSON object, from ChirpStack's JSON or protobuf marshaler (§1, §4).

    JSON is tried first; otherwise the bytes are parsed as the event's protobuf message and turned
    into the same camelCase shape (``MessageToDict``; defaults omitted, as in nested JSON).
    """
    if not isinstance(payload, (bytes, bytearray)):
        return None
    data = bytes(payload)
    try:
        decoded = json.loads(data)
        return decoded if isinstance(decoded, dict) else None
    except (ValueError, UnicodeDecodeError):
        pass
    name = _EVENT_MESSAGES.get(kind)
    if name is None:
        return None
    from chirpstack_api import integration
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError

    try:
        message = getattr(integration, name).FromString(data)
    except DecodeError:
        return None
    result: dict[str, Any] = json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True
    )
    return result


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> MqttUrl:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parsed.hostname:
        raise VerifyError(f"--mqtt: expected mqtt://host[:port], got {url[:60]!r}")
    tls = parsed.scheme in ("mqtts", "ssl")
    try:
        port = parsed.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise VerifyError(f"--mqtt: bad port in {url[:60]!r}") from exc
    return MqttUrl(parsed.hostname, port, parsed.username, parsed.password, tls)


def event_topic(dev_eui: str, application_id: str | None) -> str:
    return f"application/{application_id or '+'}/device/{dev_eui}/event/+"


async def check_mqtt(
    url: str,
    dev_eui: str,
    *,
    timeout_s: float,
    application_id: str | None = None,
    require_join: bool = False,
    region: str = "EU868",
) -> CheckResult:
    """Wait for the join (if asked) and the first uplink of ``dev_eui`` on ChirpStack's MQTT."""
    dev_eui = parse_eui(dev_eui, where="argument", field_name="DEVEUI")
    target = parse_mqtt_url(url)
    joined = False
    uplink: UplinkQuality | None = None
    logs: list[str] = []
    client = aiomqtt.Client(
        target.host,
        target.port,
        username=target.username,
        password=target.password,
        identifier=f"citypack-verify-{dev_eui}-{int(time.time())}",
        tls_params=aiomqtt.TLSParameters() if target.tls else None,
    )
    try:
        async with asyncio.timeout(timeout_s), client:
            await client.subscribe(event_topic(dev_eui, application_id), qos=1)
            async for message in client.messages:
                kind = str(message.topic).rsplit("/", 1)[-1]
                payload = decode_event(kind, message.payload)
                if payload is None:
                    if kind in _EVENT_MESSAGES:
                        logs.append(f"{kind} event is neither ChirpStack JSON nor protobuf")
                    continue
                if kind == "join":
                    joined = True
                elif kind == "log":
                    logs.append(
                        f"{payload.get('level', '?')} {payload.get('code', '?')}: "
                        f"{str(payload.get('description', ''))[:160]}"
                    )
                elif kind == "up":
                    try:
                        uplink = uplink_quality(payload, region=region)
                    except VerifyError as exc:
                        logs.append(f"unreadable up event: {exc}")
                        continue
                    if joined or not require_join:
                        break
                    uplink = None  # an uplink of an old session: wait for the join
    except TimeoutError:
        pass
    except aiomqtt.MqttError as exc:
        raise ProvisionError(
            f"cannot use the MQTT broker at {target.host}:{target.port}: {exc}", exit_code=1
        ) from None
    result = judge(dev_eui, uplink, joined=joined, logs=logs)
    if require_join and not joined and uplink is None:
        result.reasons.insert(0, "no join seen (--require-join)")
    return result


# --- gateway API source -------------------------------------------------------------------------


def check_gateway_api(
    base_url: str,
    token: str,
    dev_eui: str,
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    region: str = "EU868",
    transport: httpx.BaseTransport | None = None,
    clock: Any = time,
) -> CheckResult:
    """Poll ``GET /api/v1/devices/{devEui}`` until it shows an uplink newer than the start."""
    dev_eui = parse_eui(dev_eui, where="argument", field_name="DEVEUI")
    started = clock.time()
    deadline = clock.monotonic() + timeout_s
    first: dict[str, Any] | None = None
    registered = False
    with httpx.Client(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
        transport=transport,
    ) as client:
        while True:
            try:
                response = client.get(f"/api/v1/devices/{dev_eui}")
            except httpx.TransportError:
                raise ProvisionError(
                    f"cannot reach the gateway API at {base_url}", exit_code=1
                ) from None
            if response.status_code in (401, 403):
                raise ProvisionError(
                    f"the gateway API refused the token (HTTP {response.status_code})",
                    exit_code=1,
                )
            if response.status_code == 200:
                registered = True
                device = response.json()
                if first is None:
                    first = device
                last_seen = device.get("last_seen")
                newer = device.get("last_f_cnt") != first.get("last_f_cnt") or (
                    isinstance(last_seen, (int, float)) and last_seen > started
                )
                if isinstance(last_seen, (int, float)) and newer:
                    dr = device.get("last_dr")
                    sf = DR_TO_SF.get(region, {}).get(dr) if isinstance(dr, int) else None
                    snr = device.get("last_snr")
                    uplink = UplinkQuality(
                        dev_eui=dev_eui,
                        f_cnt=device.get("last_f_cnt"),
                        f_port=None,
                        dr=dr,
                        spreading_factor=sf,
                        frequency_hz=None,
                        gateways=(
                            GatewayReception(
                                "best", device.get("last_rssi"), snr, link_margin(snr, sf)
                            ),
                        ),
                    )
                    result = judge(dev_eui, uplink, joined=None, logs=[])
                    result.reasons.append("gateway count not available from the gateway API")
                    return result
            elif response.status_code != 404:
                raise ProvisionError(
                    f"gateway API GET device {dev_eui}: HTTP {response.status_code}", exit_code=1
                )
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                result = judge(dev_eui, None, joined=None, logs=[])
                if not registered:
                    result.reasons.append(
                        "the gateway does not know this device: run `citypack provision register`"
                    )
                return result
            clock.sleep(min(poll_s, remaining))
