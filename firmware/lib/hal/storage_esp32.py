"""ESP32 storage tiers (interface in :mod:`hal.storage`): NVS survives power loss, RTC slow
memory survives deep sleep only. Written against micropython-esp32-stubs (``esp32.NVS``,
``machine.RTC().memory()``); CI has no board, so tests/firmware/test_storage.py runs them on
stand-ins with those APIs' documented behaviour.
"""

import struct


class NvsStore:
    """ESP32 NVS namespace (survives power loss). Keys ≤ 15 characters (ESP-IDF limit)."""

    def __init__(self, namespace="lorawan", max_blob=256):
        import esp32

        self._nvs = esp32.NVS(namespace)
        self._buf = bytearray(max_blob)
        self.writes = 0

    def load(self, key):
        try:
            n = self._nvs.get_blob(key, self._buf)
        except OSError:  # ESP_ERR_NVS_NOT_FOUND
            return None
        return bytes(self._buf[:n])

    def save(self, key, blob):
        self._nvs.set_blob(key, blob)
        self._nvs.commit()  # nothing is durable before commit()
        self.writes += 1


class RtcStore:
    """ESP32 RTC slow memory (survives deep sleep, not power loss), several keys in one blob.

    Layout: repeated ``[key length u8][key][blob length u16 LE][blob]``; unreadable contents
    (first boot, brown-out garbage) read as empty. Callers validate their own blobs (CRC).
    """

    def __init__(self, rtc=None):
        if rtc is None:
            import machine

            rtc = machine.RTC()
        self._rtc = rtc
        self.data = self._parse(bytes(rtc.memory()))
        self.writes = 0

    @staticmethod
    def _parse(raw):
        out = {}
        p = 0
        n = len(raw)
        while p < n:
            kl = raw[p]
            if kl == 0:
                break
            if p + 1 + kl + 2 > n:
                return {}  # torn or garbage: nothing in RTC memory can be trusted
            try:
                key = raw[p + 1 : p + 1 + kl].decode()
            except UnicodeError:
                return {}
            p += 1 + kl
            bl = raw[p] | (raw[p + 1] << 8)
            p += 2
            if p + bl > n:
                return {}
            out[key] = raw[p : p + bl]
            p += bl
        return out

    def load(self, key):
        return self.data.get(key)

    def save(self, key, blob):
        self.data[key] = bytes(blob)
        parts = []
        for k, v in self.data.items():
            kb = k.encode()
            parts.append(bytes([len(kb)]) + kb + struct.pack("<H", len(v)) + v)
        self._rtc.memory(b"".join(parts))
        self.writes += 1
