"""Persistent key/value blobs in two tiers, as the MAC's persistence rules need them.

Interface of every store::

    store.load(key) -> bytes | None
    store.save(key, blob)          # durable for this tier once it returns; blob may be a
                                   # buffer the caller reuses, so copy or write it out now

Tiers (MicroPython ESP32 docs: machine.RTC memory, esp32.NVS; TR007 §4.13):
- *RTC tier* survives deep sleep but not power loss: :class:`hal.storage_esp32.RtcStore` over
  ``machine.RTC().memory()`` on the ESP32 (one blob, so keys are packed in it).
- *NVS tier* survives power loss: :class:`hal.storage_esp32.NvsStore` over ``esp32.NVS``
  (``set_blob`` then ``commit``); flash wears, so the MAC batches writes (see :mod:`lorawan.mac`).

Host implementations: :class:`DictStore` (in memory; the power-loss tests throw the RTC one away)
and :class:`hal.storage_file.FileStore` (a JSON file written atomically by rename).
"""


class DictStore:
    def __init__(self, data=None):
        self.data = {} if data is None else data
        self.writes = 0

    def load(self, key):
        return self.data.get(key)

    def save(self, key, blob):
        self.data[key] = bytes(blob)
        self.writes += 1
