"""CPython stand-in for MicroPython's ``cryptolib.aes`` (ECB only), built on ``cryptography``.

Only the fleet simulator and host tests import this: the device and the MicroPython unix port
have ``cryptolib``. Same surface as ``cryptolib.aes(key, 1)``: ``encrypt(in_buf, out_buf=None)``
and ``decrypt(in_buf, out_buf=None)`` on whole 16-byte blocks (MicroPython docs, cryptolib).
"""

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_MODE_ECB = 1  # cryptolib.MODE_ECB


class aes:
    def __init__(self, key, mode, iv=None):
        if mode != _MODE_ECB:
            raise ValueError("only ECB (mode 1) is provided by the CPython shim")
        cipher = Cipher(algorithms.AES(bytes(key)), modes.ECB())
        self._enc = cipher.encryptor()
        self._dec = cipher.decryptor()

    def encrypt(self, in_buf, out_buf=None):
        data = self._enc.update(bytes(in_buf))
        if out_buf is None:
            return data
        out_buf[: len(data)] = data
        return out_buf

    def decrypt(self, in_buf, out_buf=None):
        data = self._dec.update(bytes(in_buf))
        if out_buf is None:
            return data
        out_buf[: len(data)] = data
        return out_buf
