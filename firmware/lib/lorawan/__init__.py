"""citypack's LoRaWAN 1.0.4 end-device MAC for MicroPython (ESP32) and CPython (simulator).

Public surface: :class:`lorawan.mac.Mac` (join, send, class switch, link check, device time),
its results and counters in :mod:`lorawan.status`, and :mod:`lorawan.region` (EU868, US915).
Everything else (frame, crypto, session) is internal. Nothing is imported here, so a board
only loads what it uses.
"""
