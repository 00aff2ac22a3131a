"""Sensor and actuator drivers for the bin and lamp nodes.

Drivers reach hardware only through the objects of ``hal.pins`` (real) or ``hal.sim_pins`` (host),
and wait only through the HAL clock (``await clock.sleep_ms``), so they run in virtual time.
A reading that cannot be trusted is ``None``; a chip that does not answer raises ``SensorError``.
"""


class SensorError(Exception):
    """A sensor is absent or answers with something its datasheet does not allow."""


def ticks_diff(clock, a, b):
    """``a - b`` in ms on the HAL clock, wrap-safe when the clock provides ``ticks_diff``."""
    f = getattr(clock, "ticks_diff", None)
    return f(a, b) if f is not None else a - b
