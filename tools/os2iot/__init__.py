"""An OS2iot emulator for tests and the demo: the slice of OS2iot's backend that citypack uses,
in front of the ChirpStack emulator (:mod:`tools.netsim`).

- :mod:`tools.os2iot.model`: records and class-validator checks, with OS2iot's shapes.
- :mod:`tools.os2iot.state`: devices, downlinks, data targets; devices and downlinks reach the
  ChirpStack emulator as OS2iot's gRPC calls would reach ChirpStack.
- :mod:`tools.os2iot.app`: the HTTP API (``X-API-KEY``, ``/api/v1/…``).
- :mod:`tools.os2iot.listener`: ChirpStack MQTT in (QoS 0, clean session), HTTP-push data
  targets out (at most once, no retry).
- :mod:`tools.os2iot.runner`: :class:`Os2iotEmulator`, the API and the listener together.

``citypack os2iot-emulator`` runs it with a ChirpStack emulator behind it; what it mirrors of
OS2iot, and what not, is in docs/os2iot.md.
"""

from tools.os2iot.runner import DEFAULT_PROFILES, Os2iotEmulator
from tools.os2iot.state import Faults, Os2iotState, Profile

__all__ = ["DEFAULT_PROFILES", "Faults", "Os2iotEmulator", "Os2iotState", "Profile"]
