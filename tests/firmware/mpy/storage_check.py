"""Harness: the storage tiers (hal.storage, hal.storage_file, hal.storage_esp32) on the host.

The ESP32 classes run against stand-ins with the documented behaviour of ``esp32.NVS``
(``get_blob`` raises OSError for a missing key, nothing is durable before ``commit``) and
``machine.RTC().memory()`` (one blob, garbage after a cold start). Usage: ``storage_check.py DIR``.
"""

import json
import sys

from hal.storage import DictStore
from hal.storage_file import FileStore


class FakeNVS:
    flash = {}  # namespace -> committed blobs: what survives a power cut

    def __init__(self, namespace):
        if not isinstance(namespace, str):
            raise TypeError("namespace")
        self.ns = namespace
        self.pending = dict(FakeNVS.flash.get(namespace, {}))

    def set_blob(self, key, value):
        if len(key) > 15:
            raise ValueError("NVS keys are at most 15 characters")
        self.pending[key] = bytes(value)

    def get_blob(self, key, buf):
        if key not in self.pending:
            raise OSError(-0x1102)  # ESP_ERR_NVS_NOT_FOUND
        v = self.pending[key]
        if len(buf) < len(v):
            raise OSError(-0x110C)  # ESP_ERR_NVS_INVALID_LENGTH
        buf[: len(v)] = v
        return len(v)

    def commit(self):
        FakeNVS.flash[self.ns] = dict(self.pending)


class FakeEsp32:
    NVS = FakeNVS


class FakeRTC:
    def __init__(self, data=b""):
        self.data = data

    def memory(self, data=None):
        if data is None:
            return self.data
        if len(data) > 2048:
            raise ValueError("RTC user memory is 2 KB")
        self.data = bytes(data)


def main(tmp):
    fail = []
    # dict store
    d = DictStore()
    buf = bytearray(b"abc")
    d.save("k", buf)
    buf[0] = 0x7A  # callers reuse their buffer: the store must have copied it
    if d.load("k") != b"abc" or d.load("x") is not None:
        fail.append("DictStore")
    # file store: survives a reload, written atomically
    path = tmp + "/store.json"
    f = FileStore(path)
    f.save("session", b"\x00\x01\xff")
    f.save("nonces", b"\x02")
    g = FileStore(path)
    if g.load("session") != b"\x00\x01\xff" or g.load("nonces") != b"\x02":
        fail.append("FileStore reload")
    with open(path, "w") as h:
        h.write("{not json")
    if FileStore(path).load("session") is not None:
        fail.append("FileStore must read a corrupt file as empty")
    # NVS over the stand-in
    sys.modules["esp32"] = FakeEsp32
    from hal.storage_esp32 import NvsStore, RtcStore

    n = NvsStore("citypack")
    if n.load("session") is not None:
        fail.append("NVS missing key")
    n.save("session", bytes(range(238)))
    if NvsStore("citypack").load("session") != bytes(range(238)):
        fail.append("NVS blob after a power cut (a new NVS object)")
    if NvsStore("other").load("session") is not None:
        fail.append("NVS namespaces are separate")
    # RTC memory: several keys in one blob; garbage reads as empty
    rtc = FakeRTC()
    r = RtcStore(rtc)
    r.save("mac", b"\x01" * 238)
    r.save("app", b"xyz")
    r2 = RtcStore(FakeRTC(rtc.data))  # deep sleep: the memory stays
    if r2.load("mac") != b"\x01" * 238 or r2.load("app") != b"xyz":
        fail.append("RTC after deep sleep")
    for garbage in (b"\x05ab", b"\x03mac\xff\xff", bytes(range(200, 256)) * 4):
        if RtcStore(FakeRTC(garbage)).load("mac") is not None:
            fail.append("RTC garbage %r read as data" % garbage[:8])
    print(json.dumps({"failures": fail}))
    sys.exit(1 if fail else 0)


main(sys.argv[1])
