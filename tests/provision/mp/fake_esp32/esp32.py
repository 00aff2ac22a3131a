"""A host stand-in for MicroPython's ``esp32.NVS`` (docs.micropython.org, "esp32 — ESP32 specific").

Only for the tests: blobs live in the JSON file named by ``CITYPACK_FAKE_NVS`` so that separate
MicroPython runs (the deploy's NVS writer, its read-back, the firmware's config loader) share them
like one board's flash. Semantics kept: ``set_blob`` stages until ``commit``; ``get_blob`` fills
the buffer, returns the length, and raises ``OSError`` when the key is absent.
"""

import binascii
import json
import os

_PATH = os.getenv("CITYPACK_FAKE_NVS")


def _load():
    try:
        with open(_PATH) as handle:
            return json.load(handle)
    except OSError:
        return {}


class NVS:
    def __init__(self, namespace):
        self.namespace = namespace
        self._staged = {}

    def set_blob(self, key, value):
        self._staged[key] = binascii.hexlify(bytes(value)).decode()

    def commit(self):
        data = _load()
        data.setdefault(self.namespace, {}).update(self._staged)
        with open(_PATH, "w") as handle:
            json.dump(data, handle)
        self._staged = {}

    def get_blob(self, key, buffer):
        value = _load().get(self.namespace, {}).get(key)
        if value is None:
            raise OSError(2)  # ENOENT, as ESP-IDF's ESP_ERR_NVS_NOT_FOUND surfaces
        raw = binascii.unhexlify(value)
        if len(raw) > len(buffer):
            raise OSError(22)
        buffer[: len(raw)] = raw
        return len(raw)
