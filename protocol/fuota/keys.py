"""TS004-1.0.0 §3.1.2 multicast keys: McRootKey, McKEKey, McKey_encrypted, McAppSKey, McNwkSKey.

- McRootKey = aes128_encrypt(GenAppKey, 0x00 | pad16) for an L2 1.0.x device (citypack uses the
  device's AppKey as GenAppKey); aes128_encrypt(AppKey, 0x20 | pad16) for L2 1.1.
- McKEKey = aes128_encrypt(McRootKey, 0x00 | pad16).
- McKey_encrypted = aes128_decrypt(McKEKey, McKey): the server *decrypts* so the device recovers
  McKey with AES encryption only (ChirpStack's FUOTA server; LoRaMac-node's secure element).
- McAppSKey = aes128_encrypt(McKey, 0x01 | McAddr | pad16), McNwkSKey likewise with 0x02; McAddr
  little-endian as on the air.

Checked against ChirpStack's ``lorawan/applayer/multicastsetup/keys_test.go`` vectors
(protocol/vectors/fuota.json).
"""

from __future__ import annotations

from protocol.errors import EncodeError
from protocol.lorawan.crypto import aes_ecb_decrypt, aes_ecb_encrypt

__all__ = [
    "mc_app_s_key",
    "mc_kekey",
    "mc_key_decrypt",
    "mc_key_encrypt",
    "mc_nwk_s_key",
    "mc_root_key_1_0",
    "mc_root_key_1_1",
]


def _block(first: int, mc_addr: int | None = None) -> bytes:
    b = bytearray(16)
    b[0] = first
    if mc_addr is not None:
        if not 0 <= mc_addr <= 0xFFFFFFFF:
            raise EncodeError("mc_addr must be 32 bits")
        b[1:5] = mc_addr.to_bytes(4, "little")
    return bytes(b)


def mc_root_key_1_0(gen_app_key: bytes) -> bytes:
    return aes_ecb_encrypt(gen_app_key, _block(0x00))


def mc_root_key_1_1(app_key: bytes) -> bytes:
    return aes_ecb_encrypt(app_key, _block(0x20))


def mc_kekey(mc_root_key: bytes) -> bytes:
    return aes_ecb_encrypt(mc_root_key, _block(0x00))


def mc_key_encrypt(mc_kekey_: bytes, mc_key: bytes) -> bytes:
    """McKey_encrypted as McGroupSetupReq carries it."""
    return aes_ecb_decrypt(mc_kekey_, mc_key)


def mc_key_decrypt(mc_kekey_: bytes, mc_key_encrypted: bytes) -> bytes:
    """What the device does: McKey back from McKey_encrypted."""
    return aes_ecb_encrypt(mc_kekey_, mc_key_encrypted)


def mc_app_s_key(mc_key: bytes, mc_addr: int) -> bytes:
    return aes_ecb_encrypt(mc_key, _block(0x01, mc_addr))


def mc_nwk_s_key(mc_key: bytes, mc_addr: int) -> bytes:
    return aes_ecb_encrypt(mc_key, _block(0x02, mc_addr))
