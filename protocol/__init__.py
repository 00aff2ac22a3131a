"""citypack's single definition of every byte on the air.

- :mod:`protocol.lorawan` — LoRaWAN L2 1.0.4 frames, MAC commands, crypto, regions, airtime.
- :mod:`protocol.catalogue` — the application message catalogue (fPorts, CBOR keys, units, ranges).
- :mod:`protocol.codec` — CPython encode/decode of application payloads.
- :mod:`protocol.codegen` — generators for the firmware codec and the ChirpStack JS codec.
- :mod:`protocol.errors` — the exception tree.
"""
