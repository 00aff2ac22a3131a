"""ChirpStack-shaped event documents for the gateway tests.

``REFERENCE_UP`` is an example `up` event as ChirpStack v4 serialises it (docs, Integrations ›
Events), verbatim; the builders produce documents that follow the same serializer rules (pbjson,
emit_fields).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

REFERENCE_UP = """{
  "deduplicationId": "5b3c0f2e-9a41-4e57-8f3c-2d7b1a9e6c10",
  "time": "2026-03-02T10:15:42.120384+00:00",
  "deviceInfo": {
    "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "Acme",
    "applicationId": "0b8e3c2a-7d61-4f0e-9b8e-5c1d2a3f4e5d", "applicationName": "irrigation",
    "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad", "deviceProfileName": "valve-eu868",
    "deviceName": "valve-07", "devEui": "70b3d57ed0051a2f",
    "deviceClassEnabled": "CLASS_C", "tags": {"site": "north"}
  },
  "devAddr": "01f3a2c4", "adr": true, "dr": 5, "fCnt": 1287, "fPort": 2, "confirmed": false,
  "data": "AQLEAA==",
  "object": {"valveOpen": true, "pressureKpa": 196.0},
  "rxInfo": [{
    "gatewayId": "0016c001f153a14c", "uplinkId": 2873641109,
    "nsTime": "2026-03-02T10:15:42.102217+00:00",
    "rssi": -87, "snr": 7.25, "channel": 3, "rfChain": 1,
    "location": {"latitude": 52.3702, "longitude": 4.8952, "altitude": 12.0},
    "context": "qP3kXw==", "crcStatus": "CRC_OK"
  }],
  "txInfo": {"frequency": 867100000,
             "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}},
  "regionConfigId": "eu868"
}"""  # noqa: E501
REFERENCE_APP = "0b8e3c2a-7d61-4f0e-9b8e-5c1d2a3f4e5d"
REFERENCE_DEV = "70b3d57ed0051a2f"

REFERENCE_DOWN = (
    '{"id": "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f", "devEui": "70b3d57ed0051a2f",'
    ' "confirmed": true, "fPort": 10, "data": "AQE=", "expiresAt": "2026-03-02T10:30:00Z"}'
)


def topic(app: str, dev_eui: str, event: str) -> str:
    return f"application/{app}/device/{dev_eui}/event/{event}"


def device_info(app: str, dev_eui: str) -> dict[str, Any]:
    return {
        "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
        "tenantName": "City",
        "applicationId": app,
        "applicationName": "citypack",
        "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
        "deviceProfileName": "citypack-eu868",
        "deviceName": f"node-{dev_eui[-4:]}",
        "devEui": dev_eui,
        "deviceClassEnabled": "CLASS_A",
        "tags": {},
    }


def up(
    app: str,
    dev_eui: str,
    *,
    f_cnt: int,
    f_port: int,
    data: bytes,
    dedup: str | None = None,
    dr: int = 5,
    rssi: int = -90,
    snr: float = 6.5,
    gateways: int = 1,
    time: str = "2026-03-02T10:15:42.120384+00:00",
) -> dict[str, Any]:
    return {
        "deduplicationId": dedup or str(uuid.uuid4()),
        "time": time,
        "deviceInfo": device_info(app, dev_eui),
        "devAddr": "01f3a2c4",
        "adr": True,
        "dr": dr,
        "fCnt": f_cnt,
        "fPort": f_port,
        "confirmed": False,
        "data": base64.b64encode(data).decode(),
        "rxInfo": [
            {
                "gatewayId": f"0016c001f153a1{i:02x}",
                "uplinkId": 1000 + i,
                "rssi": rssi - i,
                "snr": snr - i,
                "channel": 3,
                "crcStatus": "CRC_OK",
            }
            for i in range(gateways)
        ],
        "txInfo": {
            "frequency": 868100000,
            "modulation": {
                "lora": {"bandwidth": 125000, "spreadingFactor": 12 - dr, "codeRate": "CR_4_5"}
            },
        },
        "regionConfigId": "eu868",
    }


def txack(app: str, dev_eui: str, queue_item_id: str, f_cnt_down: int = 7) -> dict[str, Any]:
    return {
        "downlinkId": 3735928559,
        "time": "2026-03-02T10:15:43.000000+00:00",
        "deviceInfo": device_info(app, dev_eui),
        "queueItemId": queue_item_id,
        "fCntDown": f_cnt_down,
        "gatewayId": "0016c001f153a14c",
        "txInfo": {
            "frequency": 868100000,
            "power": 14,
            "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7}},
            "timing": {"delay": {"delay": "1s"}},
        },
    }


def ack(app: str, dev_eui: str, queue_item_id: str, acknowledged: bool = True) -> dict[str, Any]:
    return {
        "deduplicationId": str(uuid.uuid4()),
        "time": "2026-03-02T10:16:43.000000+00:00",
        "deviceInfo": device_info(app, dev_eui),
        "queueItemId": queue_item_id,
        "acknowledged": acknowledged,
        "fCntDown": 7,
    }


def log(
    app: str, dev_eui: str, code: str, context: dict[str, str], level: str = "ERROR"
) -> dict[str, Any]:
    return {
        "time": "2026-03-02T10:16:43.000000+00:00",
        "deviceInfo": device_info(app, dev_eui),
        "level": level,
        "code": code,
        "description": code.lower().replace("_", " "),
        "context": context,
    }


def join(app: str, dev_eui: str) -> dict[str, Any]:
    return {
        "deduplicationId": str(uuid.uuid4()),
        "time": "2026-03-02T10:00:00.5+00:00",
        "deviceInfo": device_info(app, dev_eui),
        "devAddr": "01f3a2c4",
        "regionConfigId": "eu868",
    }


def status(app: str, dev_eui: str) -> dict[str, Any]:
    return {
        "deduplicationId": str(uuid.uuid4()),
        "time": "2026-03-02T10:00:00+00:00",
        "deviceInfo": device_info(app, dev_eui),
        "margin": 7,
        "externalPowerSource": False,
        "batteryLevelUnavailable": False,
        "batteryLevel": 87.4,
    }


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()
