"""A file on the node's flash filesystem used as a random-access block store.

The FUOTA fragment store (fuota.fragdecoder) keeps every fragment here instead of in the heap:
the heap of an ESP32 running MicroPython is ~100 KB, a firmware bundle is tens of KB. The same
code runs on the board (LittleFS through MicroPython's VFS, ``open``/``seek``/``readinto``) and on
the host (the unix port's and CPython's POSIX files), so tests exercise exactly what boards run.

Interface::

    f = FlashFile(path)              # created (truncated) for writing and reading
    f.write_at(offset, buf, n)       # buf[:n] at offset; the file grows as needed
    f.read_into(offset, buf, n)      # buf[:n] from offset; returns bytes read
    f.close(); FlashFile.remove(path)
"""

import os


class FlashFile:
    def __init__(self, path, create=True):
        self.path = path
        self._f = open(path, "w+b" if create else "r+b")
        self.closed = False

    def write_at(self, offset, buf, n):
        f = self._f
        f.seek(offset)
        f.write(memoryview(buf)[:n])

    def read_into(self, offset, buf, n):
        f = self._f
        f.seek(offset)
        return f.readinto(memoryview(buf)[:n])

    def flush(self):
        self._f.flush()

    def close(self):
        if not self.closed:
            self._f.close()
            self.closed = True

    @staticmethod
    def remove(path):
        try:
            os.remove(path)
        except OSError:
            pass
