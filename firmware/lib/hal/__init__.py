"""Hardware seams for the firmware: clock, radio, storage, battery, random, AES.

Each seam has a real implementation for the ESP32 and a sim implementation for the host (the
MicroPython unix port in tests and CPython in the fleet simulator). The MAC and the apps reach the
hardware only through these objects (ARCHITECTURE.md, invariant 6).
"""
