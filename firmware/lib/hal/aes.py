"""AES-128-ECB for the MAC: ``cryptolib.aes`` on MicroPython, a ``cryptography`` shim on CPython.

Import order matters: try ``cryptolib`` first so the device never pulls in the shim.
"""

try:
    from cryptolib import aes  # ESP32 port and unix port: aes(key, 1) is ECB
except ImportError:  # CPython (fleet simulator, host tests)
    from hal._aes_shim import aes  # type: ignore[no-redef]

__all__ = ["aes"]
