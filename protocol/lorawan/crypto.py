"""LoRaWAN 1.0.x cryptography: AES-CMAC, MICs, FRMPayload and Join-Accept ciphers.

Sources (L2 = LoRaWAN L2 1.0.4, TS001-1.0.4):

- AES-CMAC: RFC 4493 (the MIC is its first four octets, L2 §4.4).
- Data frame MIC: L2 §4.4, block
  B0 = ``0x49 | 0x00*4 | Dir | DevAddr | FCnt(32) | 0x00 | len(msg)``.
- FRMPayload encryption: L2 §4.3.3, blocks
  A_i = ``0x01 | 0x00*4 | Dir | DevAddr | FCnt(32) | 0x00 | i``.
- Join-Request MIC: L2 §6.2.5; Join-Accept MIC and cipher: L2 §6.2.6.
- Session keys (1.0.x): L2 §6.2.6,
  ``AES-ECB-enc(AppKey, 0x0? | JoinNonce | NetID | DevNonce | pad16)``.

Every function takes the values as they go on the air: ``dev_addr`` is the 32-bit integer
(written little-endian into the blocks), ``fcnt`` the **full 32-bit** counter (only its 16 low
bits travel in the FHDR, but B0 and A_i use all 32; getting this wrong gives a MIC that only
matches below 65536 frames).  AES keys are 16 bytes used exactly as written.

Errors: a key of the wrong length raises :class:`protocol.errors.EncodeError`.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from protocol.errors import EncodeError

__all__ = [
    "DIR_DOWN",
    "DIR_UP",
    "aes_cmac",
    "aes_ecb_decrypt",
    "aes_ecb_encrypt",
    "data_mic",
    "derive_session_key",
    "frm_payload_cipher",
    "join_accept_decrypt",
    "join_accept_encrypt",
    "join_mic",
]

DIR_UP = 0  # L2 §4.3.3: Dir = 0 for uplink frames
DIR_DOWN = 1  # ... and 1 for downlink frames

_B0 = struct.Struct("<B4xBIIxB")  # 0x49, 4 zero octets, Dir, DevAddr, FCnt, 0x00, len(msg)
_AI = struct.Struct("<B4xBIIxB")  # 0x01, 4 zero octets, Dir, DevAddr, FCnt, 0x00, i


def _check_key(key: bytes, name: str = "key") -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != 16:
        raise EncodeError(f"{name} must be 16 bytes (AES-128), got {len(key)}")


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """AES-128-ECB encrypt ``data`` (a multiple of 16 bytes)."""
    _check_key(key)
    if len(data) % 16:
        raise EncodeError(f"AES-ECB input must be a multiple of 16 bytes, got {len(data)}")
    encryptor = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()
    return encryptor.update(bytes(data)) + encryptor.finalize()


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    """AES-128-ECB decrypt ``data`` (a multiple of 16 bytes)."""
    _check_key(key)
    if len(data) % 16:
        raise EncodeError(f"AES-ECB input must be a multiple of 16 bytes, got {len(data)}")
    decryptor = Cipher(algorithms.AES(bytes(key)), modes.ECB()).decryptor()
    return decryptor.update(bytes(data)) + decryptor.finalize()


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """The full 16-byte AES-CMAC of ``message`` (RFC 4493 §2.4)."""
    _check_key(key)
    mac = CMAC(algorithms.AES(bytes(key)))
    mac.update(bytes(message))
    return mac.finalize()


def data_mic(nwk_s_key: bytes, direction: int, dev_addr: int, fcnt: int, msg: bytes) -> bytes:
    """The 4-byte MIC of a data frame (L2 §4.4).

    ``msg`` is ``MHDR | FHDR | FPort | FRMPayload`` with the FRMPayload **already encrypted**:
    the MIC is computed over the ciphertext.
    """
    _check_key(nwk_s_key, "NwkSKey")
    if len(msg) > 255:
        raise EncodeError(f"a data frame's MIC input is at most 255 bytes, got {len(msg)}")
    b0 = _B0.pack(0x49, direction, dev_addr & 0xFFFFFFFF, fcnt & 0xFFFFFFFF, len(msg))
    return aes_cmac(nwk_s_key, b0 + bytes(msg))[:4]


def frm_payload_cipher(
    key: bytes, direction: int, dev_addr: int, fcnt: int, payload: bytes
) -> bytes:
    """Encrypt or decrypt an FRMPayload (L2 §4.3.3; the operation is its own inverse).

    ``key`` is the AppSKey for FPort 1..255 and the NwkSKey for FPort 0 (L2 §4.3.3.1).
    """
    _check_key(key)
    if not payload:
        return b""
    blocks = (len(payload) + 15) // 16
    stream = aes_ecb_encrypt(
        key,
        b"".join(
            _AI.pack(0x01, direction, dev_addr & 0xFFFFFFFF, fcnt & 0xFFFFFFFF, i)
            for i in range(1, blocks + 1)
        ),
    )
    return bytes(p ^ s for p, s in zip(payload, stream, strict=False))


def join_mic(app_key: bytes, msg: bytes) -> bytes:
    """The 4-byte MIC of a Join-Request or Join-Accept (L2 §6.2.5, §6.2.6).

    ``msg`` is ``MHDR | …fields…`` (for a Join-Accept: the plaintext, CFList included).
    """
    _check_key(app_key, "AppKey")
    return aes_cmac(app_key, msg)[:4]


def join_accept_encrypt(app_key: bytes, plain: bytes) -> bytes:
    """Encrypt a Join-Accept PHYPayload as the network server does (L2 §6.2.6).

    ``plain`` is ``MHDR | payload | MIC`` (17 or 33 bytes). The server uses AES **decrypt** so
    that a device only needs AES encrypt to read it; MHDR stays in the clear.
    """
    _check_key(app_key, "AppKey")
    if len(plain) not in (17, 33):
        raise EncodeError(f"a Join-Accept is 17 or 33 bytes, got {len(plain)}")
    return bytes(plain[:1]) + aes_ecb_decrypt(app_key, bytes(plain[1:]))


def join_accept_decrypt(app_key: bytes, phy: bytes) -> bytes:
    """Decrypt an on-air Join-Accept (AES **encrypt**, L2 §6.2.6); returns ``MHDR|payload|MIC``."""
    _check_key(app_key, "AppKey")
    if len(phy) not in (17, 33):
        raise EncodeError(f"a Join-Accept is 17 or 33 bytes, got {len(phy)}")
    return bytes(phy[:1]) + aes_ecb_encrypt(app_key, bytes(phy[1:]))


def derive_session_key(
    app_key: bytes, key_type: int, join_nonce: int, net_id: int, dev_nonce: int
) -> bytes:
    """One 1.0.x session key (L2 §6.2.6): ``key_type`` 0x01 = NwkSKey, 0x02 = AppSKey.

    ``join_nonce`` (24 bit), ``net_id`` (24 bit) and ``dev_nonce`` (16 bit) are integers, written
    little-endian as on the air.
    """
    _check_key(app_key, "AppKey")
    if key_type not in (0x01, 0x02):
        raise EncodeError(f"1.0.x session key type is 0x01 or 0x02, got {key_type:#x}")
    for name, value, bits in (
        ("JoinNonce", join_nonce, 24),
        ("NetID", net_id, 24),
        ("DevNonce", dev_nonce, 16),
    ):
        if not 0 <= value < (1 << bits):
            raise EncodeError(f"{name} is a {bits}-bit value, got {value}")
    block = (
        bytes([key_type])
        + join_nonce.to_bytes(3, "little")
        + net_id.to_bytes(3, "little")
        + dev_nonce.to_bytes(2, "little")
        + bytes(7)
    )
    return aes_ecb_encrypt(app_key, block)
