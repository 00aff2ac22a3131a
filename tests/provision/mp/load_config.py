"""Harness: run the firmware's nodeconfig.load(ROOT) and print one JSON line (keys as SHA-256)."""

import binascii
import hashlib
import json
import sys

import nodeconfig


def digest(key):
    if key is None:
        return None
    return binascii.hexlify(hashlib.sha256(key).digest()).decode()


try:
    config = nodeconfig.load(sys.argv[1])
except nodeconfig.ConfigError as exc:
    print(
        json.dumps(
            {
                "error": "ConfigError",
                "field": exc.field,
                "message": str(exc),
                "is_value_error": isinstance(exc, ValueError),
            }
        )
    )
else:
    print(
        json.dumps(
            {
                "dev_eui": config.dev_eui,
                "join_eui": config.join_eui,
                "kind": config.kind,
                "name": config.name,
                "region": config.region,
                "board": config.board,
                "latitude": config.latitude,
                "longitude": config.longitude,
                "activation": config.activation,
                "app": config.app,
                "app_key_sha256": digest(config.app_key),
                "app_key_len": len(config.app_key) if config.app_key else 0,
                "dev_eui_bytes": binascii.hexlify(nodeconfig.eui_bytes(config.dev_eui)).decode(),
                "repr": repr(config),
                "nvs": nodeconfig.esp32 is not None,
            }
        )
    )
