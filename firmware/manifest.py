# ruff: noqa: F821  (require/package/module are provided by the MicroPython manifest runner)
# What the device needs, as a MicroPython manifest: `mpremote mip install` the require()d
# micropython-lib packages (or freeze everything with
# `make BOARD=ESP32_GENERIC_S3 FROZEN_MANIFEST=/path/to/firmware/manifest.py`).
# tools/firmware.py reads the require() lines into the bundle's manifest.json.
require("lora-sx126x")  # Heltec WiFi LoRa 32 V3 (SX1262)
require("lora-sx127x")  # TTGO LoRa32 (SX1276)
require("lora-async")  # the asyncio modem layer under the radio HAL
package("apps", base_path=".")
package("boards", base_path=".")
package("drivers", base_path="lib")
package("hal", base_path="lib")
package("lorawan", base_path="lib")
module("citypack_payloads.py", base_path="lib")
module("nodeconfig.py", base_path="lib")
