"""A file-backed store for the host (interface in :mod:`hal.storage`): blobs in one JSON file,
hex-encoded, rewritten atomically (write a temporary file, then rename) on every save.
"""

import json
import os
from binascii import hexlify, unhexlify


class FileStore:
    """Blobs in one JSON file (hex values); each save rewrites it atomically (rename)."""

    def __init__(self, path):
        self._path = path
        self.data = {}
        self.writes = 0
        try:
            with open(path) as f:
                raw = json.load(f)
            for k in raw:
                self.data[k] = unhexlify(raw[k])
        except (OSError, ValueError):
            self.data = {}

    def load(self, key):
        return self.data.get(key)

    def save(self, key, blob):
        self.data[key] = bytes(blob)
        tmp = self._path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({k: hexlify(v).decode() for k, v in self.data.items()}, f)
        os.rename(tmp, self._path)
        self.writes += 1
